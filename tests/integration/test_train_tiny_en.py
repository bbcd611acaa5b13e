"""KD training of a Whisper student (real tiny.en teacher, 2-layer student): targets, the three
teacher modes, dev evaluation and best checkpoint, exact resume after a kill, 2 processes."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from recipe_helpers import kill_when
from safetensors.torch import load_file
from whisper_helpers import generation_dict

from speechdistill.datadir import DataDir, read_kv
from speechdistill.datadir.ops import subset
from speechdistill.format import format_data_dir
from speechdistill.init_student import init_student
from speechdistill.pseudo_label import PseudoLabelConfig, pseudo_label
from speechdistill.scoring import score
from speechdistill.train.config import TrainConfig
from speechdistill.train.data import KDDataset, collate
from speechdistill.train.losses import IGNORE_INDEX
from speechdistill.train.whisper_kd import train_whisper

# ------------------------------------------------------------------------------------------
# fixtures: pseudo-labels (with caches) of a few mini_en utterances, a 2-layer student


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mini_corpus, tiny_en_teacher):
    root = tmp_path_factory.mktemp("train")
    # formatted as the recipe's stage 2 does: one WAV per utterance (the corpus has recordings
    # cut by segments; training reads wav.scp by utterance)
    data, dev = root / "train", root / "dev"
    format_data_dir(subset(mini_corpus / "train", root / "train_src", first=6), data)
    format_data_dir(subset(mini_corpus / "dev", root / "dev_src", first=2), dev)
    pl = root / "pl"
    cfg = PseudoLabelConfig(batch_size=3, cache_encoder=True, rskd_k=16)
    pseudo_label(tiny_en_teacher, data, pl, cfg)
    init_student(tiny_en_teacher, root / "student", decoder_layers=2)
    return {"root": root, "pl": pl, "dev": dev, "student": root / "student",
            "teacher": tiny_en_teacher}  # fmt: skip


def _small(**kw) -> TrainConfig:
    base = dict(max_steps=2, batch_size=2, eval_steps=2, save_steps=2, log_steps=1,
                eval_batch_size=2, eval_max_new_tokens=24, warmup_steps=1, lr=1e-4)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_targets_follow_whisper_decoder_format(setup, tmp_path):
    from speechdistill.teachers.whisper import load_teacher

    model, proc = load_teacher(setup["student"])
    gen = model.generation_config
    data = subset(setup["pl"], tmp_path / "pl", first=4)
    d = DataDir(data)
    d.write_utt2spk({u: "one_speaker" for u in d.utt_ids()})  # a speaker with 4 utterances
    ds = KDDataset(data, proc, gen, _small(prev_context_prob=1.0, timestamp_prob=0.0))
    tokens = read_kv(data / "utt2teacher_tokens")
    rng = np.random.default_rng(0)
    utt = ds.utts[0]
    ids = [int(t) for t in tokens[utt].split()]
    assert ids[-1] == gen.eos_token_id
    inputs, labels, start, _ = ds.targets(utt, rng)  # the first utterance has no predecessor
    assert inputs == [gen.decoder_start_token_id, gen.no_timestamps_token_id, *ids[:-1]]
    assert labels == [gen.no_timestamps_token_id, *ids]
    assert start == 1
    # the next utterance of the same speaker gets the first as context, without loss on it
    nxt = ds.utts[1]
    inputs, labels, start, _ = ds.targets(nxt, rng)
    prev = proc.tokenizer.convert_tokens_to_ids("<|startofprev|>")
    assert inputs[0] == prev and inputs[1 : 1 + len(ids) - 1] == ids[:-1]
    assert labels[: len(ids)] == [IGNORE_INDEX] * len(ids)
    assert labels[start - 2] == IGNORE_INDEX  # the last context token
    assert labels[start - 1] == gen.no_timestamps_token_id and labels[start] == ids[0]
    assert len(inputs) == len(labels)
    batch = collate([ds[0], ds[1]], gen.pad_token_id)
    assert batch["input_features"].shape == (2, 80, 3000)
    assert batch["labels"].shape == batch["decoder_input_ids"].shape


def test_cut_short_pseudo_labels_are_skipped(setup, tmp_path):
    from speechdistill.teachers.whisper import load_teacher

    data = subset(setup["pl"], tmp_path / "pl", first=3)
    d = DataDir(data)
    tokens = d.read("utt2teacher_tokens")
    cut = sorted(tokens)[0]
    tokens[cut] = " ".join(tokens[cut].split()[:-1])  # no EOS: max_new_tokens was hit
    d.write("utt2teacher_tokens", tokens)
    model, proc = load_teacher(setup["student"])
    ds = KDDataset(data, proc, model.generation_config, _small())
    assert cut not in ds.utts and len(ds) == 2


@pytest.mark.parametrize("mode", ["cache", "shared_encoder", "online"])
def test_training_modes_run_and_keep_the_best_dev_checkpoint(setup, tmp_path, mode):
    cache = str(setup["pl"] / "cache") if mode == "cache" else None
    out = tmp_path / mode
    temperature = 1.0 if mode == "cache" else 2.0  # the cache was sampled at T = 1
    summary = train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["dev"], out,
                            _small(teacher_mode=mode, cache_dir=cache, temperature=temperature))  # fmt: skip
    assert summary["steps"] == 2 and summary["best_step"] == 2
    assert summary["dev_reference"] == "text"  # the dev set's human transcripts
    assert summary["best_dev_wer"] >= 0.0
    with open(out / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(float(r["loss"]) > 0 and float(r["ce"]) > 0 and float(r["kd"]) > 0 for r in rows)
    assert (out / "curves.png").stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    # each evaluation's dev hypotheses, scoring to the WER it logged
    hyps = read_kv(out / "dev_decode" / "step_0000002.text")
    assert sorted(hyps) == sorted(read_kv(setup["dev"] / "text"))
    refs = read_kv(setup["dev"] / "text")
    assert score(refs, hyps, normalizer="english", bootstrap=0).wer == pytest.approx(
        summary["best_dev_wer"], abs=1e-5
    )
    # the trained student is the best dev checkpoint, in safetensors, and it differs from init
    trained = load_file(out / "model.safetensors")
    init = load_file(setup["student"] / "model.safetensors")
    assert trained.keys() == init.keys()
    changed = [k for k in trained if not torch.equal(trained[k], init[k])]
    assert changed and all(k.startswith(("model.decoder", "proj_out")) for k in changed)
    assert torch.equal(
        trained["model.encoder.layers.0.fc1.weight"], init["model.encoder.layers.0.fc1.weight"]
    )  # fmt: skip  (frozen)
    # the student's generation config (alignment heads for word timestamps, suppressed tokens)
    # is the trained model's, so its exports keep working in faster-whisper and the pipeline
    student_gen = generation_dict(setup["student"])
    assert student_gen["alignment_heads"] and generation_dict(out) == student_gen


def test_shared_encoder_trains_exactly_as_the_online_teacher(setup, tmp_path):
    """With the encoder frozen, sharing its output with the teacher changes no number: the same
    losses and the same trained student as running the whole teacher every step (so the online
    teacher's WER is shared_encoder's, and only the cache's sparse KD estimate differs)."""
    logs, weights = {}, {}
    for mode in ("online", "shared_encoder"):
        out = tmp_path / mode
        train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["dev"], out,
                      _small(teacher_mode=mode, max_steps=3, eval_steps=3, save_steps=3))  # fmt: skip
        with open(out / "train_log.csv") as f:
            logs[mode] = [(float(r["ce"]), float(r["kd"])) for r in csv.DictReader(f)]
        weights[mode] = load_file(out / "model.safetensors")
    assert len(logs["online"]) == 3
    np.testing.assert_allclose(logs["online"], logs["shared_encoder"], rtol=1e-5)
    for k, v in weights["online"].items():
        torch.testing.assert_close(weights["shared_encoder"][k], v, rtol=1e-5, atol=1e-6)


def test_ema_weights_are_the_ones_evaluated_and_saved(setup, tmp_path):
    """With ema_decay the trained model is the running average, with the warm-up
    min(decay, (1 + t) / (10 + t)), of the weights an EMA-less run holds after each step."""
    kw = dict(teacher_mode="cache", cache_dir=str(setup["pl"] / "cache"), temperature=1.0,
              max_steps=3, eval_steps=3, save_steps=1, keep_checkpoints=3, lr=1e-3,
              lr_schedule="constant_with_warmup")  # fmt: skip
    plain = tmp_path / "plain"
    train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["dev"], plain,
                  _small(**kw))  # fmt: skip
    per_step = [load_file(plain / "checkpoints" / f"step_{s:07d}" / "model.safetensors")
                for s in (1, 2, 3)]  # fmt: skip
    averaged = tmp_path / "ema"
    train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["dev"], averaged,
                  _small(**kw, ema_decay=0.5))  # fmt: skip
    got = load_file(averaged / "model.safetensors")
    name = "model.decoder.layers.1.fc2.weight"
    expected = load_file(setup["student"] / "model.safetensors")[name].clone()
    for step, weights in enumerate(per_step, 1):
        decay = min(0.5, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * weights[name]
    torch.testing.assert_close(got[name], expected, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(got[name], per_step[-1][name])


def test_specaugment_masks_the_features_and_checkpointing_changes_no_number(setup, tmp_path):
    """SpecAugment really masks (other losses than without it, the same in two seeded runs)
    and is not saved into the student's config; gradient checkpointing gives the same losses
    and weights as plain back-propagation."""
    runs = {
        "plain": {},
        "specaugment": {"specaugment": True},
        "specaugment_again": {"specaugment": True},
        "checkpointing": {"gradient_checkpointing": True},
    }
    logs, weights = {}, {}
    for name, extra in runs.items():
        out = tmp_path / name
        train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["dev"], out,
                      _small(teacher_mode="shared_encoder", eval_steps=2, **extra))  # fmt: skip
        with open(out / "train_log.csv") as f:
            logs[name] = [(float(r["ce"]), float(r["kd"])) for r in csv.DictReader(f)]
        weights[name] = load_file(out / "model.safetensors")
        assert json.loads((out / "config.json").read_text()).get("apply_spec_augment") is False
    assert logs["specaugment"] == logs["specaugment_again"]
    assert logs["specaugment"][0] != logs["plain"][0]
    np.testing.assert_allclose(logs["checkpointing"], logs["plain"], rtol=1e-5)
    for k, v in weights["plain"].items():
        torch.testing.assert_close(weights["checkpointing"][k], v, rtol=1e-5, atol=1e-6)
    from speechdistill.train.whisper_kd import WhisperKDTrainer

    trainer = WhisperKDTrainer(setup["student"], setup["teacher"], setup["pl"], setup["dev"],
                               tmp_path / "on", _small(gradient_checkpointing=True,
                                                       teacher_mode="shared_encoder"))  # fmt: skip
    model = trainer.acc.unwrap_model(trainer.student)
    on = getattr(model, "is_activation_checkpointing", None)  # the new name, where it exists
    assert model.is_gradient_checkpointing if on is None else on  # really on


@pytest.fixture(scope="module")
def looping_student(setup):
    """tiny.en's decoder layers 0, 1 and 3: it decodes "You know, you know, …" without end."""
    path = setup["root"] / "student_013"
    init_student(setup["teacher"], path, decoder_layers=[0, 1, 3])
    return path


@pytest.mark.parametrize("mode", ["shared_encoder", "cache", "cache+on_policy"])
def test_gradient_accumulation_is_token_exact(setup, looping_student, tmp_path, mode):
    """2 accumulated batches of 1 make the same steps as batches of 2 although the two labels
    (and the student's two decodes, on-policy) differ in length: every token weighs alike (a
    mean of the two batches' means would not)."""
    mode, _, on_policy = mode.partition("+")
    tokens = read_kv(setup["pl"] / "utt2teacher_tokens")
    by_length = {len(t.split()): u for u, t in sorted(tokens.items())}
    assert len(by_length) >= 2
    short, long_ = by_length[min(by_length)], by_length[max(by_length)]
    data = subset(setup["pl"], tmp_path / "two", utt_list=[short, long_])
    cache = str(setup["pl"] / "cache") if mode == "cache" else None
    logs, weights = {}, {}
    for name, (batch, accum) in {"accumulated": (1, 2), "batched": (2, 1)}.items():
        out = tmp_path / name
        student = looping_student if on_policy else setup["student"]  # decodes of 2 lengths
        # the long decode stops at max_label_tokens (its label's length), the short one at 1.5 ×
        # its label's: the decodes' shares of the window differ from the labels'
        cap = dict(max_label_tokens=len(tokens[long_].split()) + 1) if on_policy else {}
        train_whisper(student, setup["teacher"], data, setup["dev"], out,
                      _small(teacher_mode=mode, cache_dir=cache, temperature=1.0,
                             batch_size=batch, grad_accum=accum, lr=1e-3,
                             on_policy_weight=1.0 if on_policy else 0.0, **cap))  # fmt: skip
        keys = ("ce", "kd", "on_policy") if on_policy else ("ce", "kd")
        with open(out / "train_log.csv") as f:
            logs[name] = [tuple(float(r[k]) for k in keys) for r in csv.DictReader(f)]
        weights[name] = load_file(out / "model.safetensors")
    assert len(logs["accumulated"]) == 2
    np.testing.assert_allclose(logs["accumulated"], logs["batched"], rtol=1e-5)
    # padding changes the rounding, which Adam amplifies where a gradient is near 0; a step of
    # lr 1e-3 moves the weights ten times more than the tolerance
    for k, v in weights["batched"].items():
        torch.testing.assert_close(weights["accumulated"][k], v, rtol=1e-3, atol=1e-4)
    name = "model.decoder.layers.1.fc2.weight"
    init = load_file(student / "model.safetensors")[name]
    assert (weights["batched"][name] - init).abs().max() > 1e-3


def test_dev_evaluation_can_decode_with_temperature_fallback(setup, tmp_path):
    """eval_temperature_fallback decodes dev exactly as ``decode --temperature-fallback`` does
    (one utterance per batch in both, each seeded alike): a random model's greedy loops are
    decoded again, and training's RNG stream is left as it was."""
    from speechdistill.cli import main
    from speechdistill.teachers.whisper import load_teacher
    from speechdistill.testing import english_tokenizer, save_random_whisper
    from speechdistill.train.whisper_kd import DevEvaluator

    model_dir = save_random_whisper(tmp_path / "m", english_tokenizer(), multilingual=False,
                                    max_source_positions=1500)  # fmt: skip
    model, proc = load_teacher(model_dir)
    config = dict(eval_batch_size=1, eval_max_new_tokens=30)
    _, greedy = DevEvaluator(setup["dev"], proc, _small(**config))(model)
    evaluator = DevEvaluator(setup["dev"], proc, _small(eval_temperature_fallback=True, **config))
    rng = torch.get_rng_state()
    _, fallback = evaluator(model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert evaluator(model)[1] == fallback
    assert all(len(set(greedy[u].split())) < len(set(fallback[u].split())) for u in greedy)
    out = tmp_path / "decode"
    argv = ["decode", "--model", str(model_dir), "--data", str(setup["dev"]), "--out", str(out),
            "--batch-size", "1", "--max-new-tokens", "30", "--temperature-fallback"]  # fmt: skip
    assert main(argv) == 0
    assert read_kv(out / "text") == fallback


def test_bf16_teacher_still_shares_the_students_encoder(setup, tmp_path):
    """Mixed precision loads the teacher in bf16; its encoder is still the student's (compared at
    bf16), so shared_encoder runs, and its first-step losses are the fp32 ones within bf16's
    rounding."""
    from accelerate.state import AcceleratorState

    first = {}
    for precision in ("no", "bf16"):
        AcceleratorState._reset_state(reset_partial_state=True)  # one precision per process
        out = tmp_path / precision
        train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["dev"], out,
                      _small(teacher_mode="shared_encoder", mixed_precision=precision,
                             max_steps=1, eval_steps=1, save_steps=1))  # fmt: skip
        with open(out / "train_log.csv") as f:
            row = next(csv.DictReader(f))
        first[precision] = (float(row["ce"]), float(row["kd"]))
    AcceleratorState._reset_state(reset_partial_state=True)
    np.testing.assert_allclose(first["bf16"], first["no"], rtol=0.05)
    assert first["bf16"] != first["no"]  # bf16 really ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="what fp16 does without a GPU")
def test_fp16_without_a_gpu_trains_in_float32_and_says_so(setup, tmp_path, caplog):
    """accelerate reports fp16 on the CPU but runs float32: the trainer says so and loads the
    teacher in float32 too, instead of half a model in fp16."""
    from accelerate.state import AcceleratorState

    from speechdistill.train.whisper_kd import WhisperKDTrainer

    AcceleratorState._reset_state(reset_partial_state=True)  # one precision per process
    try:
        with caplog.at_level(logging.WARNING, logger="speechdistill.train.common"):
            trainer = WhisperKDTrainer(setup["student"], setup["teacher"], setup["pl"],
                                       setup["dev"], tmp_path / "fp16",
                                       _small(teacher_mode="shared_encoder",
                                              mixed_precision="fp16"))  # fmt: skip
        assert "fp16 needs a CUDA GPU" in caplog.text
        assert trainer.acc.mixed_precision == "no"
        assert trainer.teacher.dtype == torch.float32
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_cache_mode_needs_the_cache_teacher(setup, tmp_path):
    from speechdistill.cache import CacheIndex

    cache = tmp_path / "cache"
    index = CacheIndex.load(setup["pl"] / "cache")
    (cache).mkdir()
    CacheIndex({"weights_sha256": "someone else"}, index.settings, index.shards).save(cache)
    with pytest.raises(ValueError, match="teacher"):
        train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["dev"],
                      tmp_path / "x", _small(teacher_mode="cache", cache_dir=str(cache),
                                             temperature=1.0))  # fmt: skip
    with pytest.raises(ValueError, match="temperature"):
        train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["dev"],
                      tmp_path / "y", _small(teacher_mode="cache", temperature=2.0,
                                             cache_dir=str(setup["pl"] / "cache")))  # fmt: skip


def _train_cmd(setup, out: Path, steps: int, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "speechdistill", "-q", "train", "--student", str(setup["student"]),
           "--teacher", str(setup["teacher"]), "--train", str(setup["pl"]), "--dev",
           str(setup["dev"]), "--out", str(out), "--teacher-mode", "cache", "--cache-dir",
           str(setup["pl"] / "cache"), "--temperature", "1.0", "--max-steps", str(steps),
           "--batch-size", "2", "--eval-steps", "2", "--save-steps", "2", "--log-steps", "1",
           "--eval-batch-size", "2", "--eval-max-new-tokens", "16", "--warmup-steps", "1",
           "--lr", "3e-4", *extra]  # fmt: skip
    return cmd


@pytest.mark.parametrize("on_policy", [False, True], ids=["plain", "on_policy_sampled"])
def test_exact_resume_after_kill(setup, tmp_path, on_policy):
    """A run killed after its first checkpoint and started again ends with the same weights,
    dev WERs and log as an uninterrupted one (also when the student's decodes are sampled)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    extra = ["--on-policy-weight", "1", "--on-policy-temperature", "1"] if on_policy else []
    full = tmp_path / "full"
    proc = subprocess.run(_train_cmd(setup, full, 6, *extra), env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = tmp_path / "killed"
    first = killed / "checkpoints" / "step_0000002" / "trainer_state.json"
    kill_when(_train_cmd(setup, killed, 6, *extra), env, first.is_file)
    assert not (killed / "train.json").exists()

    proc = subprocess.run(_train_cmd(setup, killed, 6, *extra), env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(full / "checkpoints" / "step_0000006" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step_0000006" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa = json.loads((full / "train.json").read_text())
    sb = json.loads((killed / "train.json").read_text())
    assert [e["dev_wer"] for e in sa["evals"]] == [e["dev_wer"] for e in sb["evals"]]
    with open(killed / "train_log.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]


def test_two_processes_equal_one(setup, tmp_path):
    """accelerate's 2 CPU processes of batch 2 train the same weights as 1 process of batch 4:
    the same samples per step (the shared permutation, sharded) and a loss normalised by the
    global token count."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")

    def args(out: Path, batch: int) -> list[str]:
        cmd = _train_cmd(setup, out, 2)[3:]  # without "python -m speechdistill"
        cmd[cmd.index("--batch-size") + 1] = str(batch)
        return cmd

    one = tmp_path / "one"
    proc = subprocess.run([sys.executable, "-m", "speechdistill", *args(one, 4)], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    accelerate = Path(sys.executable).parent / "accelerate"
    launch = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
              "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "speechdistill"]  # fmt: skip
    two = tmp_path / "two"
    proc = subprocess.run([*launch, *args(two, 2)], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(one / "checkpoints" / "step_0000002" / "model.safetensors")
    b = load_file(two / "checkpoints" / "step_0000002" / "model.safetensors")
    init = load_file(setup["student"] / "model.safetensors")
    assert a.keys() == b.keys()
    moved = 0
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), k  # Adam: |Δ| ~ 1e-6
        moved += k in init and not torch.equal(a[k], init[k])
    assert moved > 0  # the weights were trained, not left as they were
    with open(one / "train_log.csv") as f1, open(two / "train_log.csv") as f2:
        l1 = [float(r["loss"]) for r in csv.DictReader(f1)]
        l2 = [float(r["loss"]) for r in csv.DictReader(f2)]
    assert l1 == pytest.approx(l2, rel=1e-4)


# ------------------------------------------------------------------------------------------
# on-policy KD


def _first_batch(trainer):
    batch = trainer.prepare_batch(next(iter(trainer.loader)))
    trainer._batch_items = trainer.count_items(batch)
    trainer._window_items = {k: v.float() for k, v in trainer._batch_items.items()}
    return batch


@pytest.mark.parametrize("student", ["ends_early", "loops"])
def test_on_policy_kd_distils_the_teacher_on_the_students_own_decode(
    setup, looping_student, tmp_path, student
):
    """The on-policy term is the KL to the teacher over the student's greedy decode (Whisper's
    own generate gives the same tokens), up to and including its <|endoftext|> or up to the
    cap; the label terms are those of a run without it."""
    from transformers.modeling_outputs import BaseModelOutput

    from speechdistill.train.losses import kd_loss
    from speechdistill.train.whisper_kd import WhisperKDTrainer

    kw = dict(teacher_mode="cache", cache_dir=str(setup["pl"] / "cache"), temperature=1.0,
              batch_size=3)  # fmt: skip
    model_dir = setup["student"] if student == "ends_early" else looping_student
    args = (model_dir, setup["teacher"], setup["pl"], setup["dev"])
    trainer = WhisperKDTrainer(*args, tmp_path / "op", _small(on_policy_weight=0.5, **kw))
    # in cache mode only the teacher's decoder is kept
    assert not any(n.startswith("model.encoder") for n, _ in trainer.teacher.named_parameters())
    batch = _first_batch(trainer)
    losses = trainer.compute_loss(batch)
    ids, mask = batch["policy_ids"], batch["policy_mask"]
    lengths = (batch["labels"] != IGNORE_INDEX).sum(1)
    caps = lengths + lengths // 2  # decoded tokens distilled at most, per row
    model = trainer.acc.unwrap_model(trainer.student).eval()
    gen = model.generation_config
    eot = gen.eos_token_id
    ended = ((ids[:, 1:] == eot) & mask).any(1)  # rows that met <|endoftext|> before the cap
    if student == "loops":
        assert not ended.any() and torch.equal(mask.sum(1), caps)
        assert len(set(caps.tolist())) > 1  # each row has its own cap
    else:
        assert ended.all()
    enc = batch["encoder_states"].float()  # cached in fp16
    with torch.no_grad():
        whisper = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=enc),
                                 max_new_tokens=ids.shape[1])  # fmt: skip
    for row, (seq, m) in enumerate(zip(ids, mask, strict=True)):
        assert seq[:2].tolist() == [gen.decoder_start_token_id, gen.no_timestamps_token_id]
        targets = seq[1:][m].tolist()
        decoded = [t for t in whisper[row].tolist() if t < eot][: int(caps[row])]
        assert targets[: len(decoded)] == decoded
        assert targets[len(decoded) :] == ([eot] if ended[row] else [])
    assert not mask[:, 0].any()  # the prompt is not the student's
    ids = ids[:, :-1]
    with torch.no_grad():
        s = model(encoder_outputs=(enc,), decoder_input_ids=ids).logits
        t = trainer.teacher(encoder_outputs=(enc,), decoder_input_ids=ids).logits
    expected = kd_loss(s, t, mask, temperature=1.0)
    assert float(expected) > 0.01  # the student is far from its teacher here
    torch.testing.assert_close(losses["on_policy"], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses["loss"].detach(),
                               0.8 * losses["ce"] + losses["kd"] + 0.5 * expected)  # fmt: skip
    plain = WhisperKDTrainer(*args, tmp_path / "plain", _small(**kw))
    ref = plain.compute_loss(_first_batch(plain))
    for k in ("ce", "kd"):
        torch.testing.assert_close(losses[k], ref[k], rtol=1e-5, atol=1e-6)


def test_on_policy_kd_is_the_same_in_every_teacher_mode(setup, tmp_path):
    """The student's decode and the teacher's targets on it do not depend on where the encoder
    states come from: online and shared_encoder agree to the rounding, the fp16 cache nearly."""
    logs = {}
    for mode in ("online", "shared_encoder", "cache"):
        out = tmp_path / mode
        cache = str(setup["pl"] / "cache") if mode == "cache" else None
        train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["dev"], out,
                      _small(teacher_mode=mode, cache_dir=cache, temperature=1.0,
                             on_policy_weight=1.0, max_steps=1, eval_steps=1,
                             save_steps=1))  # fmt: skip
        with open(out / "train_log.csv") as f:
            row = next(csv.DictReader(f))
        logs[mode] = (float(row["ce"]), float(row["on_policy"]))
    assert logs["online"][1] > 0.01
    np.testing.assert_allclose(logs["shared_encoder"], logs["online"], rtol=1e-5)
    np.testing.assert_allclose(logs["cache"], logs["online"], rtol=1e-2)


def test_on_policy_sampling_is_seeded(setup, looping_student, tmp_path):
    """Sampled decodes (on_policy_temperature > 0) differ from the greedy loop and are the same
    in two runs of one seed."""
    from speechdistill.train.whisper_kd import WhisperKDTrainer

    kw = dict(teacher_mode="cache", cache_dir=str(setup["pl"] / "cache"), temperature=1.0,
              batch_size=3, on_policy_weight=1.0)  # fmt: skip
    args = (looping_student, setup["teacher"], setup["pl"], setup["dev"])
    decodes = {}
    for name, temperature in (("greedy", 0.0), ("sampled", 1.0), ("sampled_again", 1.0)):
        trainer = WhisperKDTrainer(*args, tmp_path / name,
                                   _small(on_policy_temperature=temperature, **kw))  # fmt: skip
        batch = _first_batch(trainer)
        decodes[name] = batch["policy_ids"][:, 1:][batch["policy_mask"]].tolist()
    assert decodes["sampled"] == decodes["sampled_again"]
    assert decodes["sampled"] != decodes["greedy"]
    assert len(set(decodes["sampled"])) > 2 * len(set(decodes["greedy"]))  # not one loop
