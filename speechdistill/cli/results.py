"""``speechdistill results``: results.json files (and speed.json) into an ESPnet-style RESULTS.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from speechdistill.cli.options import out_file


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "results",
        help="collect results.json files into an ESPnet-style RESULTS.md",
        description="Write RESULTS.md with a section per model and WER/CER tables per dataset.",
    )
    r.add_argument("results", nargs="+", help="results.json files (or score dirs holding one)")
    r.add_argument("--out", type=out_file, required=True, help="RESULTS.md to write")
    r.add_argument("--title", default="RESULTS", help="top heading (default: RESULTS)")
    r.add_argument("--model", help="model name for every entry (default: from each file)")
    r.add_argument(
        "--speed", nargs="+", default=[], help="speed.json files (speechdistill speed) to add"
    )
    r.add_argument(
        "--filter-report",
        nargs="+",
        default=[],
        help="report.json files of the filter stage: kept hours and ROC-AUC table to add",
    )
    r.set_defaults(func=run_results)


def run_results(args: argparse.Namespace) -> int:
    from speechdistill.scoring import write_results_md
    from speechdistill.speed import format_speed_md, load_reports

    entries = [(args.model or "", Path(p)) for p in args.results]
    extra = [format_speed_md(load_reports(args.speed))] if args.speed else []
    if args.filter_report:
        import json

        from speechdistill.filter.report import SCHEMA, format_summary_md

        for path in args.filter_report:
            try:
                report = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise SystemExit(f"results: {path}: not a filter report.json ({e})") from None
            if not isinstance(report, dict) or report.get("schema") != SCHEMA:
                raise SystemExit(f"results: {path}: not a filter report.json (no {SCHEMA!r})")
            extra.append(format_summary_md(report))
    write_results_md(args.out, entries, title=args.title, extra_sections=extra)
    print(f"wrote {args.out} ({len(entries)} results)")
    return 0
