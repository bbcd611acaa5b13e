"""Security: model weights are loaded from safetensors only, so a pickle in a model dir is never
executed; every command that loads a model refuses such a dir with a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

SENTINEL_NAME = "pwned"


class _Payload:
    """Unpickling this creates a file: proof that the pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """A tiny Whisper model dir whose only weights are a malicious ``pytorch_model.bin``, and a
    two-utterance data dir."""
    from speechdistill.testing import english_tokenizer, save_random_whisper

    root = tmp_path_factory.mktemp("poisoned")
    model = save_random_whisper(root / "model", english_tokenizer(), multilingual=False)
    for p in model.glob("*.safetensors*"):
        p.unlink()
    sentinel = root / SENTINEL_NAME
    torch.save({"model": _Payload(str(sentinel))}, model / "pytorch_model.bin")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2):
        sf.write(data / f"u{i}.wav", (rng.standard_normal(8000) * 0.1).astype(np.float32), 16000)
    (data / "wav.scp").write_text("".join(f"spk-u{i} {data}/u{i}.wav\n" for i in (1, 2)))
    (data / "utt2spk").write_text("spk-u1 spk\nspk-u2 spk\n")
    (data / "spk2utt").write_text("spk spk-u1 spk-u2\n")
    (data / "text").write_text("spk-u1 a\nspk-u2 b\n")
    return {"model": model, "data": data, "root": root, "sentinel": sentinel}


def _commands(p, out: Path) -> dict[str, list[str]]:
    m, d = str(p["model"]), str(p["data"])
    return {
        "pseudo-label": ["pseudo-label", "--teacher", m, "--data", d, "--out", str(out)],
        "decode": ["decode", "--model", m, "--data", d, "--out", str(out)],
        "init-student": ["init-student", "--teacher", m, "--out", str(out)],
        "speed": ["speed", "--model", m, "--data", d, "--out", str(out), "--max-utts", "1"],
        "teacher export-ct2": ["teacher", "export-ct2", m, str(out)],
    }


@pytest.mark.parametrize("command", list(_commands({"model": "", "data": ""}, Path())))
def test_a_pickle_in_a_model_dir_is_refused_never_run(poisoned, tmp_path, command):
    argv = _commands(poisoned, tmp_path / "out")[command]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "speechdistill", "-q", *argv], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert str(poisoned["model"]) in errors[0] and "safetensors" in errors[0], errors[0]
    assert not poisoned["sentinel"].exists(), "the pickle was executed"
