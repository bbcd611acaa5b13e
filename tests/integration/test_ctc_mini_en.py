"""CTC fine-tuning of a DistilHuBERT student (tiny random teacher) on real (espeak-ng) mini_en
speech: fine-tune + decode + score, from scratch, exact resume, the encoder frozen at first."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from hubert_helpers import tiny_ssl_teacher
from safetensors.torch import load_file

from speechdistill.datadir import read_kv
from speechdistill.datadir.ops import subset
from speechdistill.train.config import CTCTrainConfig
from speechdistill.train.ctc_finetune import ctc_finetune


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mini_corpus):
    from speechdistill.teachers.hubert import load_ssl_teacher
    from speechdistill.train.hubert_student import init_hubert_student

    root = tmp_path_factory.mktemp("ctc")
    teacher = load_ssl_teacher(
        tiny_ssl_teacher(root / "teacher", "hubert", feat_extract_norm="layer")
    )
    student, fe, _ = init_hubert_student(teacher)
    student.save(root / "student", fe)
    return {
        "root": root,
        "student": root / "student",
        "train": mini_corpus / "train",
        "dev": subset(mini_corpus / "dev", root / "dev", first=2),
        "test": subset(mini_corpus / "test", root / "test", first=5),
    }


def _small(**kw) -> CTCTrainConfig:
    base = dict(
        max_steps=4,
        batch_size=4,
        eval_steps=2,
        save_steps=2,
        log_steps=1,
        warmup_steps=1,
        eval_batch_size=2,
        lr=1e-3,
        mask_time_prob=0.0,
    )
    return CTCTrainConfig(**{**base, **kw})


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "speechdistill", "-q", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_finetune_decode_and_score(setup, tmp_path):
    from transformers import HubertForCTC

    out = tmp_path / "ctc"
    proc = _run(
        "ctc-finetune",
        "--model",
        str(setup["student"]),
        "--train",
        str(setup["train"]),
        "--dev",
        str(setup["dev"]),
        "--out",
        str(out),
        "--max-steps",
        "4",
        "--batch-size",
        "4",
        "--eval-steps",
        "2",
        "--save-steps",
        "2",
        "--log-steps",
        "1",
        "--warmup-steps",
        "1",
        "--eval-batch-size",
        "2",
        "--lr",
        "1e-3",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "train.json").read_text())
    assert summary["steps"] == 4 and summary["dev_reference"] == "text"
    assert [e["step"] for e in summary["evals"]] == [2, 4]
    assert all(e["dev_cer"] >= 0 and e["dev_wer"] >= 0 for e in summary["evals"])
    vocab = json.loads((out / "vocab.json").read_text())
    assert {"<pad>", "<unk>", "|", "a", "e", "t"} <= set(vocab)
    assert not any(c.isupper() for c in vocab if len(c) == 1)  # Whisper-normalised targets
    model = HubertForCTC.from_pretrained(out, use_safetensors=True)
    assert model.config.vocab_size == len(vocab) and model.config.pad_token_id == 0
    # the fine-tuned encoder started from the student's weights (the CNN stays frozen)
    w = load_file(out / "model.safetensors")
    s = load_file(setup["student"] / "model.safetensors")
    key = "feature_extractor.conv_layers.0.conv.weight"
    assert torch.equal(w[f"hubert.{key}"], s[key])

    dec = tmp_path / "decode_test"
    proc = _run(
        "ctc-decode",
        "--model",
        str(out),
        "--data",
        str(setup["test"]),
        "--out",
        str(dec),
        "--batch-size",
        "2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (dec / "text").read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == sorted(read_kv(setup["test"] / "text"))
    assert json.loads((dec / "decode.json").read_text())["num_utts"] == 5
    proc = _run(
        "score",
        "--ref",
        str(setup["test"] / "text"),
        "--hyp",
        str(dec / "text"),
        "--out",
        str(dec / "score_wer"),
        "--normalizer",
        "english",
        "--bootstrap",
        "0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((dec / "score_wer" / "results.json").read_text())
    assert res["n_utts"] == 5 and res["wer"] >= 0 and res["cer"] >= 0
    assert (dec / "score_wer" / "result.txt").is_file() and res["extra"]["rtfx"] > 0


def test_from_scratch_is_the_same_architecture(setup, tmp_path):
    summary = ctc_finetune(
        setup["student"],
        setup["train"],
        setup["dev"],
        tmp_path / "scratch",
        _small(max_steps=1, eval_steps=1, save_steps=1, from_scratch=True),
    )
    assert summary["from_scratch"] is True
    w = load_file(tmp_path / "scratch" / "model.safetensors")
    s = load_file(setup["student"] / "model.safetensors")
    assert {f"hubert.{k}" for k in s} <= set(w)
    key = "encoder.layers.0.attention.q_proj.weight"
    assert w[f"hubert.{key}"].shape == s[key].shape
    assert not torch.allclose(w[f"hubert.{key}"], s[key])  # random, not the student's


def test_exact_resume(setup, tmp_path, monkeypatch):
    from speechdistill.train.common import AcceleratedTrainer

    cfg = _small(max_steps=4, mask_time_prob=0.3, mask_time_length=2)  # SpecAugment: numpy RNG
    ctc_finetune(setup["student"], setup["train"], setup["dev"], tmp_path / "full", cfg)

    original = AcceleratedTrainer._checkpoint

    class Killed(Exception):
        pass

    def stop_after_first(self):
        original(self)
        raise Killed

    monkeypatch.setattr(AcceleratedTrainer, "_checkpoint", stop_after_first)
    with pytest.raises(Killed):
        ctc_finetune(setup["student"], setup["train"], setup["dev"], tmp_path / "cut", cfg)
    monkeypatch.setattr(AcceleratedTrainer, "_checkpoint", original)
    assert not (tmp_path / "cut" / "train.json").exists()
    ctc_finetune(setup["student"], setup["train"], setup["dev"], tmp_path / "cut", cfg)
    a = load_file(tmp_path / "full" / "checkpoints" / "step_0000004" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "checkpoints" / "step_0000004" / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    from speechdistill.train.common import read_log_csv

    def losses(run: str) -> list[tuple[str, str, str]]:  # timings differ, nothing else
        rows = read_log_csv(tmp_path / run / "train_log.csv")
        return [(r["step"], r["loss"], r["grad_norm"]) for r in rows]

    assert losses("full") == losses("cut") and len(losses("cut")) == 4


def test_encoder_frozen_for_the_first_steps(setup, tmp_path):
    s = load_file(setup["student"] / "model.safetensors")
    key = "encoder.layers.0.attention.q_proj.weight"
    for frozen_steps, changed in ((2, False), (1, True)):
        out = tmp_path / f"f{frozen_steps}"
        cfg = _small(max_steps=2, eval_steps=2, save_steps=2, freeze_encoder_steps=frozen_steps)
        ctc_finetune(setup["student"], setup["train"], setup["dev"], out, cfg)
        w = load_file(out / "checkpoints" / "step_0000002" / "model.safetensors")
        assert torch.equal(w[f"hubert.{key}"], s[key]) is not changed
        assert w["lm_head.weight"].abs().sum() > 0
