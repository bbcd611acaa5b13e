"""``results.json`` (read, write, update, names from paths) and ESPnet-style RESULTS.md, which
gathers results.json files into a section per model."""

from __future__ import annotations

import json
import logging
import math
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from speechdistill.scoring.provenance import VERSION, git_commit_date, git_revision, versions
from speechdistill.scoring.wer import ratio
from speechdistill.utils import PathLike, atomic_write_text

__all__ = [
    "SPEED_COLUMNS",
    "format_results_md",
    "infer_names",
    "load_results",
    "save_results",
    "update_results",
    "write_results_md",
]

log = logging.getLogger(__name__)

#: Speed figures that RESULTS.md shows as extra columns when an entry's ``extra`` has them.
SPEED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rtfx", "RTFx", "{:.1f}"),
    ("rtf", "RTF", "{:.3f}"),
)


def save_results(path: PathLike, results: Mapping[str, Any]) -> None:
    """Write a results dict as JSON atomically."""
    text = json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def load_results(path: PathLike) -> dict[str, Any]:
    """Read a ``results.json`` (or the one in a score directory); errors name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: results file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(
        "speechdistill.score/"
    ):
        raise ValueError(f"{path}: not a speechdistill results.json (no 'schema')")
    for key in ("normalized", "orthographic", "normalizer"):
        if key not in data:
            raise ValueError(f"{path}: missing field {key!r}")
    data.setdefault("extra", {})
    return data


def update_results(path: PathLike, *, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` (e.g. ``{"rtfx": 12.3}`` from the decode stage) into a results.json."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    data = load_results(path)
    data["extra"] = {**data["extra"], **extra}
    save_results(path, data)
    return data


def infer_names(path: PathLike) -> tuple[str | None, str | None]:
    """(model, dataset) from ``exp/<model>/decode_<dataset>/score_*/results.json``-like paths."""
    p = Path(path)
    parts = p.parts[:-1] if p.suffix == ".json" else p.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].startswith("decode_"):
            model = parts[i - 1] if i > 0 else None
            return model, parts[i][len("decode_") :] or None
    return None, None


# --------------------------------------------------------------------------------------------------
# RESULTS.md

_TABLE_HEAD = ("dataset", "Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err")


def _md_row(cells: Sequence[object]) -> str:
    return "|" + "|".join(str(c) for c in cells) + "|"


def _pct1(num: float, den: float) -> str:
    r = ratio(num, den)
    return f"{100 * r:.1f}" if math.isfinite(r) else "inf"


def _md_table(
    rows: Sequence[tuple[str, dict[str, Any]]],
    view: str,
    unit: str,
    *,
    ci: bool,
    speed: Sequence[tuple[str, str, str]],
) -> list[str]:
    head = list(_TABLE_HEAD)
    if ci:
        head.append("95% CI")
    head += [label for _, label, _ in speed]
    lines = [_md_row(head), _md_row(["---"] * len(head))]
    for dataset, r in rows:
        v = r[view]
        c = v[unit]
        cells: list[object] = [dataset, v["snt"], c["ref"]]
        cells += [_pct1(c[k], c["ref"]) for k in ("corr", "sub", "del", "ins", "err")]
        cells.append(_pct1(v["snt_err"], v["snt"]))
        if ci:
            lo_hi = v.get(f"{'wer' if unit == 'words' else 'cer'}_ci")
            cells.append("-" if not lo_hi else f"[{100 * lo_hi[0]:.1f}, {100 * lo_hi[1]:.1f}]")
        for key, _, fmt in speed:
            val = r["extra"].get(key)
            cells.append("-" if val is None else fmt.format(val))
        lines.append(_md_row(cells))
    return lines


def format_results_md(
    entries: Sequence[tuple[str, PathLike | Mapping[str, Any]]], title: str = "RESULTS"
) -> str:
    """ESPnet-style RESULTS.md text: environment, then a section per model (first-seen order).

    ``entries`` are ``(model, results)``; ``results`` is a results.json path (or score dir) or an
    already-loaded dict. An empty model name falls back to the results' ``model`` field.
    """
    sections: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for model, res in entries:
        if isinstance(res, Mapping):
            r, (path_model, path_dataset) = dict(res), (None, None)
        else:
            r, (path_model, path_dataset) = load_results(res), infer_names(res)
        r.setdefault("extra", {})
        model = model or r.get("model") or path_model or "model"
        dataset = r.get("dataset") or path_dataset or "-"
        sections.setdefault(model, []).append((dataset, r))

    v = versions()
    rev = git_revision()
    env = [
        f"- date: `{datetime.now().astimezone().strftime('%a %b %d %H:%M:%S %Z %Y')}`",
        f"- python version: `{platform.python_version()} ({platform.platform()})`",
        f"- speechdistill version: `speechdistill {VERSION}`",
        f"- pytorch version: `torch {v.get('torch')}`",
        f"- transformers version: `transformers {v.get('transformers')}`",
        f"- jiwer version: `jiwer {v.get('jiwer')}`",
        f"- Git hash: `{rev or 'unknown'}`",
    ]
    if rev:
        date = git_commit_date()
        if date:
            env.append(f"  - Commit date: `{date}`")
    lines = [
        f"<!-- Generated by speechdistill {VERSION} (speechdistill results) -->",
        f"# {title}",
        "## Environments",
        *env,
        "",
    ]

    for model, rows in sections.items():
        lines += [f"## {model}"]
        norms = {f"{r['normalizer']}{_opts(r)}" for _, r in rows}
        if len(norms) == 1:
            lines.append(f"- normaliser: `{norms.pop()}`; orthographic = no normalisation")
        else:
            lines.append(
                "- normalisers: " + ", ".join(f"{d}=`{r['normalizer']}{_opts(r)}`" for d, r in rows)
            )
        boot = {json.dumps(r.get("bootstrap"), sort_keys=True) for _, r in rows}
        has_ci = any(r["normalized"].get("wer_ci") for _, r in rows)
        if has_ci and len(boot) == 1 and (b := rows[0][1].get("bootstrap")):
            lines.append(
                f"- 95% CI: percentile bootstrap over utterances "
                f"({b.get('resamples')} resamples, seed {b.get('seed')})"
            )
        missing = [(d, r["n_missing_hyps"]) for d, r in rows if r.get("n_missing_hyps")]
        if missing:
            lines.append(
                "- missing hypotheses (scored as deletions): "
                + ", ".join(f"{d}: {n}" for d, n in missing)
            )
        speed = [s for s in SPEED_COLUMNS if any(s[0] in r["extra"] for _, r in rows)]
        for heading, view, unit, ci, sp in (
            ("WER", "normalized", "words", has_ci, speed),
            ("CER", "normalized", "chars", False, []),
            ("WER (orthographic)", "orthographic", "words", False, []),
        ):
            lines += ["", f"### {heading}", ""]
            lines += _md_table(rows, view, unit, ci=ci, speed=sp)
        lines.append("")
    return "\n".join(lines)


def _opts(r: Mapping[str, Any]) -> str:
    o = r.get("normalizer_options") or {}
    return "" if not o else "(" + ", ".join(f"{k}={v}" for k, v in sorted(o.items())) + ")"


def write_results_md(
    path: PathLike,
    entries: Sequence[tuple[str, PathLike | Mapping[str, Any]]],
    title: str = "RESULTS",
    extra_sections: Sequence[str] = (),
) -> None:
    """Write :func:`format_results_md` (then ``extra_sections``) to ``path`` atomically."""
    text = format_results_md(entries, title=title)
    atomic_write_text(path, "\n".join([text, *extra_sections]))
    log.info("wrote %s", path)
