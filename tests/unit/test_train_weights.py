"""Per-utterance loss weights (utt2weight) in Whisper KD training: the weighted losses by hand,
training with weights (equal weights train as no weights; others do not), the run record, and
sample_weights' errors. Tiny random models."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hubert_helpers import noise_data_dir, tiny_whisper_teacher
from safetensors.torch import load_file

from speechdistill.datadir import DataDir
from speechdistill.datadir.weights import write_weights
from speechdistill.init_student import init_student
from speechdistill.train.common import warn_weights_ignored
from speechdistill.train.config import TrainConfig
from speechdistill.train.data import sample_weights_file
from speechdistill.train.losses import (
    IGNORE_INDEX,
    ce_loss,
    distil_whisper_loss,
    kd_loss,
    pack_sparse,
    sparse_kd_loss,
)
from speechdistill.train.whisper_kd import train_whisper

# ------------------------------------------------------------------------------------------
# the losses


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 4, 7, generator=g)
    teacher = torch.randn(2, 4, 7, generator=g)
    labels = torch.tensor([[1, 2, 3, IGNORE_INDEX], [IGNORE_INDEX, 4, 5, 6]])
    return student, teacher, labels


def test_weighted_losses_are_the_weighted_mean_over_tokens_by_hand():
    student, teacher, labels = _batch()
    w = torch.tensor([0.2, 0.9])[:, None].expand(2, 4)
    valid = labels != IGNORE_INDEX
    ce_tok = F.cross_entropy(student.reshape(-1, 7), labels.reshape(-1), reduction="none",
                             ignore_index=IGNORE_INDEX).reshape(2, 4)  # fmt: skip
    kl_tok = F.softmax(teacher, -1) * (F.log_softmax(teacher, -1) - F.log_softmax(student, -1))
    kl_tok = kl_tok.sum(-1)
    # utterance 0: 3 tokens of weight 0.2; utterance 1: 3 tokens of weight 0.9
    by_hand_ce = (0.2 * ce_tok[0, :3].sum() + 0.9 * ce_tok[1, 1:].sum()) / (3 * 0.2 + 3 * 0.9)
    by_hand_kl = (0.2 * kl_tok[0, :3].sum() + 0.9 * kl_tok[1, 1:].sum()) / (3 * 0.2 + 3 * 0.9)
    assert ce_loss(student, labels, token_weights=w) == pytest.approx(float(by_hand_ce), rel=1e-5)
    assert kd_loss(student, teacher, labels, token_weights=w) == pytest.approx(
        float(by_hand_kl), rel=1e-5
    )
    sums = (w * ce_tok * valid).sum()
    assert ce_loss(student, labels, token_weights=w, reduction="sum") == pytest.approx(float(sums))
    both = distil_whisper_loss(student, labels, teacher, token_weights=w, temperature=1.0)
    assert both["loss"] == pytest.approx(float(0.8 * by_hand_ce + 1.0 * by_hand_kl), rel=1e-5)
    # RS-KD: one cached sample per position (the label itself), so its loss is the CE's
    rows = [(labels[b][valid[b]], torch.ones(3, dtype=torch.long), torch.arange(4))
            for b in range(2)]  # fmt: skip
    sp = pack_sparse(rows, pad_to=4, starts=[0, 1])
    rskd = sparse_kd_loss(student, sp.ids, sp.weights, sp.mask, token_weights=w)
    assert rskd == pytest.approx(float(by_hand_ce), rel=1e-5)


@pytest.mark.parametrize("value", [1.0, 0.3, 1e-3])
def test_equal_weights_give_the_unweighted_losses(value):
    student, teacher, labels = _batch(1)
    w = torch.full((2, 4), value)
    assert ce_loss(student, labels, token_weights=w) == pytest.approx(
        float(ce_loss(student, labels)), rel=1e-5
    )
    assert kd_loss(student, teacher, labels, token_weights=w, divergence="js") == pytest.approx(
        float(kd_loss(student, teacher, labels, divergence="js")), rel=1e-5
    )
    with pytest.raises(ValueError, match="token_weights"):
        kd_loss(student, teacher, labels, token_weights=torch.ones(2, 3))


# ------------------------------------------------------------------------------------------
# training


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    teacher = tiny_whisper_teacher(root / "teacher")
    init_student(teacher, root / "student", decoder_layers=1)
    data = noise_data_dir(root / "data", 6)
    return {"root": root, "teacher": teacher, "student": root / "student", "data": data}


def _config(**kw) -> TrainConfig:
    base = dict(max_steps=2, batch_size=2, grad_accum=2, eval_steps=2, save_steps=2,
                log_steps=1, eval_batch_size=3, eval_max_new_tokens=4, warmup_steps=1,
                lr=1e-3, label_file="text", num_workers=0)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _train(setup, data: Path, out: Path, **kw) -> dict[str, torch.Tensor]:
    train_whisper(setup["student"], setup["teacher"], data, setup["data"], out, _config(**kw))
    return load_file(out / "model.safetensors")


def _weighted_copy(setup, path: Path, weights: dict[str, float]) -> Path:
    shutil.copytree(setup["data"], path)
    write_weights(path / "utt2weight", weights)
    return path


def test_equal_weights_train_as_none_and_others_do_not(setup, tmp_path, caplog):
    utts = DataDir(setup["data"]).utt_ids()
    plain = _train(setup, setup["data"], tmp_path / "plain")
    # tiny equal weights: sums of weights under 1 in a step, the mean is still the plain one
    equal = _weighted_copy(setup, tmp_path / "equal", {u: 0.01 for u in utts})
    with caplog.at_level(logging.INFO, logger="speechdistill"):
        same = _train(setup, equal, tmp_path / "same")
    assert f"training with per-utterance weights from {equal / 'utt2weight'}: 6 utterances, " \
           "mean 0.010" in caplog.text  # fmt: skip
    for k in plain:
        torch.testing.assert_close(same[k], plain[k], rtol=1e-4, atol=1e-5)
    skewed = _weighted_copy(setup, tmp_path / "skewed",
                            {u: 1.0 if i % 2 else 0.05 for i, u in enumerate(utts)})  # fmt: skip
    other = _train(setup, skewed, tmp_path / "other")
    assert any(not torch.allclose(other[k], plain[k], rtol=1e-4, atol=1e-5) for k in plain)
    # the weighted mean is over the step's tokens, not a mean of batch means: 4 batches of 1
    # accumulated train as 2 batches of 2 (the same 4 utterances a step)
    ones = _train(setup, skewed, tmp_path / "ones", batch_size=1, grad_accum=4)
    for k in plain:
        torch.testing.assert_close(ones[k], other[k], rtol=1e-4, atol=1e-5)


def test_a_resume_with_other_weights_is_refused(setup, tmp_path):
    utts = DataDir(setup["data"]).utt_ids()
    data = _weighted_copy(setup, tmp_path / "d", {u: 0.5 for u in utts})
    out = tmp_path / "exp"
    _train(setup, data, out, max_steps=1, lr_schedule="constant")
    write_weights(data / "utt2weight", {u: 0.25 for u in utts})
    with pytest.raises(ValueError, match=r"was trained with sample_weights \S+/utt2weight, .*; "
                       r"now another sample_weights"):  # fmt: skip
        _train(setup, data, out, max_steps=2, lr_schedule="constant")


def test_sample_weights_errors(setup, tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match=r"utt2weight: no such file \(sample_weights=true"):
        _train(setup, setup["data"], tmp_path / "x", sample_weights="true")
    assert not (tmp_path / "x").exists()  # refused before the output dir is made
    with pytest.raises(ValueError, match="sample_weights must be one of auto, true, false"):
        _config(sample_weights="yes")
    assert _config(sample_weights=True).sample_weights == "true"  # YAML's booleans
    utts = DataDir(setup["data"]).utt_ids()
    part = _weighted_copy(setup, tmp_path / "part", {u: 0.5 for u in utts[:4]})
    with pytest.raises(ValueError, match=r"utt2weight: no weight for 2 of the 6 training "):
        _train(setup, part, tmp_path / "y")
    assert sample_weights_file(part, "false") is None
    assert sample_weights_file(part, "auto") == part / "utt2weight"
    with caplog.at_level(logging.WARNING):
        warn_weights_ignored(part, "ctc-finetune")
    assert "utt2weight: ignored by ctc-finetune" in caplog.text
