"""Publishing a trained student (stage 10): a Hub-ready folder, its model card, the upload.

:func:`build_hub_folder` writes, into a temporary directory beside ``out_dir`` that then replaces
it (a rerun replaces the folder; a failed build leaves the previous one):

- ``config.json``, ``generation_config.json``, the safetensors weights (``model.safetensors``,
  or shards with their index) — pickle weights are refused, never copied;
- the processor files (tokenizer, feature extractor); a ``preprocessor_config.json`` is added
  when the model dir lacks one, so that older transformers releases load the feature extractor;
- ``train_config.yaml`` (the training settings) when the model dir has one, ``RESULTS.md``;
- optionally ``ct2/``, a CTranslate2 export (:func:`speechdistill.whisper.ct2.export.export_ct2`);
- ``README.md``: the model card, made with huggingface_hub's ``ModelCard``, ``ModelCardData`` and
  ``EvalResult`` (``model-index`` holds the student's WER in percent on each test set).

:func:`verify_hub_folder` loads everything back (card, model-index, config, weights, processor).
:func:`upload_hub_folder` calls ``create_repo(repo_id, exist_ok=True, private=…)`` and
``upload_folder`` on a client (default ``HfApi``; any object with those two methods will do). The
token comes from huggingface_hub's usual places (``HF_TOKEN``, the stored login) and is never
logged. :func:`publish` does all three; ``dry_run`` stops before the upload.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from speechdistill import __version__
from speechdistill.scoring import infer_names, load_results, write_results_md
from speechdistill.utils import PathLike, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "REQUIRED_TAGS",
    "CardOptions",
    "HubClient",
    "PublishResult",
    "build_hub_folder",
    "publish",
    "resolve_token",
    "upload_hub_folder",
    "verify_hub_folder",
]

TASK = "automatic-speech-recognition"
REQUIRED_TAGS = (
    "speechdistill",
    "distil-whisper",
    "whisper",
    "automatic-speech-recognition",
    "knowledge-distillation",
)
#: Files of the model dir that the folder copies when present (besides the weights).
CONFIG_FILES = ("config.json", "generation_config.json")
PROCESSOR_FILES = (
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
TRAIN_CONFIG = "train_config.yaml"
TRAIN_SUMMARY = "train.json"
INDEX_FILE = "model.safetensors.index.json"
#: Weight files that are pickles (or may be): never published.
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
CT2_SUBDIR = "ct2"
#: Embedded teachers (speechdistill.teachers) and the Hub checkpoints they were converted from.
EMBEDDED_BASE_MODELS = {"tiny.en": "openai/whisper-tiny.en"}
#: OpenAI's Whisper checkpoints on the Hub are released under Apache-2.0; a student distilled
#: from one inherits it unless --license says otherwise.
OPENAI_WHISPER_PREFIX = "openai/whisper-"
OPENAI_WHISPER_LICENSE = "apache-2.0"


class HubClient(Protocol):
    """What :func:`upload_hub_folder` needs from a client (``huggingface_hub.HfApi`` has both)."""

    def create_repo(self, repo_id: str, *, exist_ok: bool, private: bool | None) -> Any: ...

    def upload_folder(
        self, *, repo_id: str, folder_path: str, commit_message: str | None
    ) -> Any: ...


@dataclass
class CardOptions:
    """What the model card says beyond what the files tell.

    ``splits`` maps a test set name to the dataset split reported in model-index (default: the set
    name). ``selection_set`` is the set used to pick the checkpoint: shown in the card, marked,
    and kept out of model-index (its WER is optimistic).
    """

    repo_id: str | None = None
    model_name: str | None = None
    base_model: str | None = None
    language: str | list[str] | None = None
    license: str | None = None
    dataset_id: str | None = None
    dataset_name: str | None = None
    dataset_config: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    selection_set: str | None = None


@dataclass
class PublishResult:
    """What :func:`publish` did."""

    folder: Path
    files: list[str]
    eval_results: list[tuple[str, str, float]]  # (test set, split, WER %) in model-index
    repo_id: str | None = None
    uploaded: bool = False
    url: str | None = None

    def summary(self) -> str:
        wers = ", ".join(f"{s} {v:.2f}" for s, _, v in self.eval_results) or "none"
        lines = [
            f"hub folder: {self.folder} ({len(self.files)} files)",
            f"WER % (model-index): {wers}",
        ]
        if self.uploaded:
            lines.append(f"uploaded to {self.repo_id}: {self.url or ''}".rstrip(": "))
        else:
            lines.append("dry run: nothing uploaded")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# inputs


@dataclass
class _Scored:
    name: str
    path: Path
    data: dict[str, Any]

    @property
    def wer_pct(self) -> float | None:
        wer = self.data.get("wer")
        if wer is None or not math.isfinite(float(wer)):
            return None
        return round(100.0 * float(wer), 2)


def _load_scored(paths: Sequence[PathLike], what: str) -> list[_Scored]:
    out: list[_Scored] = []
    seen: dict[str, Path] = {}
    for p in paths:
        path = Path(p)
        if path.is_dir():
            path = path / "results.json"
        data = load_results(path)  # errors name the file
        name = data.get("dataset") or infer_names(path)[1] or path.parent.name
        if name in seen:
            raise ValueError(f"{path}: {what} for {name!r} given twice (also {seen[name]})")
        seen[name] = path
        out.append(_Scored(str(name), path, data))
    return out


def _weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files to publish; pickles are refused (the error names the file)."""
    pickles = sorted(p for pat in PICKLE_PATTERNS for p in model_dir.glob(pat) if p.is_file())
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(
                set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            )
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ValueError(f"{index}: not a safetensors index ({e})") from None
        files = [model_dir / s for s in shards]
        for f in files:
            if not f.is_file():
                raise ValueError(f"{f}: listed in {index.name} but not found")
        files.append(index)
    elif (model_dir / "model.safetensors").is_file():
        files = [model_dir / "model.safetensors"]
    elif pickles:
        raise ValueError(
            f"{pickles[0]}: pickle weights are not published (safetensors only); load the model "
            "and save it with save_pretrained(), which writes model.safetensors"
        )
    else:
        raise ValueError(f"{model_dir / 'model.safetensors'}: not found (no weights to publish)")
    if pickles:
        log.warning(
            "not published (pickle weights; the safetensors are): %s",
            ", ".join(p.name for p in pickles),
        )
    return files


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir}: model directory not found")
    for name in CONFIG_FILES:
        if not (model_dir / name).is_file():
            raise ValueError(f"{model_dir / name}: not found (not a trained Whisper model dir?)")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _param_counts(model_dir: Path) -> dict[str, int] | None:
    """Total/encoder/decoder parameters from the safetensors headers (tied weights once)."""
    from safetensors import safe_open

    try:
        files = [f for f in _weight_files(model_dir) if f.suffix == ".safetensors"]
    except ValueError:
        return None
    total = enc = 0
    for f in files:
        with safe_open(str(f), "np") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open is not a mapping)
                n = math.prod(st.get_slice(key).get_shape())
                total += n
                if key.startswith("model.encoder."):
                    enc += n
    return {"total": total, "encoder": enc, "decoder": total - enc}


def _resolve_base_model(opts: CardOptions, teacher_dir: Path | None) -> str | None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    base = opts.base_model
    if base is None and teacher_dir is not None:
        from speechdistill.teachers.identity import read_teacher_info

        info = read_teacher_info(teacher_dir) or {}
        source = info.get("source") or {}
        if source.get("kind") == "hub":
            base = source.get("repo_id")
        elif source.get("kind") == "embedded-ct2":
            base = EMBEDDED_BASE_MODELS.get(str(source.get("name") or info.get("name")))
        if base:
            log.info("base model %s (from %s)", base, teacher_dir / "teacher.json")
    if base is None:
        log.warning("base model unknown: give --base-model (the teacher's Hub id)")
        return None
    try:
        validate_repo_id(base)
    except HFValidationError:
        raise ValueError(f"base model {base!r} is not a Hub model id (owner/name)") from None
    return base


def _resolve_language(opts: CardOptions, model_dir: Path) -> str | list[str] | None:
    if opts.language:
        return opts.language
    gen = _read_json(model_dir / "generation_config.json") or {}
    if gen.get("is_multilingual") is False:
        return "en"
    train = _read_train_config(model_dir)
    if train and train.get("language"):
        return str(train["language"])
    log.warning("language unknown for a multilingual model: give --language")
    return None


def _resolve_license(opts: CardOptions, base_model: str | None) -> str | None:
    if opts.license:
        return opts.license
    if base_model and base_model.startswith(OPENAI_WHISPER_PREFIX):
        log.info("license %s (the teacher's, %s)", OPENAI_WHISPER_LICENSE, base_model)
        return OPENAI_WHISPER_LICENSE
    log.warning("license unknown: give --license (the card will have none)")
    return None


def _read_train_config(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / TRAIN_CONFIG
    if path.is_file():
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    summary = _read_json(model_dir / TRAIN_SUMMARY) or {}
    config = summary.get("config")
    return config if isinstance(config, dict) else None


# --------------------------------------------------------------------------------------------
# the model card

CARD_TEMPLATE = """\
# {title}

{title} is a small Whisper speech recogniser made by knowledge distillation from
{teacher_ref} with [speechdistill](https://github.com/speechdistill/speechdistill) {version}.
The student keeps the teacher's architecture with fewer layers; it learnt from the teacher's
transcripts (pseudo-labels) and output distributions.

## Model

{model_table}

## Training

{training}

## Results

{results}
{speed}
## Usage

```python
from transformers import pipeline

asr = pipeline("automatic-speech-recognition", model="{model_ref}")
print(asr("speech.wav")["text"])
```
{ct2_usage}
## Limitations

{limitations}
"""

CT2_USAGE_TEMPLATE = """
A CTranslate2 export ({quantization}) is in `{subdir}/`, for
[faster-whisper](https://github.com/SYSTRAN/faster-whisper):

```python
from faster_whisper import WhisperModel
{ct2_path}
model = WhisperModel(path, compute_type="int8")
segments, info = model.transcribe("speech.wav")
print(" ".join(s.text for s in segments))
```
"""
CT2_HUB_PATH = (
    "from huggingface_hub import snapshot_download\n\n"
    'path = snapshot_download("{repo_id}", allow_patterns=["{subdir}/*"]) + "/{subdir}"'
)
CT2_LOCAL_PATH = '\npath = "{folder}/{subdir}"'

LIMITATIONS = (
    "The student was distilled and evaluated only on the data described above: expect higher "
    "error rates on other domains, accents and recording conditions, and the teacher's failure "
    "modes (such as hallucinated text on silence or noise) can remain."
)


def _m(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def _model_table(
    student_cfg: Mapping[str, Any],
    student_params: Mapping[str, int] | None,
    teacher_cfg: Mapping[str, Any] | None,
    teacher_params: Mapping[str, int] | None,
) -> str:
    def row(label: str, key: str) -> str:
        t = teacher_cfg.get(key, "-") if teacher_cfg else "-"
        return f"|{label}|{t}|{student_cfg.get(key, '-')}|"

    tp, sp = teacher_params or {}, student_params or {}
    lines = [
        "| |teacher|student|",
        "|---|---|---|",
        row("encoder layers", "encoder_layers"),
        row("decoder layers", "decoder_layers"),
        row("model width (d_model)", "d_model"),
    ]
    for label, key in (("parameters", "total"), ("encoder", "encoder"), ("decoder", "decoder")):
        lines.append(f"|{label}|{_m(tp.get(key))}|{_m(sp.get(key))}|")
    text = "\n".join(lines)
    if tp.get("total") and sp.get("total"):
        text += (
            f"\n\nThe student has {100 * sp['total'] / tp['total']:.1f} % of the teacher's "
            "parameters (the tied output projection counted once)."
        )
    return text


def _training_section(train_cfg: Mapping[str, Any] | None, summary: Mapping[str, Any]) -> str:
    if not train_cfg:
        return f"No training settings were found beside the model ({TRAIN_CONFIG})."
    lines = []
    if summary.get("steps"):
        best = summary.get("best_dev_wer")
        dev = f", dev WER {100 * float(best):.2f} %" if best is not None else ""
        lines += [
            f"{summary['steps']} optimiser steps; the checkpoint kept is the one with the lowest "
            f"WER on the dev set (step {summary.get('best_step')}{dev}).",
            "",
        ]
    lines += [f"Settings (also in `{TRAIN_CONFIG}`):", "", "|setting|value|", "|---|---|"]
    for key, value in train_cfg.items():
        if value is None:
            shown = "-"
        elif isinstance(value, list | dict):
            shown = json.dumps(value)
        else:
            shown = str(value)
        lines.append(f"|{key}|{shown}|")
    return "\n".join(lines)


def _results_section(
    student: Sequence[_Scored],
    teacher: Mapping[str, _Scored],
    opts: CardOptions,
) -> str:
    normalisers = sorted({str(s.data.get("normalizer")) for s in student})
    lines = [
        "Word error rate (%, lower is better) after the "
        + ", ".join(f"`{n}`" for n in normalisers)
        + " text normaliser, teacher and student on the same test sets:",
        "",
        "|test set|utterances|teacher WER|student WER|relative change|",
        "|---|---|---|---|---|",
    ]
    for s in student:
        t = teacher.get(s.name)
        tw, sw = (t.wer_pct if t else None), s.wer_pct
        rel = f"{100 * (sw - tw) / tw:+.1f} %" if tw and sw is not None else "-"
        name = s.name + (" (checkpoint selection)" if s.name == opts.selection_set else "")
        lines.append(
            f"|{name}|{s.data.get('n_utts', '-')}|{'-' if tw is None else f'{tw:.2f}'}|"
            f"{'-' if sw is None else f'{sw:.2f}'}|{rel}|"
        )
    if opts.selection_set and any(s.name == opts.selection_set for s in student):
        lines += [
            "",
            f"The {opts.selection_set} set chose the checkpoint, so its figure is optimistic; "
            "it is not in the card's metadata.",
        ]
    lines += [
        "",
        "CER, orthographic WER, error counts and confidence intervals are in `RESULTS.md`.",
    ]
    return "\n".join(lines)


def _eval_results(student: Sequence[_Scored], opts: CardOptions) -> list[Any]:
    from huggingface_hub import EvalResult

    out = []
    for s in student:
        if s.name == opts.selection_set:
            continue
        if s.wer_pct is None:
            log.warning("%s: WER is not finite; left out of model-index", s.path)
            continue
        out.append(
            EvalResult(
                task_type=TASK,
                task_name="Automatic Speech Recognition",
                dataset_type=opts.dataset_id or s.name,
                dataset_name=opts.dataset_name or opts.dataset_id or s.name,
                dataset_config=opts.dataset_config,
                dataset_split=opts.splits.get(s.name, s.name),
                metric_type="wer",
                metric_name="WER",
                metric_value=s.wer_pct,
            )
        )
    return out


def make_model_card(
    model_dir: Path,
    *,
    student: Sequence[_Scored],
    teacher: Sequence[_Scored] = (),
    teacher_dir: Path | None = None,
    speed_md: str = "",
    opts: CardOptions | None = None,
    ct2_quantization: str | None = None,
    ct2: bool = False,
    folder_hint: str = "path/to/folder",
):
    """The model card (``huggingface_hub.ModelCard``) of the student in ``model_dir``."""
    from huggingface_hub import ModelCard, ModelCardData

    opts = opts or CardOptions()
    base = _resolve_base_model(opts, teacher_dir)
    evals = _eval_results(student, opts)
    if not evals:
        log.warning("no test-set results besides the selection set: the card has no model-index")
    title = opts.model_name or (opts.repo_id.split("/")[-1] if opts.repo_id else None)
    title = title or (f"distil-{base.split('/')[-1]}" if base else "speechdistill-student")
    tags = [*REQUIRED_TAGS, *(["ctranslate2"] if ct2 else [])]
    data = ModelCardData(
        model_name=title,
        base_model=base,
        language=_resolve_language(opts, model_dir),
        license=_resolve_license(opts, base),
        library_name="transformers",
        pipeline_tag=TASK,
        tags=tags,
        metrics=["wer"],
        eval_results=evals or None,
    )
    teacher_cfg = _read_json(teacher_dir / "config.json") if teacher_dir else None
    model_ref = opts.repo_id or folder_hint
    body = CARD_TEMPLATE.format(
        title=title,
        teacher_ref=f"[{base}](https://huggingface.co/{base})" if base else "a Whisper teacher",
        version=__version__,
        model_table=_model_table(
            _read_json(model_dir / "config.json") or {},
            _param_counts(model_dir),
            teacher_cfg,
            _param_counts(teacher_dir) if teacher_dir else None,
        ),
        training=_training_section(
            _read_train_config(model_dir), _read_json(model_dir / TRAIN_SUMMARY) or {}
        ),
        results=_results_section(student, {t.name: t for t in teacher}, opts),
        speed=f"\n{speed_md.strip()}\n" if speed_md.strip() else "",
        model_ref=model_ref,
        ct2_usage=CT2_USAGE_TEMPLATE.format(
            quantization=ct2_quantization or "weights as stored",
            subdir=CT2_SUBDIR,
            ct2_path=(CT2_HUB_PATH if opts.repo_id else CT2_LOCAL_PATH).format(
                repo_id=opts.repo_id, folder=folder_hint, subdir=CT2_SUBDIR
            ),
        )
        if ct2
        else "",
        limitations=LIMITATIONS,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


# --------------------------------------------------------------------------------------------
# the folder


def _fix_permissions(root: Path) -> None:
    """mkdtemp makes an owner-only directory: give everything the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [root, *root.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def _check_out_dir(out: Path, protected: Sequence[Path]) -> None:
    resolved = out.resolve()
    for p in protected:
        rp = p.resolve()
        if rp == resolved or rp.is_relative_to(resolved):
            raise ValueError(f"{out}: the hub folder would replace {p}; choose another --out")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "README.md").is_file():
        raise ValueError(
            f"{out}: exists and is not a hub folder (no README.md); remove it or choose another --out"
        )


def _replace_dir(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``, replacing a previous ``out`` (kept until the move succeeded)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        os.rename(out, old)
    try:
        os.rename(new, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _feature_extractor_json(model_dir: Path, dest: Path) -> None:
    from transformers import WhisperFeatureExtractor

    try:
        fe = WhisperFeatureExtractor.from_pretrained(str(model_dir))
    except OSError:
        log.warning("%s: no feature extractor config found", model_dir)
        return
    fe.to_json_file(str(dest))


def build_hub_folder(
    model_dir: PathLike,
    out_dir: PathLike | None = None,
    *,
    results: Sequence[PathLike] = (),
    teacher_dir: PathLike | None = None,
    teacher_results: Sequence[PathLike] | None = None,
    speed: Sequence[PathLike] | None = None,
    results_md: PathLike | None = None,
    card: CardOptions | None = None,
    ct2: bool = False,
    ct2_quantization: str | None = None,
) -> tuple[Path, list[tuple[str, str, float]]]:
    """Write the Hub folder of the student in ``model_dir``; return it and its model-index rows.

    ``results``: the student's results.json files (or score dirs); default
    ``model_dir/decode_*/score_wer/results.json``. ``teacher_results`` likewise (default: under
    ``teacher_dir``), ``speed``: speed.json files (default: ``speed.json`` of both dirs).
    ``results_md``: a RESULTS.md to copy; by default one is written from the results and speed.
    ``out_dir`` defaults to ``model_dir/hub``.
    """
    model = Path(model_dir)
    teacher = Path(teacher_dir) if teacher_dir is not None else None
    opts = card or CardOptions()
    _check_model_dir(model)
    if teacher is not None and not teacher.is_dir():
        raise ValueError(f"{teacher}: teacher directory not found")
    weights = _weight_files(model)
    if not results:
        results = sorted(model.glob("decode_*/score_wer/results.json"))
        if not results:
            raise ValueError(
                f"{model}/decode_*/score_wer/results.json: no results found; score the model "
                "first (speechdistill score) or give the results files"
            )
    student = _load_scored(results, "results")
    if teacher_results is None:
        teacher_results = sorted(teacher.glob("decode_*/score_wer/results.json")) if teacher else []
    teacher_scored = _load_scored(teacher_results, "teacher results")
    if speed is None:
        speed = [d / "speed.json" for d in (teacher, model) if d and (d / "speed.json").is_file()]
    if results_md is not None and not Path(results_md).is_file():
        raise ValueError(f"{results_md}: not found")
    if ct2:
        from speechdistill.whisper.ct2.export import QUANTIZATIONS

        if ct2_quantization is not None and ct2_quantization not in QUANTIZATIONS:
            raise ValueError(
                f"unknown CTranslate2 quantization {ct2_quantization!r} "
                f"(choose one of {', '.join(QUANTIZATIONS)})"
            )

    rows: list[tuple[str, str, float]] = []
    for s in student:
        if s.name != opts.selection_set and s.wer_pct is not None:
            rows.append((s.name, opts.splits.get(s.name, s.name), s.wer_pct))
    out = Path(out_dir) if out_dir is not None else model / "hub"
    _check_out_dir(out, [model, *([teacher] if teacher else [])])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for f in [*weights, *(model / n for n in (*CONFIG_FILES, *PROCESSOR_FILES, TRAIN_CONFIG))]:
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        if not (tmp / "preprocessor_config.json").is_file():
            _feature_extractor_json(model, tmp / "preprocessor_config.json")

        from speechdistill.speed import format_speed_md, load_reports

        reports = load_reports(list(speed)) if speed else []
        speed_md = format_speed_md(reports) if reports else ""
        if results_md is not None:
            shutil.copy2(results_md, tmp / "RESULTS.md")
        else:
            entries = [("teacher", t.path) for t in teacher_scored]
            entries += [("student", s.path) for s in student]
            extra = [speed_md] if speed_md else []
            write_results_md(tmp / "RESULTS.md", entries, extra_sections=extra)
        if ct2:
            from speechdistill.whisper.ct2.export import export_ct2

            export_ct2(tmp, tmp / CT2_SUBDIR, quantization=ct2_quantization)
        model_card = make_model_card(
            model,
            student=student,
            teacher=teacher_scored,
            teacher_dir=teacher,
            speed_md=speed_md,
            opts=opts,
            ct2=ct2,
            ct2_quantization=ct2_quantization,
            folder_hint=str(out),
        )
        atomic_write_text(tmp / "README.md", str(model_card))
        verify_hub_folder(tmp, expected_wer=[(split, v) for _, split, v in rows], ct2=ct2)
        _fix_permissions(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s", out)
    return out, rows


# --------------------------------------------------------------------------------------------
# checks


def verify_hub_folder(
    folder: PathLike,
    *,
    expected_wer: Sequence[tuple[str, float]] | None = None,
    ct2: bool = False,
) -> None:
    """Load the folder back as a Hub user would; raise ``ValueError`` naming the file at fault.

    Checks: the card and its model-index (``expected_wer``: (split, WER %) pairs), the config, the
    safetensors weights (every tensor of the model, nothing else), the processor, no pickles,
    and ``ct2/model.bin`` when ``ct2``.
    """
    from huggingface_hub import ModelCard

    root = Path(folder)
    readme = root / "README.md"
    try:
        card = ModelCard.load(readme)
    except Exception as e:
        raise ValueError(f"{readme}: the model card does not load: {e}") from None
    evals = card.data.eval_results or []
    if expected_wer is not None:
        got = sorted((e.dataset_split, e.metric_value) for e in evals if e.metric_type == "wer")
        if got != sorted(expected_wer) or len(got) != len(evals):
            raise ValueError(f"{readme}: model-index WER {got} != the results {expected_wer}")
    if card.data.pipeline_tag != TASK or card.data.library_name != "transformers":
        raise ValueError(f"{readme}: pipeline_tag/library_name missing")

    pickles = sorted(p.name for pat in PICKLE_PATTERNS for p in root.glob(pat))
    if pickles:
        raise ValueError(f"{root / pickles[0]}: pickle file in the hub folder")
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    try:
        WhisperConfig.from_pretrained(str(root))
    except Exception as e:
        raise ValueError(f"{root / 'config.json'}: does not load: {e}") from None
    try:
        _model, info = WhisperForConditionalGeneration.from_pretrained(
            str(root), use_safetensors=True, output_loading_info=True, dtype="auto"
        )
    except Exception as e:
        raise ValueError(f"{root / 'model.safetensors'}: the model does not load: {e}") from None
    bad = {k: sorted(v) for k, v in info.items() if v and k != "error_msgs"}
    if bad or info.get("error_msgs"):
        raise ValueError(f"{root}: weights do not match the config: {bad or info['error_msgs']}")
    del _model
    try:
        WhisperProcessor.from_pretrained(str(root))
    except Exception as e:
        raise ValueError(f"{root}: the processor does not load: {e}") from None
    if ct2:
        from speechdistill.whisper.ct2.binary import is_ct2_model_dir

        if not is_ct2_model_dir(root / CT2_SUBDIR):
            raise ValueError(f"{root / CT2_SUBDIR / 'model.bin'}: CTranslate2 export missing")
    log.info("%s: the card (%d results), config, weights and processor load", root, len(evals))


# --------------------------------------------------------------------------------------------
# upload


def resolve_token() -> str | None:
    """The Hub token from huggingface_hub's usual places (HF_TOKEN, the stored login)."""
    from huggingface_hub import get_token

    return get_token()


def upload_hub_folder(
    folder: PathLike,
    repo_id: str,
    *,
    private: bool = False,
    client: HubClient | None = None,
    commit_message: str | None = None,
) -> str | None:
    """Create ``repo_id`` if needed and upload ``folder``; return the commit URL when known.

    A token is required (never logged); ``client`` defaults to ``HfApi`` with that token.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"--repo-id {repo_id!r}: {e}") from None
    token = resolve_token()
    if not token:
        raise RuntimeError(
            "no Hugging Face token: set HF_TOKEN or log in with `hf auth login` "
            "(or build the folder only, with --dry-run)"
        )
    if client is None:
        if constants.HF_HUB_OFFLINE:
            raise RuntimeError("HF_HUB_OFFLINE is set: cannot upload (unset it, or use --dry-run)")
        from huggingface_hub import HfApi

        client = HfApi(token=token)
    message = commit_message or f"Upload speechdistill student (speechdistill {__version__})"
    log.info("creating %s (if needed) and uploading %s", repo_id, folder)
    client.create_repo(repo_id, exist_ok=True, private=True if private else None)
    info = client.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message)
    url = getattr(info, "commit_url", None) or (info if isinstance(info, str) else None)
    log.info("uploaded %s to %s", folder, repo_id)
    return str(url) if url else None


def publish(
    model_dir: PathLike,
    *,
    results: Sequence[PathLike] = (),
    out_dir: PathLike | None = None,
    repo_id: str | None = None,
    dry_run: bool = False,
    private: bool = False,
    client: HubClient | None = None,
    commit_message: str | None = None,
    teacher_dir: PathLike | None = None,
    teacher_results: Sequence[PathLike] | None = None,
    speed: Sequence[PathLike] | None = None,
    results_md: PathLike | None = None,
    card: CardOptions | None = None,
    ct2: bool = False,
    ct2_quantization: str | None = None,
) -> PublishResult:
    """Build and check the Hub folder, then (unless ``dry_run``) upload it to ``repo_id``."""
    if not dry_run:
        if not repo_id:
            raise ValueError("a repository id (--repo-id) is needed to upload (or use --dry-run)")
        if not resolve_token():  # fail before the build, not after it
            raise RuntimeError(
                "no Hugging Face token: set HF_TOKEN or log in with `hf auth login` "
                "(or build the folder only, with --dry-run)"
            )
    opts = card or CardOptions()
    if repo_id and not opts.repo_id:
        opts = dataclasses.replace(opts, repo_id=repo_id)
    folder, rows = build_hub_folder(
        model_dir,
        out_dir,
        results=results,
        teacher_dir=teacher_dir,
        teacher_results=teacher_results,
        speed=speed,
        results_md=results_md,
        card=opts,
        ct2=ct2,
        ct2_quantization=ct2_quantization,
    )
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    result = PublishResult(folder=folder, files=files, eval_results=rows, repo_id=repo_id)
    if dry_run:
        log.info("dry run: %s checked, nothing uploaded", folder)
        return result
    assert repo_id is not None
    result.url = upload_hub_folder(
        folder, repo_id, private=private, client=client, commit_message=commit_message
    )
    result.uploaded = True
    return result
