"""The model card: huggingface_hub's ``ModelCardData`` for the metadata, ``card_template.md`` for
the text.

``model-index`` holds the student's WER in percent on each test set; the set that chose the
checkpoint (``CardOptions.selection_set``) is shown in the card's results table only. The text is
the Jinja2 template ``card_template.md`` (package data), rendered as huggingface_hub's
``ModelCard.from_template`` renders one, but keeping the final newline and refusing unknown names.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from speechdistill import __version__
from speechdistill.publish.files import (
    CT2_SUBDIR,
    TRAIN_CONFIG,
    TRAIN_SUMMARY,
    Scored,
    param_counts,
    read_json,
    read_train_config,
)
from speechdistill.teachers.embedded import EMBEDDED_TEACHERS
from speechdistill.teachers.identity import TEACHER_JSON, read_teacher_info
from speechdistill.whisper.tokens import is_multilingual

log = logging.getLogger(__name__)

__all__ = [
    "CARD_TEMPLATE",
    "OPENAI_WHISPER_LICENSE",
    "OPENAI_WHISPER_PREFIX",
    "REQUIRED_TAGS",
    "TASK",
    "CardOptions",
    "make_model_card",
    "render_card",
]

TASK = "automatic-speech-recognition"
REQUIRED_TAGS = (
    "speechdistill",
    "distil-whisper",
    "whisper",
    "automatic-speech-recognition",
    "knowledge-distillation",
)
#: The card's Jinja2 template, a resource of this package.
CARD_TEMPLATE = "card_template.md"
#: OpenAI's Whisper checkpoints on the Hub are released under Apache-2.0; a student distilled
#: from one inherits it unless --license says otherwise.
OPENAI_WHISPER_PREFIX = "openai/whisper-"
OPENAI_WHISPER_LICENSE = "apache-2.0"


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


# --------------------------------------------------------------------------------------------
# metadata


def _resolve_base_model(opts: CardOptions, teacher_dir: Path | None) -> str | None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    base = opts.base_model
    if base is None and teacher_dir is not None:
        info = read_teacher_info(teacher_dir) or {}
        source = info.get("source") or {}
        if source.get("kind") == "hub":
            base = source.get("repo_id")
        elif source.get("kind") == "embedded-ct2":  # the Hub checkpoint it was converted from
            name = str(source.get("name") or info.get("name"))
            known = EMBEDDED_TEACHERS.get(name)  # records older than source.hub_id
            base = source.get("hub_id") or (known.hub_id if known else None)
        if base:
            log.info("base model %s (from %s)", base, teacher_dir / TEACHER_JSON)
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
    gen = read_json(model_dir / "generation_config.json") or {}
    if not is_multilingual(SimpleNamespace(**gen)):
        return "en"
    train = read_train_config(model_dir)
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


def _eval_results(student: Sequence[Scored], opts: CardOptions) -> list[Any]:
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


# --------------------------------------------------------------------------------------------
# the text: the template's values, formatted here


def _m(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def _model_column(cfg: Mapping[str, Any] | None, params: Mapping[str, int] | None) -> dict:
    cfg, params = cfg or {}, params or {}
    column: dict[str, Any] = {
        k: cfg.get(k, "-") for k in ("encoder_layers", "decoder_layers", "d_model")
    }
    column.update({k: _m(params.get(k)) for k in ("total", "encoder", "decoder")})
    return column


def _settings(train_cfg: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    rows = []
    for key, value in (train_cfg or {}).items():
        if value is None:
            shown = "-"
        elif isinstance(value, list | dict):
            shown = json.dumps(value)
        else:
            shown = str(value)
        rows.append((key, shown))
    return rows


def _result_rows(student: Sequence[Scored], teacher: Mapping[str, Scored]) -> list[dict]:
    rows = []
    for s in student:
        t = teacher.get(s.name)
        tw, sw = (t.wer_pct if t else None), s.wer_pct
        rows.append(
            {
                "name": s.name,
                "utts": s.data.get("n_utts", "-"),
                "teacher": "-" if tw is None else f"{tw:.2f}",
                "student": "-" if sw is None else f"{sw:.2f}",
                "change": f"{100 * (sw - tw) / tw:+.1f} %" if tw and sw is not None else "-",
            }
        )
    return rows


def render_card(values: Mapping[str, Any]) -> str:
    """``card_template.md`` filled with ``values`` (an unknown name is an error)."""
    import jinja2

    source = importlib.resources.files(__package__).joinpath(CARD_TEMPLATE)
    env = jinja2.Environment(
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.from_string(source.read_text(encoding="utf-8")).render(**values)


def make_model_card(
    model_dir: Path,
    *,
    student: Sequence[Scored],
    teacher: Sequence[Scored] = (),
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
    language = _resolve_language(opts, model_dir)
    data = ModelCardData(
        model_name=title,
        base_model=base,
        language=language,
        license=_resolve_license(opts, base),
        library_name="transformers",
        pipeline_tag=TASK,
        tags=tags,
        metrics=["wer"],
        eval_results=evals or None,
    )
    student_params = param_counts(model_dir)
    teacher_params = param_counts(teacher_dir) if teacher_dir else None
    share = None
    if teacher_params and student_params and teacher_params["total"] and student_params["total"]:
        share = f"{100 * student_params['total'] / teacher_params['total']:.1f}"
    summary = read_json(model_dir / TRAIN_SUMMARY) or {}
    best = summary.get("best_dev_wer")
    text = render_card(
        {
            "card_data": data.to_yaml(),
            "title": title,
            "base_model": base,
            "version": __version__,
            "student": _model_column(read_json(model_dir / "config.json"), student_params),
            "teacher": _model_column(
                read_json(teacher_dir / "config.json") if teacher_dir else None, teacher_params
            ),
            "param_share": share,
            "train_config": TRAIN_CONFIG,
            "settings": _settings(read_train_config(model_dir)),
            "steps": summary.get("steps"),
            "best_step": summary.get("best_step"),
            "best_dev_wer": None if best is None else f"{100 * float(best):.2f}",
            "normalisers": ", ".join(
                f"`{n}`" for n in sorted({str(s.data.get("normalizer")) for s in student})
            ),
            "results": _result_rows(student, {t.name: t for t in teacher}),
            "selection_set": opts.selection_set,
            "selection_shown": bool(opts.selection_set)
            and any(s.name == opts.selection_set for s in student),
            "speed": speed_md.strip(),
            "model_ref": opts.repo_id or folder_hint,
            "ct2": ct2,
            "ct2_quantization": ct2_quantization,
            "ct2_subdir": CT2_SUBDIR,
            "repo_id": opts.repo_id,
            "folder": folder_hint,
            "language": language if isinstance(language, str) else None,
        }
    )
    return ModelCard(text)
