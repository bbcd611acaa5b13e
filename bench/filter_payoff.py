#!/usr/bin/env python
"""Does filtering pseudo-labels pay off? Students trained on filtered and unfiltered labels.

Usage (in a recipe directory after stages 1-6, e.g. ``egs/mini_en`` after
``./run.sh --stop_stage 6``)::

    python ../../bench/filter_payoff.py --out exp/filter_payoff [--seeds 0 1 2]
        [--conditions all,label_free,auto,sup10,sup20,sup_size,random,weight] [--labelled 16]
        [--pl-data dump/train_packed_pl] [--config conf/train.yaml] [--normalizer english]
        [--language en] [--train-opts "..."] [--decode-opts "--temperature-fallback"]
        [--jobs 8]

The experiment of uDistil-Whisper, on the recipe's own labels, training and decoding. One
student per condition and seed, each from ``exp/student_init`` with ``--config``:

- ``all``: every pseudo-label (the recipe's ``--filter none``);
- ``label_free``: the recipe's default label-free rule (hard rejections of empty, looping and
  over-compressible labels, then the best 80 % by teacher confidence), no references;
- ``auto``: the same hard rejections, then ``--keep auto``: the label-free score and threshold
  that best separate good from bad labels on ``--labelled`` utterances with references;
- ``sup10``/``sup20``: the supervised filter, label WER below 10 % / 20 % (references for all);
- ``sup_size``: the supervised filter at the size ``label_free`` keeps: the labels of lowest WER
  (for noisy labels, where no label is under 10 % or 20 %);
- ``random``: a random subset of the size ``label_free`` keeps (a new draw per seed);
- ``weight``: nothing beyond the hard rejections is dropped; each label is weighted by its
  confidence rank instead (``filter --mode weight``; ``train`` reads ``utt2weight``).

Each student is decoded on ``--test`` as the recipe decodes (``--decode-opts``) and scored with
``--normalizer``. Written to OUT: ``<condition>/data`` (the selection, filter report in
``<condition>/filter``), ``<condition>/seed<k>/`` (student, ``decode_test``), and
``summary.{json,md}``: kept utterances and hours, WER and insertion rate per seed and pooled,
and paired bootstrap intervals of label_free and auto against all, random and the supervised
filters, with each condition's seeds averaged per utterance (``speechdistill compare`` with
several runs). A rerun continues where a killed one stopped and refuses other settings.
``--jobs N`` trains and decodes N students at a time (on one GPU, several tiny students fit;
give ``--decode-opts "... --device cuda"`` there).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from speechdistill.datadir import DataDir, read_kv  # noqa: E402
from speechdistill.datadir.ops import subset  # noqa: E402
from speechdistill.scoring import paired_bootstrap, score  # noqa: E402
from speechdistill.utils import atomic_write_text  # noqa: E402

log = logging.getLogger("filter_payoff")

HARD = ["empty>=1", "compression_ratio>=-2.4", "ngram_repeat>=-3"]
CONDITIONS = {
    "all": None,
    "label_free": [*HARD, "top:80%:confidence"],
    "auto": [*HARD, "auto"],
    "sup10": ["supervised_wer>-0.1"],
    "sup20": ["supervised_wer>-0.2"],
    "sup_size": None,  # top:N:supervised_wer, N = label_free's size
    "random": None,
    "weight": [*HARD, "top:80%:confidence"],
}
#: (B, A) pairs of the summary: B - A with a paired bootstrap interval
PAIRS = [
    ("label_free", "all"), ("label_free", "random"), ("label_free", "sup10"),
    ("label_free", "sup20"), ("label_free", "sup_size"), ("auto", "all"), ("auto", "random"),
    ("auto", "sup10"), ("weight", "all"), ("weight", "random"), ("weight", "label_free"),
    ("weight", "sup_size"),
]  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/filter_payoff.py", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, required=True, help="experiment directory")
    p.add_argument("--pl-data", type=Path, default=None,
                   help="pseudo-labelled train dir (default: dump/train_packed_pl or dump/train_pl)")  # fmt: skip
    p.add_argument("--teacher", type=Path, default=Path("exp/teacher"))
    p.add_argument("--student-init", type=Path, default=Path("exp/student_init"))
    p.add_argument("--dev", type=Path, default=Path("dump/dev"))
    p.add_argument("--test", type=Path, default=Path("dump/test"))
    p.add_argument("--config", type=Path, default=Path("conf/train.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--conditions", default=",".join(CONDITIONS),
                   help="comma-separated (default: %(default)s)")  # fmt: skip
    p.add_argument("--labelled", type=int, default=16,
                   help="utterances with references for auto (default: %(default)s)")  # fmt: skip
    p.add_argument("--normalizer", default="english")
    p.add_argument("--language", default=None, help="a multilingual teacher's language")
    p.add_argument("--filter-opts", default="", help="more options for speechdistill filter")
    p.add_argument("--train-opts", default="", help="more options for speechdistill train")
    p.add_argument("--decode-opts", default="--batch-size 8 --temperature-fallback",
                   help="options for speechdistill decode (default: %(default)s)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1,
                   help="students trained and decoded at a time (default: %(default)s)")  # fmt: skip
    p.add_argument("--keep-models", action="store_true",
                   help="keep every student (default: only its decode and train logs)")  # fmt: skip
    args = p.parse_args(argv)
    args.conditions = [c for c in args.conditions.split(",") if c]
    unknown = [c for c in args.conditions if c not in CONDITIONS]
    if unknown:
        p.error(f"unknown condition {unknown[0]!r} (known: {', '.join(CONDITIONS)})")
    for c in ("random", "sup_size"):
        if c in args.conditions and "label_free" not in args.conditions:
            p.error(f"{c} takes label_free's size: add label_free to --conditions")
    if args.pl_data is None:
        found = [d for d in (Path("dump/train_packed_pl"), Path("dump/train_pl")) if d.is_dir()]
        if not found:
            p.error("no dump/train_packed_pl or dump/train_pl here: give --pl-data")
        args.pl_data = found[0]
    return args


def sd(*args: object, log_file: Path) -> None:
    """Run ``speechdistill ARGS``, its output to ``log_file``; exit with its message on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "speechdistill", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    with log_file.open("w") as f:
        f.write("# " + shlex.join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc:
        tail = log_file.read_text().strip().splitlines()[-1:]
        sys.exit(f"speechdistill {args[0]} failed (see {log_file}): {' '.join(tail)}")


def settings(args: argparse.Namespace) -> dict:
    return {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("out", "seeds", "conditions", "keep_models", "jobs")
    }


def check_settings(args: argparse.Namespace) -> None:
    path = args.out / "settings.json"
    now = settings(args)
    if path.exists():
        before = json.loads(path.read_text())
        if before != now:
            diff = sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k))
            sys.exit(f"{args.out} holds an experiment with other settings ({', '.join(diff)}): "
                     "use another --out")  # fmt: skip
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(now, indent=2) + "\n")


def select(args: argparse.Namespace, cond: str) -> Path:
    """The training data dir of a condition (seed-independent selections)."""
    if cond == "all":
        return args.pl_data
    out = args.out / cond / "data"
    if (out / "text.teacher").exists():
        return out
    if cond == "sup_size":
        n = len(DataDir(select(args, "label_free")).utt_ids())
        rules = ["--keep", f"top:{n}:supervised_wer"]
    else:
        rules = [a for r in CONDITIONS[cond] for a in ("--keep", r)]
    extra = shlex.split(args.filter_opts)
    if cond == "auto":
        utts = sorted(DataDir(args.pl_data).utt_ids())
        labelled = sorted(random.Random(0).sample(utts, min(args.labelled, len(utts))))
        atomic_write_text(args.out / cond / "labelled", "".join(f"{u}\n" for u in labelled))
        extra += ["--labelled", args.out / cond / "labelled"]
    if cond == "weight":
        extra += ["--mode", "weight"]
    sd("filter", "--data", args.pl_data, "--out", out, "--exp-dir", args.out / cond / "filter",
       "--normalizer", args.normalizer, "--no-plots", *rules, *extra,
       log_file=args.out / cond / "filter.log")  # fmt: skip
    return out


def random_subset(args: argparse.Namespace, seed: int) -> Path:
    """A random subset of the pseudo-labelled dir, as many utterances as label_free keeps."""
    out = args.out / "random" / f"data{seed}"
    if (out / "text.teacher").exists():
        return out
    n = len(DataDir(args.out / "label_free" / "data").utt_ids())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subset(args.pl_data, tmp, random=n, seed=seed)
    tmp.rename(out)
    return out


def train_and_decode(args: argparse.Namespace, cond: str, seed: int, data: Path) -> Path:
    """Train one student and decode the test set; returns its hypothesis file."""
    run = args.out / cond / f"seed{seed}"
    hyp = run / "decode_test" / "text"
    if hyp.exists():
        return hyp
    model = run / "student"
    if not (model / "model.safetensors").exists():
        train = ["train", "--student", args.student_init, "--teacher", args.teacher,
                 "--train", data, "--dev", args.dev, "--out", model, "--seed", seed,
                 "--eval-normalizer", args.normalizer]  # fmt: skip
        if args.config.exists():
            train += ["--config", args.config]
        cache = args.pl_data / "cache"
        if (cache / "index.json").exists():
            train += ["--cache-dir", cache]
        if args.language:
            train += ["--language", args.language]
        sd(*train, *shlex.split(args.train_opts), log_file=run / "train.log")
    lang = ["--language", args.language] if args.language else []
    sd("decode", "--model", model, "--data", args.test, "--out", run / "decode_test", *lang,
       *shlex.split(args.decode_opts), log_file=run / "decode.log")  # fmt: skip
    if not args.keep_models:
        shutil.rmtree(model / "checkpoints", ignore_errors=True)
        for f in model.glob("*.safetensors"):
            f.unlink()
    return hyp


def kept(args: argparse.Namespace, data: Path) -> dict:
    dd = DataDir(data)
    durs = {u: float(d) for u, d in read_kv(dd.path / "utt2dur").items()}
    utts = dd.utt_ids()
    out = {"utts": len(utts), "hours": round(sum(durs[u] for u in utts) / 3600, 4)}
    weights = dd.path / "utt2weight"
    if weights.exists():
        w = {u: float(x) for u, x in read_kv(weights).items()}
        out["weighted_hours"] = round(sum(w[u] * durs[u] for u in utts) / 3600, 4)
    return out


def summarise(args: argparse.Namespace, hyps: dict, sizes: dict) -> dict:
    refs = read_kv(args.test / "text")
    scored = {c: [score(refs, read_kv(h), normalizer=args.normalizer, bootstrap=0) for h in hs]
              for c, hs in hyps.items()}  # fmt: skip
    rows = {}
    for c, runs in scored.items():
        words = [r.normalized.words for r in runs]
        total = sum(w.ref for w in words)
        rows[c] = {
            **sizes[c],
            "wer": [round(100 * w.rate, 2) for w in words],
            "pooled_wer": round(100 * sum(w.err for w in words) / total, 2),
            "ins": round(100 * sum(w.ins for w in words) / total, 2),
            "del": round(100 * sum(w.dels for w in words) / total, 2),
        }
    pairs = {}
    for b, a in PAIRS:
        if b in scored and a in scored:
            cmp = paired_bootstrap(scored[a], scored[b], n_resamples=2000, seed=0)
            pairs[f"{b} - {a}"] = cmp.to_dict()
    reports = {}
    for c in scored:
        rep = args.out / c / "filter" / "report.json"
        if rep.exists():
            r = json.loads(rep.read_text())
            reports[c] = {"auc": r.get("diagnostics", {}).get("auc"), "auto": r.get("auto"),
                          "label_wer": r.get("diagnostics", {}).get("label_wer")}  # fmt: skip
    return {"test": str(args.test), "seeds": args.seeds, "conditions": rows,
            "pairs": pairs, "filters": reports}  # fmt: skip


def markdown(summary: dict) -> str:
    lines = ["| condition | utts | hours | WER per seed | pooled WER | ins | del |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for c, r in summary["conditions"].items():
        hours = f"{r['hours']:.3f}" + (f" (w {r['weighted_hours']:.3f})" if "weighted_hours" in r else "")  # fmt: skip
        lines.append(f"| {c} | {r['utts']} | {hours} | {', '.join(f'{w:.1f}' for w in r['wer'])} "
                     f"| {r['pooled_wer']:.1f} | {r['ins']:.1f} | {r['del']:.1f} |")  # fmt: skip
    lines += ["", "| B − A | ΔWER | 95 % CI | P(B better) |", "|---|---|---|---|"]
    for name, p in summary["pairs"].items():
        ci = p["delta_ci"]
        ci_text = f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "–"
        lines.append(f"| {name} | {100 * p['delta']:+.1f} | {ci_text} | {p['p_b_better']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    check_settings(args)
    data = {c: select(args, c) for c in args.conditions if c != "random"}
    sizes = {c: kept(args, d) for c, d in data.items()}
    runs = []  # every condition once before the next seed
    for seed in args.seeds:
        if "random" in args.conditions:
            data["random"] = random_subset(args, seed)
            sizes.setdefault("random", kept(args, data["random"]))  # hours: the first draw's
        runs += [(cond, seed, data[cond]) for cond in args.conditions]
    hyps: dict[str, list[Path]] = {}

    def one(run: tuple[str, int, Path]) -> Path:
        cond, seed, d = run
        log.info("%s, seed %d: %d utterances", cond, seed, sizes[cond]["utts"])
        return train_and_decode(args, cond, seed, d)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for (cond, _, _), hyp in zip(runs, pool.map(one, runs), strict=True):
            hyps.setdefault(cond, []).append(hyp)
            summary = summarise(args, hyps, sizes)
            atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
            atomic_write_text(args.out / "summary.md", markdown(summary))
    print(markdown(summarise(args, hyps, sizes)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
