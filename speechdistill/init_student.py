"""Distil-Whisper student initialisation (stage 6): a shallower copy of the teacher.

The student has the teacher's architecture except for the number of encoder and/or decoder layers.
Student layer ``i`` starts as teacher layer ``map[i]``; everything else (conv front end, positional
and token embeddings, final layer norms, the tied output projection) is copied unchanged, and so
are the processor and the generation config.

Layer choice (:func:`spaced_layers`): maximally spaced, first and last teacher layers always kept
(``floor(i * (N - 1) / (n - 1))`` in exact integer arithmetic: distil-whisper's
``np.linspace(0, N - 1, n, dtype=int)`` without its float error, which picks layer 14 instead of
15 for N = 31, n = 23);
a one-layer student keeps the teacher's *last* layer, as distil-whisper does (its output is what
the final layer norm and the output projection were trained on). Explicit lists of teacher
layers are accepted when sorted, unique and in range.

``alignment_heads`` (the ``(decoder layer, head)`` cross-attention pairs used for word
timestamps) name teacher decoder layers: pairs on kept layers are renumbered to the student's
layer index, the others are dropped. When none survive (a 32-layer large-v3 teacher's heads lie in
its middle layers, none on the 2 a 32-2 student keeps) or the teacher has none, the student gets
the default of openai-whisper and CTranslate2's converter: every head of the last half of its
decoder layers (:func:`default_alignment_heads`), so word timestamps work, and agree, in
transformers and in faster-whisper; a warning says so. Both lists are recorded in
``student.json``.

``student.json``, written last, records the layer maps, parameter counts and the teacher's
identity (``teacher.json``'s weights hashes when present, else the hashes of its safetensors).
"""

from __future__ import annotations

import copy
import json
import logging
import operator
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechdistill import __version__
from speechdistill.teachers.identity import read_teacher_info, teacher_identity
from speechdistill.teachers.whisper import load_teacher
from speechdistill.utils import PathLike, atomic_write_text, staging_dir

if TYPE_CHECKING:
    import torch
    from transformers import WhisperForConditionalGeneration

log = logging.getLogger(__name__)

__all__ = [
    "STUDENT_JSON",
    "StudentInfo",
    "default_alignment_heads",
    "init_student",
    "layer_map",
    "read_student_info",
    "remap_alignment_heads",
    "spaced_layers",
]

STUDENT_JSON = "student.json"
#: Entries of an output directory that do not count as contents: Kaldi's per-stage ``log/``
#: directory (``run.pl`` creates it before the command runs); hidden files (stage markers) too.
_IGNORED_ENTRIES = ("log",)
_LAYER_KEY = re.compile(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$")


# --------------------------------------------------------------------------------------------
# layer maps


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what}: expected an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what}: expected an integer, got {value!r}") from None


def spaced_layers(n_teacher: int, n_student: int) -> list[int]:
    """``n_student`` maximally spaced layer indices out of ``n_teacher``, first and last kept.

    ``spaced_layers(6, 3) == [0, 2, 5]``; ``spaced_layers(4, 2) == [0, 3]``; a single layer is the
    teacher's last one (``spaced_layers(4, 1) == [3]``, as in distil-whisper).
    """
    n_teacher = _as_int(n_teacher, "n_teacher")
    n_student = _as_int(n_student, "n_student")
    if n_teacher < 1:
        raise ValueError(f"n_teacher must be at least 1, got {n_teacher}")
    if not 1 <= n_student <= n_teacher:
        raise ValueError(
            f"cannot choose {n_student} of {n_teacher} teacher layers "
            f"(the student needs 1..{n_teacher} layers)"
        )
    if n_student == 1:
        return [n_teacher - 1]
    return [i * (n_teacher - 1) // (n_student - 1) for i in range(n_student)]


def layer_map(spec: int | Sequence[int], n_teacher: int, *, what: str = "decoder") -> list[int]:
    """The student's layer map (student layer i ← teacher layer ``map[i]``) for ``spec``.

    ``spec``: a layer count (maximally spaced, see :func:`spaced_layers`) or an explicit list of
    teacher layer indices (sorted, unique, in ``0..n_teacher-1``). ``what`` names the stack in
    error messages.
    """
    if isinstance(spec, str) or not isinstance(spec, Sequence):
        count = _as_int(spec, f"{what} layers")
        if not 1 <= count <= n_teacher:
            raise ValueError(
                f"{what} layers: {count} requested but the teacher has {n_teacher} {what} layers "
                f"(choose 1..{n_teacher})"
            )
        return spaced_layers(n_teacher, count)
    layers = [_as_int(x, f"{what} layers {list(spec)!r}") for x in spec]
    if not layers:
        raise ValueError(f"{what} layers: the list of teacher layers is empty")
    bad = [x for x in layers if not 0 <= x < n_teacher]
    if bad:
        raise ValueError(
            f"{what} layers {layers}: {bad} out of range (the teacher's {what} layers are "
            f"0..{n_teacher - 1})"
        )
    dups = sorted({x for x in layers if layers.count(x) > 1})
    if dups:
        raise ValueError(f"{what} layers {layers}: teacher layer(s) {dups} listed more than once")
    if layers != sorted(layers):
        raise ValueError(f"{what} layers {layers}: list them in increasing order")
    return layers


def remap_alignment_heads(
    heads: Sequence[Sequence[int]], decoder_map: Sequence[int]
) -> tuple[list[list[int]], list[list[int]]]:
    """Teacher ``(layer, head)`` alignment heads → ``(kept, renumbered to student layers;
    dropped, as given)``."""
    student_index = {t: s for s, t in enumerate(decoder_map)}
    kept: list[list[int]] = []
    dropped: list[list[int]] = []
    for pair in heads:
        layer, head = (int(x) for x in pair)
        if layer in student_index:
            kept.append([student_index[layer], head])
        else:
            dropped.append([layer, head])
    return kept, dropped


def default_alignment_heads(decoder_layers: int, attention_heads: int) -> list[list[int]]:
    """Every ``(layer, head)`` of the last half of the decoder layers: the alignment heads
    openai-whisper and CTranslate2's converter use for a model that names none."""
    return [
        [layer, head]
        for layer in range(decoder_layers // 2, decoder_layers)
        for head in range(attention_heads)
    ]


# --------------------------------------------------------------------------------------------
# the record


@dataclass
class StudentInfo:
    """What ``student.json`` records about an initialised student."""

    out_dir: Path
    #: The teacher: ``path`` (or Hub id), ``name`` from its ``teacher.json`` when present, and its
    #: identity (:func:`speechdistill.teachers.identity.teacher_identity`).
    teacher: dict[str, Any]
    #: Student layer i ← teacher layer ``map[i]``.
    encoder_map: list[int]
    decoder_map: list[int]
    teacher_encoder_layers: int
    teacher_decoder_layers: int
    #: ``{"teacher"|"student": {"total", "encoder", "decoder"}}``; the decoder includes the token
    #: embeddings, and the tied output projection is counted once.
    params: dict[str, dict[str, int]]
    #: ``{"teacher": [...] | None, "student": [...], "dropped": [...]}`` (``(layer, head)`` pairs),
    #: with ``"default": true`` when the student's are :func:`default_alignment_heads`.
    alignment_heads: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    #: A pruned encoder in place of the teacher's (``--encoder``): ``path``, ``pruned`` (layers
    #: of different sizes: the config's ``pruning`` record), ``params`` and the pruning run's
    #: ``sparsity`` where its ``prune.json`` records one; None for the teacher's own layers.
    encoder: dict[str, Any] | None = None
    speechdistill_version: str = __version__

    @property
    def shares_teacher_encoder(self) -> bool:
        """True when the student's encoder is the teacher's (every layer kept, in order), so a
        frozen-encoder trainer can run one encoder pass for both."""
        return self.encoder is None and self.encoder_map == list(range(self.teacher_encoder_layers))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("out_dir")
        d["shares_teacher_encoder"] = self.shares_teacher_encoder
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], out_dir: PathLike) -> StudentInfo:
        known = {f for f in cls.__dataclass_fields__ if f != "out_dir"}
        return cls(out_dir=Path(out_dir), **{k: v for k, v in data.items() if k in known})

    def summary(self) -> str:
        """A few human-readable lines: the layer maps and parameter counts."""
        t, s = self.params["teacher"], self.params["student"]

        def mb(n: int) -> str:
            return f"{n / 1e6:.2f}M"

        encoder = (
            f"encoder: {self.encoder['path']} ({'pruned, ' if self.encoder.get('pruned') else ''}"
            f"{len(self.encoder_map)} layers)"
            if self.encoder
            else f"encoder layers: {len(self.encoder_map)} of {self.teacher_encoder_layers} "
            f"(teacher layers {self.encoder_map})"
        )
        return "\n".join(
            [
                f"student: {self.out_dir}",
                encoder,
                f"decoder layers: {len(self.decoder_map)} of {self.teacher_decoder_layers} "
                f"(teacher layers {self.decoder_map})",
                f"parameters: teacher {mb(t['total'])} (encoder {mb(t['encoder'])}, decoder "
                f"{mb(t['decoder'])}); student {mb(s['total'])} (encoder {mb(s['encoder'])}, "
                f"decoder {mb(s['decoder'])}); {100 * s['total'] / t['total']:.1f}% of the teacher",
            ]
        )


def read_student_info(out_dir: PathLike) -> StudentInfo | None:
    """The ``student.json`` of an initialised student directory, or None."""
    path = Path(out_dir) / STUDENT_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return StudentInfo.from_dict(data, out_dir)


# --------------------------------------------------------------------------------------------
# init


def _param_counts(model: WhisperForConditionalGeneration) -> dict[str, int]:
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "encoder": sum(p.numel() for p in model.model.encoder.parameters()),
        "decoder": sum(p.numel() for p in model.model.decoder.parameters()),
    }


def _teacher_record(teacher: PathLike) -> dict[str, Any]:
    """The teacher as ``student.json`` records it: where it was, its name, its identity."""
    path = Path(teacher)
    record: dict[str, Any] = {"path": str(path.resolve()) if path.is_dir() else str(teacher)}
    info = read_teacher_info(path) if path.is_dir() else None
    if info and info.get("name"):
        record["name"] = info["name"]
    return {**record, **teacher_identity(teacher)}


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory")
    if not out.is_dir() or overwrite:
        return
    contents = sorted(
        p.name
        for p in out.iterdir()
        if not p.name.startswith(".") and not (p.name in _IGNORED_ENTRIES and p.is_dir())
    )
    if contents:
        shown = ", ".join(contents[:5]) + (", …" if len(contents) > 5 else "")
        raise FileExistsError(
            f"{out}: not empty ({shown}); choose another directory or overwrite "
            "(overwrite=True, --overwrite)"
        )


def _student_state_dict(
    teacher_sd: dict[str, torch.Tensor], encoder_map: list[int], decoder_map: list[int]
) -> dict[str, torch.Tensor]:
    """Teacher tensors under student names; layers not in a map are left out."""
    index = {
        "encoder": {t: s for s, t in enumerate(encoder_map)},
        "decoder": {t: s for s, t in enumerate(decoder_map)},
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in teacher_sd.items():
        m = _LAYER_KEY.match(key)
        if m is None:
            out[key] = value
            continue
        stack, layer, rest = m.group(1), int(m.group(2)), m.group(3)
        if layer in index[stack]:
            out[f"model.{stack}.layers.{index[stack][layer]}.{rest}"] = value
    return out


def _build_student(config, state_dict: dict[str, torch.Tensor]) -> WhisperForConditionalGeneration:
    import torch
    from transformers import WhisperForConditionalGeneration

    from speechdistill.prune.io import PrunedWhisperForConditionalGeneration, is_pruned

    pruned = is_pruned(config)
    with torch.device("meta"):
        model = (
            PrunedWhisperForConditionalGeneration if pruned else WhisperForConditionalGeneration
        )(config)
    expected = model.state_dict()
    unknown = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    if unknown or missing:
        raise RuntimeError(
            f"student weights do not match the student architecture: missing {missing[:5]}, "
            f"unexpected {unknown[:5]}"
        )
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise RuntimeError(
                f"student weight {key}: teacher shape {tuple(value.shape)}, student config "
                f"needs {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.tie_weights()
    return model.eval()


def _pruned_encoder(path: PathLike, tconf) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A saved (pruned) Whisper encoder of the teacher's shape, and its ``student.json`` record."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from speechdistill.prune.io import PRUNE_JSON, is_pruned, load_pruned

    enc = load_pruned(path)
    if not isinstance(enc, WhisperEncoder):
        raise ValueError(f"{path}: not a Whisper encoder (a {type(enc).__name__})")
    for name in ("d_model", "num_mel_bins", "max_source_positions"):
        if getattr(enc.config, name) != getattr(tconf, name):
            raise ValueError(
                f"{path}: {name} {getattr(enc.config, name)} is not the teacher's "
                f"{getattr(tconf, name)} (an encoder of another model)"
            )
    record: dict[str, Any] = {"path": str(Path(path).resolve()), "pruned": is_pruned(enc.config),
                              "params": sum(p.numel() for p in enc.parameters())}  # fmt: skip
    prune_json = Path(path) / PRUNE_JSON
    if prune_json.is_file():
        info = json.loads(prune_json.read_text(encoding="utf-8"))
        info = info.get("pruned", info)  # final-distill's record nests the pruning run's
        record.update({k: info[k] for k in ("sparsity", "target_sparsity") if k in info})
    return enc, record


def init_student(
    teacher_dir: PathLike,
    out_dir: PathLike,
    *,
    decoder_layers: int | Sequence[int] = 2,
    encoder_layers: int | Sequence[int] | None = None,
    encoder: PathLike | None = None,
    dtype: Any = None,
    overwrite: bool = False,
) -> StudentInfo:
    """Initialise a Whisper student from ``teacher_dir`` into ``out_dir``; returns its record.

    ``decoder_layers`` / ``encoder_layers``: a count (maximally spaced teacher layers, first and
    last kept) or an explicit list of teacher layer indices; ``encoder_layers=None`` keeps the
    whole encoder. ``encoder``: a pruned encoder of this teacher (``speechdistill prune`` /
    ``final-distill``) in place of the teacher's; where its layers differ in size the student's
    config keeps the ``pruning`` record (it loads with
    :class:`~speechdistill.prune.io.PrunedWhisperForConditionalGeneration`). ``dtype``: a torch
    dtype or its name (None: the teacher's stored dtype).
    The model (safetensors), config, generation config and processor are written into a staging
    directory and moved into ``out_dir``; ``student.json`` is written last. A non-empty
    ``out_dir`` (hidden files and a ``log/`` directory aside) is refused unless ``overwrite``.
    """
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    teacher, processor = load_teacher(teacher_dir, dtype="auto" if dtype is None else dtype)
    tconf = teacher.config
    enc_map = (
        list(range(tconf.encoder_layers))
        if encoder_layers is None
        else layer_map(encoder_layers, tconf.encoder_layers, what="encoder")
    )
    dec_map = layer_map(decoder_layers, tconf.decoder_layers, what="decoder")

    config = copy.deepcopy(tconf)
    config.encoder_layers = len(enc_map)
    config.decoder_layers = len(dec_map)
    param_dtype = next(teacher.parameters()).dtype
    config.dtype = param_dtype
    state = _student_state_dict(teacher.state_dict(), enc_map, dec_map)
    enc_record = None
    if encoder is not None:
        if encoder_layers is not None:
            raise ValueError("give encoder or encoder_layers, not both")
        enc, enc_record = _pruned_encoder(encoder, tconf)
        for name in ("encoder_layers", "encoder_attention_heads", "encoder_ffn_dim"):
            setattr(config, name, getattr(enc.config, name))
        if enc_record["pruned"]:
            config.pruning = dict(enc.config.pruning)
        enc_map = list(range(enc.config.encoder_layers))
        state = {k: v for k, v in state.items() if not k.startswith("model.encoder.")}
        state.update({f"model.encoder.{k}": v.to(param_dtype) for k, v in enc.state_dict().items()})
        del enc
    student = _build_student(config, state)

    gen = copy.deepcopy(teacher.generation_config)
    teacher_heads = getattr(gen, "alignment_heads", None)
    heads: dict[str, Any] = {"teacher": teacher_heads, "student": None, "dropped": []}
    kept: list[list[int]] = []
    if teacher_heads:
        kept, dropped = remap_alignment_heads(teacher_heads, dec_map)
        heads.update(dropped=dropped)
        if dropped:
            log.info(
                "alignment heads on dropped decoder layers removed: %s; kept (renumbered): %s",
                dropped,
                kept,
            )
    if not kept:
        kept = default_alignment_heads(config.decoder_layers, config.decoder_attention_heads)
        heads["default"] = True
        log.warning(
            "%s: %s; the student's word timestamps use the default heads (every head of its "
            "last %d decoder layer(s)): %s",
            teacher_dir,
            "no alignment head lies on a kept decoder layer"
            if teacher_heads
            else "the teacher names no alignment heads",
            config.decoder_layers - config.decoder_layers // 2,
            kept,
        )
    heads["student"] = kept
    gen.alignment_heads = kept
    student.generation_config = gen

    info = StudentInfo(
        out_dir=out,
        teacher=_teacher_record(teacher_dir),
        encoder_map=enc_map,
        decoder_map=dec_map,
        teacher_encoder_layers=tconf.encoder_layers,
        teacher_decoder_layers=tconf.decoder_layers,
        params={"teacher": _param_counts(teacher), "student": _param_counts(student)},
        alignment_heads=heads,
        dtype=str(param_dtype).replace("torch.", ""),
        encoder=enc_record,
    )
    del teacher

    with staging_dir(out, "init-student", legacy_record=(STUDENT_JSON,)) as tmp:
        (out / STUDENT_JSON).unlink(missing_ok=True)  # written again last: marks a finished student
        student.save_pretrained(tmp)
        gen.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    atomic_write_text(
        out / STUDENT_JSON, json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n"
    )
    log.info("encoder layers %s, decoder layers %s (teacher indices)", enc_map, dec_map)
    log.info("student initialised in %s", out)
    return info
