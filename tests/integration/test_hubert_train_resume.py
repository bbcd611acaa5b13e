"""DistilHuBERT training (tiny random teacher, noise clips) in a subprocess: killed after its
first checkpoint and resumed, it ends exactly where an uninterrupted run does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from hubert_helpers import csv_rows
from recipe_helpers import kill_when
from safetensors.torch import load_file


def _cmd(data, out: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "speechdistill",
        "-q",
        "train",
        "--student",
        "hubert",
        "--teacher",
        str(data["teacher"]),
        "--train",
        str(data["train"]),
        "--dev",
        str(data["dev"]),
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        "--batch-size",
        "2",
        "--eval-steps",
        "2",
        "--save-steps",
        "2",
        "--log-steps",
        "1",
        "--eval-batch-size",
        "2",
        "--warmup-steps",
        "1",
        "--lr",
        "1e-3",
        "--target-layers",
        "2,4",
    ]


def test_exact_resume_after_kill(hubert_data, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    full = tmp_path / "full"
    proc = subprocess.run(
        _cmd(hubert_data, full, 6), env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] == 6

    killed = tmp_path / "killed"
    first = killed / "checkpoints" / "step_0000002" / "trainer_state.json"
    kill_when(_cmd(hubert_data, killed, 6), env, first.is_file, timeout=300)
    assert not (killed / "train.json").exists()

    proc = subprocess.run(
        _cmd(hubert_data, killed, 6), env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(full / "checkpoints" / "step_0000006" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step_0000006" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for name in ("model.safetensors", "heads.safetensors"):
        wa, wb = load_file(full / name), load_file(killed / name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = json.loads((full / "train.json").read_text())
    sb = json.loads((killed / "train.json").read_text())
    assert [e["dev_loss"] for e in sa["evals"]] == [e["dev_loss"] for e in sb["evals"]]
    ra, rb = csv_rows(full / "train_log.csv"), csv_rows(killed / "train_log.csv")
    assert [int(r["step"]) for r in rb] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
