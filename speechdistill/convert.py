"""CTranslate2 ⇄ transformers conversion for Whisper models.

:func:`import_ct2` reads a CTranslate2 Whisper model directory (``model.bin``, ``config.json``,
``tokenizer.json``, ``vocabulary.{json,txt}``) with our own reader of CTranslate2's binary format and
writes a transformers model directory: ``WhisperForConditionalGeneration`` weights (safetensors),
``config.json``, ``generation_config.json`` and the ``WhisperProcessor`` (tokenizer + feature
extractor). :func:`export_ct2` goes the other way with ctranslate2's own converter (optional
dependency), for deployment.

The ``model.bin`` format (little-endian; see ``ctranslate2/specs/model_spec.py`` and
``src/models/model.cc`` upstream)::

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

import contextlib
import json
import logging
import math
import mmap
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechdistill.utils import PathLike
from speechdistill.whisper.tokens import MULTILINGUAL_MIN_VOCAB

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_FILE_PATTERNS",
    "QUANTIZATIONS",
    "CT2Model",
    "CT2Variable",
    "ConversionError",
    "MissingDependencyError",
    "export_ct2",
    "import_ct2",
    "is_ct2_model_dir",
    "read_model_bin",
    "staging_dir",
]

#: Binary versions this reader understands (1 has no spec name, 7+ does not exist yet).
MIN_BINARY_VERSION = 2
MAX_BINARY_VERSION = 6
#: Spec names and the highest revision whose variable layout we know.
SUPPORTED_SPECS = {"WhisperSpec": 3}

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
#: ``common_spec.Activation.GELU``: the only activation Whisper uses.
_CT2_GELU = 3

#: Whisper's timestamp rules: the first timestamp is at most 1.0 s (50 × 0.02 s).
_MAX_INITIAL_TIMESTAMP_INDEX = 50
_NON_LANGUAGE_SPECIALS = {
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|nospeech|>",
    "<|notimestamps|>",
}
_TIMESTAMP_RE = re.compile(r"^<\|\d+\.\d\d\|>$")
_LANGUAGE_RE = re.compile(r"^<\|[a-z]{2,3}(?:_[a-z]+)?\|>$")

_DTYPE_NAMES = ("float32", "float16", "bfloat16", "auto")


class ConversionError(ValueError):
    """A model directory cannot be converted; the message names the file or variable."""


class MissingDependencyError(ImportError, RuntimeError):
    """An optional dependency is not installed; the message says which extra to install."""


# --------------------------------------------------------------------------------------------
# model.bin reader


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


# --------------------------------------------------------------------------------------------
# import: CTranslate2 → transformers


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConversionError(f"{path}: missing (required for the import)") from e
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: invalid JSON: {e}") from e


def _read_vocabulary(src: Path) -> list[str]:
    """CT2's vocabulary: ``vocabulary.json`` (a list; newer converters) or ``vocabulary.txt``."""
    if (src / "vocabulary.json").is_file():
        vocab = _read_json(src / "vocabulary.json")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise ConversionError(f"{src / 'vocabulary.json'}: expected a list of tokens")
        return vocab
    if (src / "vocabulary.txt").is_file():
        text = (src / "vocabulary.txt").read_text(encoding="utf-8")
        return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    raise ConversionError(f"{src}: missing vocabulary.json / vocabulary.txt")


def _count_layers(ct2: CT2Model, prefix: str) -> int:
    pat = re.compile(rf"^{prefix}/layer_(\d+)/")
    ids = {int(m.group(1)) for n in ct2.variables if (m := pat.match(n))}
    if not ids or ids != set(range(len(ids))):
        raise ConversionError(f"{ct2.path}: no contiguous {prefix}/layer_<i> variables found")
    return len(ids)


def _torch_dtype(dtype: str, ct2: CT2Model):
    import torch

    if dtype not in _DTYPE_NAMES:
        raise ConversionError(f"unknown dtype {dtype!r}: choose one of {', '.join(_DTYPE_NAMES)}")
    if dtype == "auto":
        dtype = ct2.float_dtype()
    return getattr(torch, dtype)


def _whisper_config(ct2: CT2Model, vocab: list[str], multilingual: bool | None):
    from transformers import WhisperConfig

    def shape(name: str) -> tuple[int, ...]:
        return ct2.variable(name).shape

    conv1 = shape("encoder/conv1/weight")
    if len(conv1) != 3:
        raise ConversionError(f"{ct2.path}: encoder/conv1/weight has shape {conv1}, expected 3-D")
    d_model, n_mels, _ = conv1
    vocab_size, emb_dim = shape("decoder/embeddings/weight")
    if emb_dim != d_model:
        raise ConversionError(
            f"{ct2.path}: decoder/embeddings/weight is {vocab_size}×{emb_dim}, but the encoder "
            f"width is {d_model}"
        )
    if len(vocab) != vocab_size:
        raise ConversionError(
            f"{ct2.path.parent}: the vocabulary has {len(vocab)} tokens but "
            f"decoder/embeddings/weight has {vocab_size} rows"
        )
    activation = (
        int(ct2.scalar("decoder/activation")) if ct2.has("decoder/activation") else _CT2_GELU
    )
    if activation != _CT2_GELU:
        raise ConversionError(f"{ct2.path}: decoder/activation is {activation}, Whisper uses GELU")
    if ct2.has("decoder/pre_norm") and not ct2.scalar("decoder/pre_norm"):
        raise ConversionError(f"{ct2.path}: decoder/pre_norm is false, Whisper is pre-norm")
    scale_embeddings = (
        bool(ct2.scalar("decoder/scale_embeddings"))
        if ct2.has("decoder/scale_embeddings")
        else False
    )
    enc_heads = int(ct2.scalar("encoder/num_heads"))
    dec_heads = int(ct2.scalar("decoder/num_heads"))
    for heads, where in ((enc_heads, "encoder"), (dec_heads, "decoder")):
        if heads <= 0 or d_model % heads:
            raise ConversionError(
                f"{ct2.path}: {where}/num_heads={heads} does not divide {d_model}"
            )
    tok = {t: i for i, t in enumerate(vocab)}
    for needed in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"):
        if needed not in tok:
            raise ConversionError(f"{ct2.path.parent}: vocabulary has no {needed} token")
    if multilingual is None:
        multilingual = vocab_size >= MULTILINGUAL_MIN_VOCAB
    eot, sot = tok["<|endoftext|>"], tok["<|startoftranscript|>"]
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=enc_heads,
        decoder_attention_heads=dec_heads,
        encoder_ffn_dim=shape("encoder/layer_0/ffn/linear_0/weight")[0],
        decoder_ffn_dim=shape("decoder/layer_0/ffn/linear_0/weight")[0],
        max_source_positions=shape("encoder/position_encodings/encodings")[0],
        max_target_positions=shape("decoder/position_encodings/encodings")[0],
        scale_embedding=scale_embeddings,
        activation_function="gelu",
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        tie_word_embeddings=True,
    ), multilingual


def _language_ids(ct2_config: dict, vocab: list[str]) -> list[int]:
    """Language-token ids: CT2's ``lang_ids`` if given, else the ``<|xx|>`` run after the SOT."""
    ids = [int(i) for i in ct2_config.get("lang_ids") or []]
    if ids:
        bad = [i for i in ids if not 0 <= i < len(vocab) or not _LANGUAGE_RE.match(vocab[i])]
        if bad:
            raise ConversionError(f"config.json: lang_ids {bad[:5]} are not language tokens")
        return sorted(set(ids))
    sot = vocab.index("<|startoftranscript|>")
    out = []
    for i in range(sot + 1, len(vocab)):
        if vocab[i] in _NON_LANGUAGE_SPECIALS or not _LANGUAGE_RE.match(vocab[i]):
            break
        out.append(i)
    return out


def _generation_config(config, ct2_config: dict, vocab: list[str], multilingual: bool):
    from transformers import GenerationConfig

    tok = {t: i for i, t in enumerate(vocab)}
    kwargs: dict[str, Any] = {
        "decoder_start_token_id": tok["<|startoftranscript|>"],
        "bos_token_id": tok["<|startoftranscript|>"],
        "eos_token_id": tok["<|endoftext|>"],
        "pad_token_id": tok["<|endoftext|>"],
        "no_timestamps_token_id": tok["<|notimestamps|>"],
        "max_initial_timestamp_index": _MAX_INITIAL_TIMESTAMP_INDEX,
        "max_length": config.max_target_positions,
        "return_timestamps": False,
        "is_multilingual": multilingual,
        "suppress_tokens": [int(i) for i in ct2_config.get("suppress_ids") or []],
        "begin_suppress_tokens": [int(i) for i in ct2_config.get("suppress_ids_begin") or []],
    }
    if "<|startofprev|>" in tok:
        kwargs["prev_sot_token_id"] = tok["<|startofprev|>"]
    heads = ct2_config.get("alignment_heads")
    if heads:
        kwargs["alignment_heads"] = [[int(layer), int(head)] for layer, head in heads]
    for name in ("suppress_tokens", "begin_suppress_tokens"):
        bad = [i for i in kwargs[name] if not 0 <= i < len(vocab)]
        if bad:
            raise ConversionError(f"config.json: {name} ids {bad[:5]} are outside the vocabulary")
    if multilingual:
        kwargs["lang_to_id"] = {vocab[i]: i for i in _language_ids(ct2_config, vocab)}
        if not kwargs["lang_to_id"]:
            raise ConversionError(
                "config.json/vocabulary: a multilingual model needs language tokens"
            )
        missing = [t for t in ("<|transcribe|>", "<|translate|>") if t not in tok]
        if missing:
            raise ConversionError(f"vocabulary: multilingual model without {missing}")
        kwargs["task_to_id"] = {
            "transcribe": tok["<|transcribe|>"],
            "translate": tok["<|translate|>"],
        }
    return GenerationConfig(**kwargs)


def _tokenizer(src: Path, vocab: list[str]):
    """WhisperTokenizerFast from ``tokenizer.json``, every special token registered, plus the
    timestamp tokens that exist only in CT2's vocabulary (so ``len(tokenizer) == vocab size``)."""
    from transformers import AddedToken, WhisperTokenizerFast

    tok_path = src / "tokenizer.json"
    data = _read_json(tok_path)
    added = sorted(data.get("added_tokens", []), key=lambda a: a["id"])
    # Timestamp tokens are never registered as special: transformers finds the first timestamp id
    # as "last special id + 1", so the special tokens must end with <|notimestamps|>.
    specials = [
        a["content"]
        for a in added
        if a.get("special")
        and a["content"] != "<|endoftext|>"
        and not _TIMESTAMP_RE.match(a["content"])
    ]
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(tok_path),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        extra_special_tokens=specials,
    )
    base = len(tokenizer)
    if base > len(vocab):
        raise ConversionError(
            f"{tok_path}: the tokenizer has {base} tokens, more than the model's {len(vocab)}"
        )
    extra = vocab[base:]
    not_ts = [t for t in extra if not _TIMESTAMP_RE.match(t)]
    if not_ts:
        raise ConversionError(
            f"{tok_path}: tokens {not_ts[:3]} of the model vocabulary (from id {base}) are "
            "missing from the tokenizer"
        )
    if extra:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra])
    got = tokenizer.convert_ids_to_tokens(list(range(len(vocab))))
    diff = [i for i, (a, b) in enumerate(zip(got, vocab, strict=False)) if a != b]
    if len(got) != len(vocab) or diff:
        i = diff[0] if diff else min(len(got), len(vocab))
        raise ConversionError(
            f"{tok_path} does not match the model vocabulary: id {i} is "
            f"{got[i] if i < len(got) else None!r} in the tokenizer, "
            f"{vocab[i] if i < len(vocab) else None!r} in the vocabulary"
        )
    if tokenizer.all_special_ids[-1] != vocab.index("<|notimestamps|>"):
        raise ConversionError(
            f"{tok_path}: the last special token must be <|notimestamps|> (timestamps would "
            "decode shifted)"
        )
    return tokenizer


def _feature_extractor(src: Path, n_mels: int):
    from transformers import WhisperFeatureExtractor

    pre = src / "preprocessor_config.json"
    if pre.is_file():
        fe = WhisperFeatureExtractor.from_pretrained(str(src))
        if fe.feature_size != n_mels:
            raise ConversionError(
                f"{pre}: feature_size={fe.feature_size}, but encoder/conv1 expects {n_mels} mels"
            )
        return fe
    return WhisperFeatureExtractor(feature_size=n_mels)


class _Mapper:
    """Builds the transformers state dict from CT2 variables, remembering where each came from."""

    def __init__(self, ct2: CT2Model, dtype):
        self.ct2 = ct2
        self.dtype = dtype
        self.sd: dict[str, Any] = {}
        self.origin: dict[str, str] = {}

    def put(self, key: str, value, origin: str) -> None:
        self.sd[key] = value
        self.origin[key] = origin

    def copy(self, key: str, name: str) -> None:
        self.put(key, self.ct2.tensor(name, self.dtype), name)

    def linear(self, hf: str, name: str) -> None:
        self.copy(f"{hf}.weight", f"{name}/weight")
        self.copy(f"{hf}.bias", f"{name}/bias")

    def layer_norm(self, hf: str, name: str) -> None:
        self.copy(f"{hf}.weight", f"{name}/gamma")
        self.copy(f"{hf}.bias", f"{name}/beta")

    def fused(self, hfs: list[str], name: str) -> None:
        """Split a fused linear (rows [0:d], [d:2d], …) into ``hfs``; None drops a part's bias.

        Whisper's k_proj has no bias and CT2 stores zeros for it. Even a non-zero key bias would add
        the same q·b to every attention logit of a query, which the softmax cancels: dropping it
        never changes outputs.
        """
        weight = self.ct2.tensor(f"{name}/weight", self.dtype)
        bias = self.ct2.tensor(f"{name}/bias", self.dtype)
        parts = len(hfs)
        if weight.shape[0] % parts or bias.shape != (weight.shape[0],):
            raise ConversionError(
                f"{self.ct2.path}: {name}/weight {tuple(weight.shape)} and bias "
                f"{tuple(bias.shape)} cannot be split into {parts} equal projections"
            )
        for hf, w, b in zip(hfs, weight.chunk(parts), bias.chunk(parts), strict=True):
            self.put(f"{hf}.weight", w, f"{name}/weight")
            if not hf.endswith("k_proj"):
                self.put(f"{hf}.bias", b, f"{name}/bias")

    def attention(self, hf: str, name: str, *, cross: bool) -> None:
        if cross:
            self.linear(f"{hf}.q_proj", f"{name}/linear_0")
            self.fused([f"{hf}.k_proj", f"{hf}.v_proj"], f"{name}/linear_1")
            self.linear(f"{hf}.out_proj", f"{name}/linear_2")
        else:
            self.fused([f"{hf}.q_proj", f"{hf}.k_proj", f"{hf}.v_proj"], f"{name}/linear_0")
            self.linear(f"{hf}.out_proj", f"{name}/linear_1")


def _state_dict(ct2: CT2Model, config, dtype) -> tuple[dict, dict[str, str]]:
    m = _Mapper(ct2, dtype)
    enc, dec = "model.encoder", "model.decoder"
    m.linear(f"{enc}.conv1", "encoder/conv1")
    m.linear(f"{enc}.conv2", "encoder/conv2")
    m.copy(f"{enc}.embed_positions.weight", "encoder/position_encodings/encodings")
    for i in range(config.encoder_layers):
        hf, c = f"{enc}.layers.{i}", f"encoder/layer_{i}"
        m.attention(f"{hf}.self_attn", f"{c}/self_attention", cross=False)
        m.layer_norm(f"{hf}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
        m.linear(f"{hf}.fc1", f"{c}/ffn/linear_0")
        m.linear(f"{hf}.fc2", f"{c}/ffn/linear_1")
        m.layer_norm(f"{hf}.final_layer_norm", f"{c}/ffn/layer_norm")
    m.layer_norm(f"{enc}.layer_norm", "encoder/layer_norm")

    m.copy(f"{dec}.embed_tokens.weight", "decoder/embeddings/weight")
    m.copy(f"{dec}.embed_positions.weight", "decoder/position_encodings/encodings")
    for i in range(config.decoder_layers):
        hf, c = f"{dec}.layers.{i}", f"decoder/layer_{i}"
        m.attention(f"{hf}.self_attn", f"{c}/self_attention", cross=False)
        m.layer_norm(f"{hf}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
        m.attention(f"{hf}.encoder_attn", f"{c}/attention", cross=True)
        m.layer_norm(f"{hf}.encoder_attn_layer_norm", f"{c}/attention/layer_norm")
        m.linear(f"{hf}.fc1", f"{c}/ffn/linear_0")
        m.linear(f"{hf}.fc2", f"{c}/ffn/linear_1")
        m.layer_norm(f"{hf}.final_layer_norm", f"{c}/ffn/layer_norm")
    m.layer_norm(f"{dec}.layer_norm", "decoder/layer_norm")

    # proj_out is tied to the embeddings (CT2 stores decoder/projection/weight as an alias of them).
    embed = m.sd[f"{dec}.embed_tokens.weight"]
    if ct2.has("decoder/projection/weight"):
        proj = ct2.tensor("decoder/projection/weight", dtype)
        if proj.shape != embed.shape or not bool((proj == embed).all()):
            raise ConversionError(
                f"{ct2.path}: decoder/projection/weight differs from decoder/embeddings/weight; "
                "Whisper ties them"
            )
    if ct2.has("decoder/projection/bias") and bool(
        ct2.tensor("decoder/projection/bias", dtype).ne(0).any()
    ):
        raise ConversionError(f"{ct2.path}: decoder/projection/bias is non-zero")
    m.put("proj_out.weight", embed, "decoder/embeddings/weight")
    return m.sd, m.origin


def _check_unused(ct2: CT2Model) -> None:
    """Every non-scalar variable must have been understood (guards against layout changes)."""
    known = re.compile(
        r"^(encoder/(conv[12]/(weight|bias)(_scale)?|position_encodings/encodings|layer_norm/(gamma|beta)"
        r"|layer_\d+/(self_attention/(linear_[01]/(weight|bias)(_scale)?|layer_norm/(gamma|beta))"
        r"|ffn/(linear_[01]/(weight|bias)(_scale)?|layer_norm/(gamma|beta))))"
        r"|decoder/(embeddings/weight(_scale)?|projection/(weight|bias)(_scale)?"
        r"|position_encodings/encodings|layer_norm/(gamma|beta)"
        r"|layer_\d+/((self_attention|attention)/(linear_[012]/(weight|bias)(_scale)?"
        r"|layer_norm/(gamma|beta))|ffn/(linear_[01]/(weight|bias)(_scale)?|layer_norm/(gamma|beta)))))$"
    )
    unknown = [n for n, v in ct2.variables.items() if v.array.ndim > 0 and not known.match(n)]
    if unknown:
        raise ConversionError(
            f"{ct2.path}: variables this importer does not understand: {unknown[:5]}"
        )


def _build_model(config, generation_config, sd: dict, origin: dict[str, str], src: PathLike):
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    expected = model.state_dict()
    for key, value in sd.items():
        if key not in expected:
            raise ConversionError(f"{src}: internal mapping produced unknown parameter {key!r}")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ConversionError(
                f"{src}: shape mismatch for variable {origin[key]!r} (→ {key}): model.bin gives "
                f"{tuple(value.shape)}, the inferred config needs {tuple(expected[key].shape)}"
            )
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise ConversionError(f"{src}: no weights for {missing[:5]}")
    model.load_state_dict(sd, strict=True, assign=True)
    model.tie_weights()
    model.generation_config = generation_config
    return model.eval()


#: Files of a transformers model/processor directory. Writing a model into a directory replaces
#: these (and removes those the new model lacks, e.g. stale shards); other files stay.
MODEL_FILE_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "config.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "normalizer.json",
)


@contextlib.contextmanager
def staging_dir(out_dir: PathLike) -> Iterator[Path]:
    """Write a model into a hidden temporary directory inside ``out_dir``; on success its files
    replace the model files of ``out_dir`` (see :data:`MODEL_FILE_PATTERNS`; other files, such as
    a recipe's notes, stay). On error ``out_dir`` keeps its previous model.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out}: exists and is not a directory")
    if (out / "model.bin").exists():
        raise ConversionError(
            f"{out}: holds a CTranslate2 model (model.bin); write the transformers model elsewhere"
        )
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging.", dir=out))
    try:
        yield tmp
        _fix_permissions(tmp)
        new = {p.name for p in tmp.iterdir()}
        for pattern in MODEL_FILE_PATTERNS:
            for stale in out.glob(pattern):
                if stale.is_file() and stale.name not in new:
                    stale.unlink()
        # Weights first, configs last: a reader never sees new configs beside old weights.
        for p in sorted(tmp.iterdir(), key=lambda p: (p.suffix != ".safetensors", p.name)):
            os.replace(p, out / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fix_permissions(root: Path) -> None:
    """mkdtemp (and some writers) create owner-only entries: give them the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    for p in root.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def import_ct2(
    src_dir: PathLike,
    out_dir: PathLike,
    *,
    dtype: str = "float32",
    multilingual: bool | None = None,
) -> Path:
    """Convert a CTranslate2 Whisper model directory into a transformers model directory.

    ``dtype``: float32 (default), float16, bfloat16, or ``auto`` (the stored float type; int8/int16
    models de-quantise to float32). ``multilingual``: None infers it like Whisper does (vocabulary
    of ≥ 51865 tokens). Writes ``model.safetensors``, ``config.json``, ``generation_config.json``,
    ``processor_config.json``, ``tokenizer.json``, ``tokenizer_config.json`` into ``out_dir``
    (replacing a previous model there, see :func:`staging_dir`) and returns it.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise ConversionError(f"{src}: not a directory")
    ct2 = read_model_bin(src / "model.bin")
    if ct2.spec_name not in SUPPORTED_SPECS:
        raise ConversionError(
            f"{ct2.path}: spec {ct2.spec_name!r} is not a Whisper model (supported: "
            f"{', '.join(SUPPORTED_SPECS)})"
        )
    if ct2.spec_revision > SUPPORTED_SPECS[ct2.spec_name]:
        raise ConversionError(
            f"{ct2.path}: {ct2.spec_name} revision {ct2.spec_revision} is newer than this "
            f"importer knows ({SUPPORTED_SPECS[ct2.spec_name]})"
        )
    ct2_config = _read_json(src / "config.json")
    if not isinstance(ct2_config, dict):
        raise ConversionError(f"{src / 'config.json'}: expected a JSON object")
    vocab = _read_vocabulary(src)
    torch_dtype = _torch_dtype(dtype, ct2)

    _check_unused(ct2)
    config, is_multi = _whisper_config(ct2, vocab, multilingual)
    config.dtype = torch_dtype
    generation_config = _generation_config(config, ct2_config, vocab, is_multi)
    # The model config keeps copies (as Whisper checkpoints do); generation reads the generation config.
    config.suppress_tokens = list(generation_config.suppress_tokens)
    config.begin_suppress_tokens = list(generation_config.begin_suppress_tokens)
    tokenizer = _tokenizer(src, vocab)
    feature_extractor = _feature_extractor(src, config.num_mel_bins)
    sd, origin = _state_dict(ct2, config, torch_dtype)
    model = _build_model(config, generation_config, sd, origin, ct2.path)

    from transformers import WhisperProcessor

    processor = WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    with staging_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        weights = sorted(p.name for p in tmp.glob("*.safetensors"))
        if not weights or any(tmp.glob("*.bin")):
            raise ConversionError(f"{tmp}: expected safetensors weights only, got {weights}")
    log.info(
        "imported %s (%s, %d+%d layers, d_model %d, vocab %d, %s) → %s",
        src,
        "quantised" if ct2.is_quantised() else ct2.float_dtype(),
        config.encoder_layers,
        config.decoder_layers,
        config.d_model,
        config.vocab_size,
        "multilingual" if is_multi else "English-only",
        out_dir,
    )
    return Path(out_dir)


# --------------------------------------------------------------------------------------------
# export: transformers → CTranslate2 (ctranslate2's own converter)

QUANTIZATIONS = (
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)


def export_ct2(
    model_dir: PathLike,
    out_dir: PathLike,
    *,
    quantization: str | None = None,
    force: bool = False,
) -> Path:
    """Convert a transformers Whisper model (directory or Hub id) to CTranslate2 for deployment.

    Wraps ``ctranslate2.converters.TransformersConverter``; ``tokenizer.json`` is copied and a
    ``preprocessor_config.json`` written (faster-whisper reads both). ``quantization``: one of
    :data:`QUANTIZATIONS` or None (keep the stored type).
    """
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as e:
        raise MissingDependencyError(
            "export to CTranslate2 needs the `ctranslate2` package: "
            "pip install 'speechdistill[ct2]'"
        ) from e
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ConversionError(
            f"unknown quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}"
        )
    src = str(model_dir)
    local = Path(src).is_dir()
    if local and is_ct2_model_dir(src) and not any(Path(src).glob("*.safetensors")):
        raise ConversionError(f"{src}: already a CTranslate2 model")
    copy_files = ["tokenizer.json"] if not local or (Path(src) / "tokenizer.json").is_file() else []
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise ConversionError(f"{out}: exists and is not empty (use force=True / --force)")
    converter = TransformersConverter(src, copy_files=copy_files or None)
    converter.convert(str(out), quantization=quantization, force=True)

    from transformers import WhisperFeatureExtractor

    try:
        fe = WhisperFeatureExtractor.from_pretrained(src)
    except OSError:
        log.warning("%s: no feature extractor config; preprocessor_config.json not written", src)
    else:
        fe.to_json_file(str(out / "preprocessor_config.json"))
    log.info("exported %s → %s (quantization %s)", src, out, quantization or "as stored")
    return out
