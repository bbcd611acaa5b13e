"""`speechdistill score` (WER/CER of one decode dir), `compare` (two systems, paired bootstrap) and
`results` (RESULTS.md)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from speechdistill.datadir import read_kv

log = logging.getLogger(__name__)


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = _parse_value(value)
    return out


def register(sub: argparse._SubParsersAction) -> None:
    from speechdistill.text import NORMALIZERS

    p = sub.add_parser(
        "score",
        help="WER/CER of hypotheses against references (sclite/Kaldi-style report files)",
        description="Score a hypothesis text file against a reference text file (Kaldi format). "
        "Writes result.txt, per_utt, per_spk, wer, cer, ref.trn, hyp.trn and results.json "
        "to --out and prints the summary.",
    )
    p.add_argument("--ref", required=True, help="reference text (utt text), e.g. data/test/text")
    p.add_argument("--hyp", required=True, help="hypothesis text, e.g. exp/x/decode_test/text")
    p.add_argument("--out", required=True, help="output dir, e.g. exp/x/decode_test/score_wer")
    p.add_argument(
        "--normalizer", default="english", choices=sorted(NORMALIZERS), help="(default: english)"
    )
    p.add_argument(
        "--normalizer-option",
        action="append",
        metavar="KEY=VALUE",
        help="normaliser option, e.g. expand_numbers=false (repeatable)",
    )
    p.add_argument("--utt2spk", help="utt2spk for the per-speaker tables")
    p.add_argument("--name", help="dataset name (default: from decode_<name> in --hyp)")
    p.add_argument("--model", help="model name (default: from exp/<model>/decode_* in --hyp)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no CI)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument(
        "--missing",
        choices=("delete", "error"),
        default="delete",
        help="reference utterances without hypothesis: score as deletions (default) or fail",
    )
    p.add_argument(
        "--extra",
        action="append",
        metavar="KEY=VALUE",
        help="extra figure stored in results.json, e.g. rtfx=12.5 (repeatable); the speed "
        "figures of a decode.json beside --hyp are added by default",
    )
    p.set_defaults(func=run_score)

    c = sub.add_parser(
        "compare",
        help="WER difference of two systems on the same references, with a paired bootstrap CI",
        description="Score --hyp-a and --hyp-b against --ref and print B − A with a paired "
        "bootstrap interval (utterances resampled jointly) and P(B better); --out writes JSON.",
    )
    c.add_argument("--ref", required=True, help="reference text (utt text)")
    c.add_argument("--hyp-a", required=True, help="hypotheses of system A (e.g. the teacher)")
    c.add_argument("--hyp-b", required=True, help="hypotheses of system B (e.g. the student)")
    c.add_argument("--name-a", default="A")
    c.add_argument("--name-b", default="B")
    c.add_argument(
        "--normalizer", default="english", choices=sorted(NORMALIZERS), help="(default: english)"
    )
    c.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    c.add_argument("--out", help="write the comparison as JSON here")
    c.set_defaults(func=run_compare)

    r = sub.add_parser(
        "results",
        help="collect results.json files into an ESPnet-style RESULTS.md",
        description="Write RESULTS.md with a section per model and WER/CER tables per dataset.",
    )
    r.add_argument("results", nargs="+", help="results.json files (or score dirs holding one)")
    r.add_argument("--out", required=True, help="RESULTS.md to write")
    r.add_argument("--title", default="RESULTS", help="top heading (default: RESULTS)")
    r.add_argument("--model", help="model name for every entry (default: from each file)")
    r.add_argument(
        "--speed", nargs="+", default=[], help="speed.json files (speechdistill speed) to add"
    )
    r.set_defaults(func=run_results)

    sp = sub.add_parser(
        "speed",
        help="size and speed of a model: latency, RTFx, speculative decoding",
        description="Greedy decoding of the first MAX_UTTS utterances at batch 1 and at "
        "--batch-size; with --assistant (a student dir) also speculative decoding with the "
        "student's decoder as the model's assistant. Writes OUT (speed.json).",
    )
    sp.add_argument("--model", required=True, help="model dir")
    sp.add_argument("--data", required=True, help="data dir")
    sp.add_argument("--out", required=True, help="speed.json to write")
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--max-utts", type=int, default=32)
    sp.add_argument("--assistant", default=None, help="student dir: speculative decoding")
    sp.add_argument("--device", default="cpu")
    sp.set_defaults(func=run_speed)


def run_score(args: argparse.Namespace) -> int:
    from speechdistill.scoring import infer_names, score, write_score_dir

    refs = read_kv(args.ref)
    hyps = read_kv(args.hyp)
    utt2spk = read_kv(args.utt2spk) if args.utt2spk else None
    model, dataset = infer_names(Path(args.hyp).parent)
    extra = {**_decode_speed(Path(args.hyp).parent), **_key_values(args.extra, "--extra")}
    result = score(
        refs,
        hyps,
        normalizer=args.normalizer,
        normalizer_options=_key_values(args.normalizer_option, "--normalizer-option"),
        utt2spk=utt2spk,
        bootstrap=args.bootstrap,
        seed=args.seed,
        on_missing=args.missing,
        model=args.model or model,
        dataset=args.name or dataset or Path(args.ref).parent.name or None,
        ref_path=args.ref,
        hyp_path=args.hyp,
        extra=extra,
    )
    write_score_dir(result, args.out)
    for line in result.summary_lines():
        print(line)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from speechdistill.scoring import paired_bootstrap, score
    from speechdistill.utils import atomic_write_text

    refs = read_kv(args.ref)
    a, b = (score(refs, read_kv(h), normalizer=args.normalizer, bootstrap=0, on_missing="error")
            for h in (args.hyp_a, args.hyp_b))  # fmt: skip
    result = paired_bootstrap(a, b, n_resamples=args.bootstrap, seed=args.seed)
    print(result.summary(args.name_a, args.name_b))
    if args.out:
        body = {"a": args.hyp_a, "b": args.hyp_b, "ref": args.ref, "normalizer": args.normalizer,
                **result.to_dict()}  # fmt: skip
        atomic_write_text(args.out, json.dumps(body, indent=2) + "\n")
    return 0


def _decode_speed(decode_dir: Path) -> dict[str, Any]:
    """Speed figures of the decode run that wrote the hypotheses (its ``decode.json``), if any."""
    path = decode_dir / "decode.json"
    if not path.is_file():
        return {}
    info = json.loads(path.read_text(encoding="utf-8"))
    keys = ("rtfx", "utts_per_second", "wall_seconds", "audio_seconds")
    return {k: info[k] for k in keys if info.get(k) is not None}


def run_results(args: argparse.Namespace) -> int:
    from speechdistill.scoring import write_results_md
    from speechdistill.speed import format_speed_md, load_reports

    entries = [(args.model or "", Path(p)) for p in args.results]
    extra = [format_speed_md(load_reports(args.speed))] if args.speed else []
    write_results_md(args.out, entries, title=args.title, extra_sections=extra)
    print(f"wrote {args.out} ({len(entries)} results)")
    return 0


def run_speed(args: argparse.Namespace) -> int:
    from speechdistill.speed import measure_speed, save_report

    report = measure_speed(
        args.model,
        args.data,
        batch_size=args.batch_size,
        max_utts=args.max_utts,
        assistant=args.assistant,
        device=args.device,
    )
    save_report(report, args.out)
    spec = report.speculative
    print(
        f"{args.model}: {report.params['total'] / 1e6:.2f}M params; latency b1 "
        f"{report.latency_b1:.3f} s/utt; RTFx b{report.batch_size} {report.rtfx:.2f}"
        + (
            f"; speculative {spec['speedup']:.2f}x, identical {spec['identical']}/"
            f"{spec['num_utts']}"
            if spec
            else ""
        )
    )
    return 0
