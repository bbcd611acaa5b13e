"""``speechdistill prune`` in a subprocess (tiny random Whisper teacher, noise clips, the student
on its clips with cached teacher targets): killed after its first checkpoint and resumed, it
ends exactly where an uninterrupted run does: gates, λs, weights, log and the pruned model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hubert_helpers import csv_rows, noise_data_dir, tiny_whisper_teacher
from recipe_helpers import kill_when
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prune_resume")
    return {
        "teacher": tiny_whisper_teacher(root / "teacher"),
        "train": noise_data_dir(root / "train", 6, seed=1, prefix="tr"),
        "dev": noise_data_dir(root / "dev", 2, seed=2, prefix="dv"),
    }


def _cmd(data, out: Path) -> list[str]:
    options = {"max-steps": 6, "batch-size": 2, "eval-steps": 2, "save-steps": 2, "log-steps": 1,
               "eval-batch-size": 2, "warmup-steps": 1, "reg-lr": 0.5, "target-sparsity": 0.3,
               "target-warmup-steps": 3, "student-input": "clip",
               "teacher-cache": "true"}  # fmt: skip
    cmd = [sys.executable, "-m", "speechdistill", "-q", "prune", "--teacher", str(data["teacher"]),
           "--train", str(data["train"]), "--dev", str(data["dev"]), "--out", str(out)]  # fmt: skip
    for k, v in options.items():
        cmd += [f"--{k}", str(v)]
    return cmd


def test_prune_resumes_exactly_after_a_kill(data, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    full = tmp_path / "full"
    proc = subprocess.run(_cmd(data, full), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = tmp_path / "killed"
    first = killed / "checkpoints" / "step_0000002" / "trainer_state.json"
    kill_when(_cmd(data, killed), env, first.is_file, timeout=300)
    assert not (killed / "train.json").exists() and not (killed / "prune.json").exists()

    proc = subprocess.run(_cmd(data, killed), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(full / "checkpoints" / "step_0000006" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step_0000006" / "model.safetensors")
    assert any(k.startswith("gates.") for k in a) and "lagrangian.lambda1" in a
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    wa, wb = load_file(full / "model.safetensors"), load_file(killed / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    pa = json.loads((full / "prune.json").read_text())
    pb = json.loads((killed / "prune.json").read_text())
    assert pa["structure"] == pb["structure"] and pa["sparsity"] == pb["sparsity"]
    ra, rb = csv_rows(full / "train_log.csv"), csv_rows(killed / "train_log.csv")
    assert [int(r["step"]) for r in rb] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
