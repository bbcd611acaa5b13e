"""``report.json`` and ``report.md`` of the filter stage."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechdistill.utils import atomic_write_text

SCHEMA = "speechdistill.filter/1"


def count_hours(utts: Sequence[str] | set[str], durations: Mapping[str, float]) -> dict[str, Any]:
    """``{"utts": n, "hours": h}`` for a set of utterances."""
    seconds = sum(durations.get(u, 0.0) for u in utts)
    return {"utts": len(utts), "hours": round(seconds / 3600, 6)}


def score_summary(values: Mapping[str, float]) -> dict[str, Any]:
    finite = [v for v in values.values() if math.isfinite(v)]
    nan = sum(1 for v in values.values() if math.isnan(v))
    out: dict[str, Any] = {"n": len(values), "n_nan": nan}
    if finite:
        out |= {
            "min": min(finite),
            "mean": sum(finite) / len(finite),
            "max": max(finite),
        }
    return out


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, set):
        return sorted(_json_safe(v) for v in x)
    return x


def write_report(exp_dir: Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``exp_dir``."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    js, md = exp_dir / "report.json", exp_dir / "report.md"
    text = json.dumps(_json_safe(report), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(js, text + "\n")
    atomic_write_text(md, format_report_md(report))
    return js, md


def _f(x: Any, fmt: str = "{:.3f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return fmt.format(x)


def _pct(x: Any) -> str:
    return _f(None if x is None else 100 * x, "{:.1f}")


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


def format_report_md(r: Mapping[str, Any]) -> str:
    """The human-readable report."""
    inp, kept, dropped = r["input"], r["kept"], r["dropped"]
    lines = [
        f"# Filter report: `{r['data']}` → `{r['out']}`",
        "",
        f"- input: {inp['utts']} utterances, {inp['hours']:.3f} h"
        + (f" ({r['no_label']} without a label in text.teacher, dropped)" if r["no_label"] else ""),
        f"- kept: {kept['utts']} utterances, {kept['hours']:.3f} h "
        f"({_pct(kept['utts'] / inp['utts'] if inp['utts'] else None)} %)",
        f"- dropped: {dropped['utts']} utterances, {dropped['hours']:.3f} h",
        *_weights_md(r),
        f"- normaliser: `{r['normalizer']}`; scores: higher = better label "
        f"(files `utt2score_<name>` in `{r['scores_dir']}`)",
    ]
    if r.get("labelled_max_wer") is not None:
        lines.append(
            f"- labelled utterances judged by their reference: kept iff label WER <= "
            f"{r['labelled_max_wer']:g} ({r['labelled_override']['changed']} decisions changed)"
        )
    lines += ["", "## Rules", ""]
    if r["rules"]:
        lines.append(
            "Thresholds are evaluated on the whole input, then quotas (top, hours) in order on "
            "what is left. *alone*: what the rule keeps by itself; *after*: what is left once it "
            "has been applied."
            + (
                " Mode weight: the quotas' rows say what dropping would keep; they were not "
                "applied (every utterance that passes the thresholds is kept, weighted)."
                if r.get("mode") == "weight"
                else ""
            )
        )
        lines.append("")
        rows = [
            [
                f"`{x['rule']}`" + (" (auto)" if x["origin"] == "auto" else ""),
                x["alone"]["utts"],
                f"{x['alone']['hours']:.3f}",
                x["after"]["utts"],
                f"{x['after']['hours']:.3f}",
            ]
            for x in r["rules"]
        ]
        lines += _table(["rule", "kept alone", "hours", "kept after", "hours"], rows)
    else:
        lines.append("No rules: every labelled utterance is kept.")
    lines += ["", "## Scores", ""]
    rows = []
    for name, s in r["scores"].items():
        rows.append(
            [
                f"`{name}`",
                "yes" if s["label_free"] else "no (uses the reference)",
                s["n"],
                s["n_nan"],
                _f(s.get("min"), "{:.4g}"),
                _f(s.get("mean"), "{:.4g}"),
                _f(s.get("max"), "{:.4g}"),
                s["help"],
            ]
        )
    lines += _table(["score", "label-free", "n", "NaN", "min", "mean", "max", "meaning"], rows)
    d = r.get("diagnostics")
    if d:
        lines += _diagnostics_md(d)
    a = r.get("auto")
    if a:
        lines += _auto_md(a)
    if r.get("plots"):
        lines += ["", "## Plots", ""]
        lines += [f"- [{Path(p).name}]({Path(p).relative_to(r['exp_dir'])})" for p in r["plots"]]
    return "\n".join(lines) + "\n"


def format_summary_md(r: Mapping[str, Any]) -> str:
    """A short section for a recipe's RESULTS.md: what was kept (hours, weights) and, where the
    pseudo-labels have references, the ROC-AUC of each score at detecting bad labels."""
    inp, kept = r["input"], r["kept"]
    rules = ", ".join(f"`{x['rule']}`" for x in r["rules"]) or "none"
    lines = [
        f"## Label filter (`{r['exp_dir']}`)",
        "",
        f"- rules: {rules}",
        f"- kept: {kept['utts']} of {inp['utts']} utterances, {kept['hours']:.3f} of "
        f"{inp['hours']:.3f} h",
        *_weights_md(r),
    ]
    d = r.get("diagnostics")
    if d:
        lines += ["", _references_line(d), "", *_auc_md(d)]
    return "\n".join(lines) + "\n"


def _weights_md(r: Mapping[str, Any]) -> list[str]:
    """The report's lines on the mode, the weights and ``--min-hours``."""
    lines = []
    mode = r.get("mode", "drop")
    if mode != "drop":
        lines.append(
            "- mode: weight (the quota rules rank the weights instead of dropping utterances)"
        )
    w = r.get("weights")
    if w:
        source = (
            f"from the percentile rank of `{w['score']}` among the kept utterances, floor "
            f"{w['floor']:g}"
            if w["source"] == "filter"
            else "the input's `utt2weight`, carried"
        )
        lines.append(
            f"- weights (`utt2weight`, {source}): weighted hours Σ w·dur "
            f"{w['weighted_hours']:.3f} h, mean weight {_f(w['mean'])} "
            f"(min {_f(w['min'])}, max {_f(w['max'])})"
        )
    m = r.get("min_hours")
    if m and m.get("message"):
        lines.append(f"- **warning**: {m['message']}")
    elif m:
        lines.append(f"- --min-hours {m['min_hours']:g}: the selection keeps {m['hours']:.3f} h")
    return lines


def _references_line(d: Mapping[str, Any]) -> str:
    return (
        f"{d['n_labelled']} utterances have a reference (`{d['references']}`); pooled label WER "
        f"{_pct(d['label_wer'])} %. A label is bad when its WER exceeds the threshold."
    )


def _auc_md(d: Mapping[str, Any]) -> list[str]:
    """The ROC-AUC table of every score, at each bad-label threshold."""
    defs = [str(t) for t in d["bad_wers"]]
    lines = [
        "### ROC-AUC at detecting bad labels",
        "",
        "P(a good label scores higher than a bad one); 0.5 = chance.",
        "",
    ]
    counts = d["counts"]
    head = ["score", *(f"WER > {float(t):.0%}" for t in defs)]
    rows = [["(good / bad)", *(f"{counts[t]['n_good']} / {counts[t]['n_bad']}" for t in defs)]]
    order = sorted(d["auc"], key=lambda n: -(d["auc"][n].get(defs[len(defs) // 2]) or 0.0))
    for name in order:
        rows.append([f"`{name}`", *(_f(d["auc"][name].get(t)) for t in defs)])
    return lines + _table(head, rows)


def _diagnostics_md(d: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Diagnostics", "", _references_line(d), "", *_auc_md(d)]
    sel = d.get("selection")
    if sel:
        lines += ["", "### The selection on the labelled utterances", ""]
        rows = [
            [
                f"WER > {float(t):.0%}",
                m["n_good"],
                m["n_bad"],
                m["kept"],
                _pct(m["precision"]),
                _pct(m["recall"]),
                _pct(m["f1"]),
                _pct(m["bad_removed"]),
                f"{_pct(m.get('label_wer_all'))} → {_pct(m.get('label_wer_kept'))}",
            ]
            for t, m in sel.items()
        ]
        lines += _table(
            [
                "bad =",
                "good",
                "bad",
                "kept",
                "precision %",
                "recall %",
                "F1 %",
                "bad removed %",
                "label WER % all → kept",
            ],
            rows,
        )
    return lines


def _auto_md(a: Mapping[str, Any]) -> list[str]:
    m = a["metrics"]
    lines = [
        "",
        "## auto",
        "",
        f"Chosen: `{a['rule']}` — best {a['objective']} ({_f(a['value'])}) at keeping good labels "
        f"(bad = WER > {a['bad_wer']:.0%}) on the labelled utterances: precision "
        f"{_pct(m['precision'])} %, recall {_pct(m['recall'])} %, bad labels removed "
        f"{_pct(m['bad_removed'])} %, label WER {_pct(m.get('label_wer_all'))} % → "
        f"{_pct(m.get('label_wer_kept'))} % (in-sample).",
    ]
    h = a.get("heldout")
    if h:
        lines.append(
            f"2-fold estimate (chosen on one half, measured on the other: "
            f"{', '.join(f'`{c}`' for c in h['chosen'])}): precision {_pct(h['precision'])} %, "
            f"recall {_pct(h['recall'])} %, F1 {_pct(h['f1'])} %."
        )
    lines += [
        "",
        "| candidate | best threshold | " + a["objective"] + " | AUC |",
        "| --- | --- | --- | --- |",
    ]
    for c in a["candidates"]:
        lines.append(
            f"| `{c['score']}` | {_f(c['threshold'], '{:.4g}')} | {_f(c['value'])} | {_f(c['auc'])} |"
        )
    return lines
