"""``speechdistill score``: WER/CER of one decode dir, with sclite/Kaldi-style report files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from speechdistill.cli.options import key_values, non_negative_int, out_dir
from speechdistill.datadir import read_kv


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
    p.add_argument(
        "--out", type=out_dir, required=True, help="output dir, e.g. exp/x/decode_test/score_wer"
    )
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
    p.add_argument(
        "--bootstrap", type=non_negative_int, default=1000, help="bootstrap resamples (0: no CI)"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (default: 0)")
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


def run_score(args: argparse.Namespace) -> int:
    from speechdistill.scoring import infer_names, score, write_score_dir

    refs = read_kv(args.ref)
    hyps = read_kv(args.hyp)
    utt2spk = read_kv(args.utt2spk) if args.utt2spk else None
    model, dataset = infer_names(Path(args.hyp).parent)
    extra = {**_decode_speed(Path(args.hyp).parent), **key_values(args.extra, "--extra")}
    result = score(
        refs,
        hyps,
        normalizer=args.normalizer,
        normalizer_options=key_values(args.normalizer_option, "--normalizer-option"),
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


def _decode_speed(decode_dir: Path) -> dict[str, Any]:
    """Speed figures of the decode run that wrote the hypotheses (its ``decode.json``), if any."""
    path = decode_dir / "decode.json"
    if not path.is_file():
        return {}
    info = json.loads(path.read_text(encoding="utf-8"))
    keys = ("rtfx", "utts_per_second", "wall_seconds", "audio_seconds")
    return {k: info[k] for k in keys if info.get(k) is not None}
