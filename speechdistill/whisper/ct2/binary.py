"""CTranslate2's ``model.bin``, read without ctranslate2.

The format (little-endian; see ``ctranslate2/specs/model_spec.py`` and ``src/models/model.cc``
upstream)::

    uint32 binary_version                      (we read 2 … 6)
    string spec_name ; uint32 spec_revision    (strings: uint16 length incl. NUL, bytes, NUL)
    uint32 n_variables
      string name ; uint8 rank ; rank × uint32 dims
      version ≥ 4: uint8 dtype_id ; uint32 n_bytes      (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16)
      version < 4: uint8 item_size ; uint32 n_items     (4 → f32, 2 → i16, 1 → i8)
      n_bytes of data, row-major
    version ≥ 3: uint32 n_aliases ; (string alias, string target) pairs

Quantised weights: ``int8`` rows carry a per-output-row ``<name>_scale`` (float32, shape [rows];
conv kernels are flattened to [rows, -1] first), ``int16`` a single scalar scale;
``float = int / scale``. An alias of a variable also aliases its ``_scale``.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechdistill.utils import PathLike

__all__ = [
    "MAX_BINARY_VERSION",
    "MIN_BINARY_VERSION",
    "CT2Model",
    "CT2Variable",
    "ConversionError",
    "MissingDependencyError",
    "is_ct2_model_dir",
    "read_model_bin",
]

#: Binary versions this reader understands (1 has no spec name, 7+ does not exist yet).
MIN_BINARY_VERSION = 2
MAX_BINARY_VERSION = 6

_DTYPES: dict[int, tuple[str, np.dtype]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),  # numpy has no bfloat16: raw bits, viewed in torch
}
_LEGACY_ITEM_SIZES = {4: 0, 2: 2, 1: 1}  # version < 4: dtype guessed from item size (as CT2 does)

#: CTranslate2's default int16 scale for old models saved without one (ops::Quantize).
_GLOBAL_INT16_SCALE = 1000.0


class ConversionError(ValueError):
    """A model directory cannot be converted; the message names the file or variable."""


class MissingDependencyError(ImportError, RuntimeError):
    """An optional dependency is not installed; the message says which extra to install."""


@dataclass
class CT2Variable:
    """One variable of ``model.bin``: raw array (bfloat16 as uint16 bits) and its CT2 dtype name."""

    name: str
    dtype: str
    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


@dataclass
class CT2Model:
    """The parsed content of a CTranslate2 ``model.bin``."""

    path: Path
    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, CT2Variable]
    aliases: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        """Follow aliases (an alias of ``x`` also aliases ``x_scale``)."""
        seen = set()
        while name not in self.variables:
            if name in seen:
                raise ConversionError(f"{self.path}: alias cycle at variable {name!r}")
            seen.add(name)
            if name in self.aliases:
                name = self.aliases[name]
            elif name.endswith("_scale") and name[: -len("_scale")] in self.aliases:
                name = self.aliases[name[: -len("_scale")]] + "_scale"
            else:
                raise ConversionError(f"{self.path}: missing variable {name!r}")
        return name

    def has(self, name: str) -> bool:
        try:
            self.resolve(name)
        except ConversionError:
            return False
        return True

    def variable(self, name: str) -> CT2Variable:
        return self.variables[self.resolve(name)]

    def scalar(self, name: str) -> int | float:
        var = self.variable(name)
        if var.array.size != 1:
            raise ConversionError(f"{self.path}: variable {name!r} is not a scalar: {var.shape}")
        return _to_torch(var).reshape(()).item()

    def tensor(self, name: str, dtype: Any = None):
        """The variable as a float torch tensor, int8/int16 weights de-quantised with their scale.

        ``dtype``: a torch dtype, or None to keep the stored float type (float32 for quantised).
        """
        import torch

        var = self.variable(name)
        if var.dtype in ("int8", "int16"):
            scale_name = name + "_scale"
            if self.has(scale_name):
                scale = _to_torch(self.variable(scale_name)).to(torch.float32)
            elif var.dtype == "int16":
                scale = torch.tensor(_GLOBAL_INT16_SCALE)
            else:
                raise ConversionError(
                    f"{self.path}: int8 variable {name!r} has no quantisation scale {scale_name!r}"
                )
            values = _to_torch(var).to(torch.float32)
            if scale.numel() == 1:
                out = values / scale.reshape(())
            else:
                rows = values.reshape(values.shape[0], -1)
                if scale.shape != (rows.shape[0],):
                    raise ConversionError(
                        f"{self.path}: scale {scale_name!r} has shape {tuple(scale.shape)}, "
                        f"expected ({rows.shape[0]},) for {name!r} {var.shape}"
                    )
                out = (rows / scale[:, None]).reshape(values.shape)
        elif var.dtype in ("float32", "float16", "bfloat16"):
            out = _to_torch(var)
        else:
            raise ConversionError(
                f"{self.path}: variable {name!r} has dtype {var.dtype}, expected a float or a "
                "quantised weight"
            )
        return out.to(dtype) if dtype is not None else out

    def float_dtype(self) -> str:
        """The stored type of the non-quantised float variables (float32, float16 or bfloat16)."""
        kinds = {
            v.dtype
            for n, v in self.variables.items()
            if v.dtype in ("float32", "float16", "bfloat16")
            and v.array.ndim > 0
            and not n.endswith("_scale")
        }
        return kinds.pop() if len(kinds) == 1 else "float32"

    def is_quantised(self) -> bool:
        return any(
            v.dtype in ("int8", "int16") and v.array.ndim > 0 for v in self.variables.values()
        )


def _to_torch(var: CT2Variable):
    import torch

    arr = var.array
    if var.dtype == "bfloat16":
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())


class _Reader:
    def __init__(self, buf, path: Path):
        self.buf = buf
        self.pos = 0
        self.path = path

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.buf):
            raise ConversionError(
                f"{self.path} is truncated: needed {n} bytes for {what} at offset {self.pos}, "
                f"file has {len(self.buf)} bytes"
            )

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize("<" + fmt)
        self._need(size, what)
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return values[0] if len(values) == 1 else values

    def string(self, what: str) -> str:
        n = self.unpack("H", what)
        self._need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        if not raw or raw[-1] != 0:
            raise ConversionError(f"{self.path}: malformed string for {what} at offset {self.pos}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConversionError(f"{self.path}: {what} is not UTF-8 at offset {self.pos}") from e

    def array(self, n: int, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
        self._need(n, what)
        arr = np.frombuffer(self.buf, dtype=dtype, count=n // dtype.itemsize, offset=self.pos)
        self.pos += n
        return arr.reshape(shape)


def read_model_bin(path: PathLike) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (memory-mapped: arrays are read-only views of the file).

    Raises :class:`ConversionError` for unknown binary versions or dtypes, truncated files and
    inconsistent sizes. The spec name is returned, not checked (see :func:`import_ct2`).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except FileNotFoundError as e:
        raise ConversionError(f"{path}: no such file (not a CTranslate2 model?)") from e
    r = _Reader(buf, path)
    version = r.unpack("I", "the binary version")
    if not MIN_BINARY_VERSION <= version <= MAX_BINARY_VERSION:
        raise ConversionError(
            f"{path}: unsupported CTranslate2 binary version {version} (this reader knows "
            f"versions {MIN_BINARY_VERSION}–{MAX_BINARY_VERSION})"
        )
    spec_name = r.string("the spec name")
    revision = r.unpack("I", "the spec revision")
    count = r.unpack("I", "the variable count")
    variables: dict[str, CT2Variable] = {}
    for i in range(count):
        name = r.string(f"the name of variable #{i}")
        rank = r.unpack("B", f"the rank of {name!r}")
        shape = tuple(r.unpack("I", f"the shape of {name!r}") for _ in range(rank))
        if version >= 4:
            type_id = r.unpack("B", f"the dtype of {name!r}")
            n_bytes = r.unpack("I", f"the size of {name!r}")
        else:
            item_size = r.unpack("B", f"the item size of {name!r}")
            if item_size not in _LEGACY_ITEM_SIZES:
                raise ConversionError(f"{path}: variable {name!r} has item size {item_size}")
            type_id = _LEGACY_ITEM_SIZES[item_size]
            n_bytes = r.unpack("I", f"the size of {name!r}") * item_size
        if type_id not in _DTYPES:
            raise ConversionError(f"{path}: variable {name!r} has unknown dtype id {type_id}")
        dtype_name, np_dtype = _DTYPES[type_id]
        expected = math.prod(shape) * np_dtype.itemsize
        if n_bytes != expected:
            raise ConversionError(
                f"{path}: variable {name!r} declares {n_bytes} bytes, but shape {shape} of "
                f"{dtype_name} needs {expected}"
            )
        if name in variables:
            raise ConversionError(f"{path}: duplicate variable {name!r}")
        variables[name] = CT2Variable(
            name, dtype_name, r.array(n_bytes, np_dtype, shape, f"the data of {name!r}")
        )
    aliases: dict[str, str] = {}
    if version >= 3:
        n_aliases = r.unpack("I", "the alias count")
        for _ in range(n_aliases):
            alias = r.string("an alias name")
            aliases[alias] = r.string(f"the target of alias {alias!r}")
    if r.pos != len(buf):
        raise ConversionError(
            f"{path}: {len(buf) - r.pos} unexpected bytes after the last record (corrupt file?)"
        )
    return CT2Model(path, version, spec_name, revision, variables, aliases)


def is_ct2_model_dir(path: PathLike) -> bool:
    """True if ``path`` looks like a CTranslate2 model directory (has ``model.bin``)."""
    return (Path(path) / "model.bin").is_file()
