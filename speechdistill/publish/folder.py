"""The Hub folder of a trained student: build it, then load it back to check it.

:func:`build_hub_folder` writes, into a temporary directory beside ``out_dir`` that then replaces
it (a rerun replaces the folder; a failed build leaves the previous one; a non-empty ``out_dir``
that is not an earlier hub folder is refused, never removed):

- ``config.json``, ``generation_config.json``, the safetensors weights (``model.safetensors``,
  or shards with their index) — pickle weights are refused, never copied;
- the processor files (tokenizer, feature extractor); a ``preprocessor_config.json`` is added
  when the model dir lacks one, so that older transformers releases load the feature extractor;
- ``train_config.yaml`` (the training settings) when the model dir has one, ``RESULTS.md``;
- optionally ``ct2/``, a CTranslate2 export (:func:`speechdistill.whisper.ct2.export.export_ct2`);
- ``README.md``: the model card (:mod:`speechdistill.publish.card`).

:func:`verify_hub_folder` loads everything back (card, model-index, config, weights, processor).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from speechdistill.publish.card import TASK, CardOptions, make_model_card
from speechdistill.publish.files import (
    CT2_SUBDIR,
    PICKLE_PATTERNS,
    TRAIN_CONFIG,
    load_scored,
    weight_files,
)
from speechdistill.scoring import write_results_md
from speechdistill.utils import (
    CONFIG_FILES,
    PROCESSOR_FILES,
    PathLike,
    atomic_write_text,
    check_owned,
    fix_permissions,
    replace_dir,
)

log = logging.getLogger(__name__)

__all__ = ["build_hub_folder", "verify_hub_folder"]


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir}: model directory not found")
    for name in CONFIG_FILES:
        if not (model_dir / name).is_file():
            raise ValueError(f"{model_dir / name}: not found (not a trained Whisper model dir?)")


#: The owner recorded in the hub folder (:data:`~speechdistill.utils.OWNER_FILE`).
OWNER = "publish"
#: What a hub folder holds: a folder of an older release without the marker is replaced only if
#: it holds a README.md and nothing else than these.
HUB_ENTRIES = (
    "*.safetensors",
    "*.safetensors.index.json",
    *CONFIG_FILES,
    *PROCESSOR_FILES,
    TRAIN_CONFIG,
    "RESULTS.md",
    "README.md",
    CT2_SUBDIR,
)
_OWNED = {
    "legacy_record": ("README.md",),
    "legacy": HUB_ENTRIES,
    "hint": "choose another --out or remove it yourself",
}


def _check_out_dir(out: Path, protected: Sequence[Path]) -> None:
    resolved = out.resolve()
    for p in protected:
        rp = p.resolve()
        if rp == resolved or rp.is_relative_to(resolved):
            raise ValueError(f"{out}: the hub folder would replace {p}; choose another --out")
    check_owned(out, OWNER, **_OWNED)


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
    from speechdistill.prune.io import is_pruned_dir

    if is_pruned_dir(model):
        raise ValueError(
            f"{model}: its encoder is pruned to layers of different sizes (the config's `pruning` "
            "record): it does not load as a plain transformers model, which a Hub folder must"
        )
    if teacher is not None and not teacher.is_dir():
        raise ValueError(f"{teacher}: teacher directory not found")
    weights = weight_files(model)
    if not results:
        results = sorted(model.glob("decode_*/score_wer/results.json"))
        if not results:
            raise ValueError(
                f"{model}/decode_*/score_wer/results.json: no results found; score the model "
                "first (speechdistill score) or give the results files"
            )
    student = load_scored(results, "results")
    if teacher_results is None:
        teacher_results = sorted(teacher.glob("decode_*/score_wer/results.json")) if teacher else []
    teacher_scored = load_scored(teacher_results, "teacher results")
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
        fix_permissions(tmp, include_root=True)
        replace_dir(tmp, out, OWNER, **_OWNED)
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
