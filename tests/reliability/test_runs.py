"""Long jobs that neither truncate, nor resume into a different run, nor run twice: audio longer
than the teacher's window skipped and counted (never a truncated label), training resumed only
with its own settings (``--force`` starts over), a run lock per output directory, poisoned
checkpoint files and lost RNG states on resume. Tiny random models, generated audio."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechdistill.pseudo_label import HFLabeler, PseudoLabelConfig, pseudo_label
from speechdistill.train.config import HubertTrainConfig
from speechdistill.train.hubert_kd import train_hubert

# ------------------------------------------------------------------------------------------
# pseudo-labelling: audio longer than the 30 s window


def _clips_dir(root: Path, seconds: dict[str, float]) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    wav, spk = [], []
    for utt, dur in sorted(seconds.items()):
        path = root / f"{utt}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(16000 * dur))).astype(np.float32), 16000)
        wav.append(f"{utt} {path}\n")
        spk.append(f"{utt} {utt.split('-')[0]}\n")
    (root / "wav.scp").write_text("".join(wav))
    (root / "utt2spk").write_text("".join(spk))
    return root


@pytest.fixture(scope="module")
def long_clip_data(tmp_path_factory):
    from speechdistill.testing import english_tokenizer, save_random_whisper

    root = tmp_path_factory.mktemp("long")
    teacher = save_random_whisper(root / "teacher", english_tokenizer(), multilingual=False,
                                  max_source_positions=1500)  # fmt: skip
    data = _clips_dir(root / "data", {"a-short": 1.0, "a-mid": 2.0, "b-long": 31.0})
    return teacher, data


BACKENDS = ["hf", pytest.param("ct2", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("ctranslate2") is None, reason="no ctranslate2"))]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_audio_longer_than_the_window_is_skipped_and_counted(
    backend, long_clip_data, tmp_path, caplog
):
    teacher, data = long_clip_data
    extra = {"dtype": "float32"} if backend == "ct2" else {"cache_encoder": True}
    config = PseudoLabelConfig(batch_size=2, max_new_tokens=4, backend=backend, **extra)
    out = tmp_path / "pl"
    with caplog.at_level(logging.WARNING):
        summary = pseudo_label(teacher, data, out, config)
    line = (
        "skipped 1 utterances longer than 30 s (e.g. b-long, 31.0 s); label them with "
        "packing/long-form or segment them"
    )
    assert line in caplog.text
    labelled = dict(x.split(" ", 1) for x in (out / "text.teacher").read_text().splitlines())
    assert set(labelled) == {"a-mid", "a-short"}  # no truncated label of b-long downstream
    assert "b-long" not in (out / "utt2dur").read_text()
    assert "b-long longer than 30 s (31.0 s)" in (out / "bad_utts").read_text()
    report = json.loads((out / "pseudo_label.json").read_text())
    assert (summary.num_too_long, report["num_too_long"], report["num_utts"]) == (1, 1, 2)
    if backend == "hf":  # the encoder cache holds the labelled utterances only
        index = json.loads((out / "cache" / "index.json").read_text())
        assert "b-long" not in json.dumps(index)
    # the same run resumes (the skip is part of its plan); another limit is another run
    assert pseudo_label(teacher, data, out, config).num_too_long == 1
    config.max_duration = 1.5
    with pytest.raises(ValueError, match="other settings"):
        pseudo_label(teacher, data, out, config)
    short = pseudo_label(teacher, data, tmp_path / "pl15", config)
    assert (short.num_utts, short.num_too_long) == (1, 2)
    with pytest.raises(ValueError, match=r"must be in \(0, 30\]"):
        pseudo_label(teacher, data, tmp_path / "pl60", PseudoLabelConfig(max_duration=60))


def test_a_labeler_refuses_audio_it_would_truncate(long_clip_data):
    teacher, _ = long_clip_data
    labeler = HFLabeler.from_pretrained(teacher, PseudoLabelConfig(max_new_tokens=2))
    audio = np.zeros(16000 * 31, dtype=np.float32)
    with pytest.raises(ValueError, match=r"^x: 31\.0 s is longer than the teacher's 30 s window"):
        labeler.label(["x"], [audio])


# ------------------------------------------------------------------------------------------
# training: resume only the same run


def _small(**kw) -> HubertTrainConfig:
    base = dict(max_steps=2, batch_size=2, eval_steps=2, save_steps=2, log_steps=1,
                warmup_steps=1, eval_batch_size=2, target_layers="2,4", lr=1e-3, seed=1)  # fmt: skip
    return HubertTrainConfig(**{**base, **kw})


def _train(hubert_data, out: Path, config: HubertTrainConfig, **kw):
    return train_hubert(hubert_data["teacher"], hubert_data["train"], hubert_data["dev"], out,
                        config, **kw)  # fmt: skip


def test_resume_with_other_settings_is_refused_and_force_starts_over(hubert_data, tmp_path):
    out = tmp_path / "kd"
    with pytest.raises(ValueError, match="fewer than one batch"):
        _train(hubert_data, out, _small(batch_size=100))  # a failed start binds nothing
    _train(hubert_data, out, _small())
    model = (out / "model.safetensors").read_bytes()
    record = (out / "train_config.yaml").read_text()
    with pytest.raises(ValueError) as err:
        _train(hubert_data, out, _small(lr=3e-4, seed=2))
    assert str(err.value) == (
        f"{out}: was trained with lr=0.001, seed=1; now lr=0.0003, seed=2: use --force to "
        "start over, or another --out"
    )
    assert (out / "train_config.yaml").read_text() == record  # the old run's settings stay
    assert (out / "model.safetensors").read_bytes() == model
    # other data is another run (its content counts, not its path)
    moved = shutil.copytree(hubert_data["train"], tmp_path / "train_copy")
    same = {**hubert_data, "train": moved}
    assert _train(same, out, _small())["steps"] == 2
    text = (moved / "text").read_text().splitlines()
    text[0] += " extra"  # the same utterances, another transcript
    (moved / "text").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"was trained with train .*; now another train \("):
        _train(same, out, _small())
    # extending max_steps under a linear schedule would change the steps taken: refused
    with pytest.raises(ValueError, match=r"max_steps=2; now max_steps=4"):
        _train(hubert_data, out, _small(max_steps=4))
    # options that do not change the result may differ
    assert _train(hubert_data, out, _small(log_steps=2, keep_checkpoints=1))["steps"] == 2
    # --force removes the run's own files (not the user's) and trains with the new settings
    (out / "NOTES.txt").write_text("mine")
    summary = _train(hubert_data, out, _small(lr=3e-4, seed=2), force=True)
    assert (
        summary["config"]["lr"] == 3e-4 and "lr: 0.0003" in (out / "train_config.yaml").read_text()
    )
    assert (out / "NOTES.txt").read_text() == "mine"
    assert json.loads((out / "train_run.json").read_text())["config"]["seed"] == 2


def test_a_constant_schedule_run_may_be_extended(hubert_data, tmp_path):
    out = tmp_path / "kd"
    _train(hubert_data, out, _small(lr_schedule="constant"))
    summary = _train(hubert_data, out, _small(lr_schedule="constant", max_steps=4))
    assert summary["steps"] == 4 and [e["step"] for e in summary["evals"]] == [2, 4]
    assert json.loads((out / "train_run.json").read_text())["config"]["max_steps"] == 4


# ------------------------------------------------------------------------------------------
# one run per output directory


def test_a_second_run_on_a_locked_directory_fails_at_once(long_clip_data, tmp_path):
    teacher, data = long_clip_data
    out = tmp_path / "pl"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from speechdistill.utils import run_lock
            with run_lock({str(out)!r}):
                print("locked", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError) as err:
            pseudo_label(teacher, data, out, PseudoLabelConfig(max_new_tokens=2))
        assert str(err.value).startswith(
            f"{out}: another speechdistill run (pid {holder.pid}, started "
        )
        assert str(err.value).endswith(") is using this directory")
        assert not (out / ".pseudo_label").exists()  # it did no work
    finally:
        holder.kill()  # as kill -9: the kernel releases the lock, the stale file stays
        holder.wait()
    assert (out / ".speechdistill.lock").is_file()
    summary = pseudo_label(teacher, data, out, PseudoLabelConfig(max_new_tokens=2))
    assert summary.num_utts == 2 and not (out / ".speechdistill.lock").exists()


# ------------------------------------------------------------------------------------------
# poisoned checkpoints, lost RNG states


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _checkpoint(out: Path) -> Path:
    return sorted((out / "checkpoints").glob("step_*"))[-1]


@pytest.mark.parametrize("poison", ["pickle", "garbage"])
def test_a_poisoned_optimizer_state_is_refused_naming_the_file(
    poison, hubert_data, tmp_path, capfd
):
    out = tmp_path / "kd"
    _train(hubert_data, out, _small(max_steps=4))
    bad = _checkpoint(out) / "optimizer.bin"
    if poison == "pickle":
        import torch

        torch.save({"state": _Evil()}, bad)
    else:
        bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError) as err:
        _train(hubert_data, out, _small(max_steps=4))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{bad}: not a valid optimizer state (")
    assert message.endswith("); remove that checkpoint to resume from an earlier one, or --force")
    assert "pwned" not in capfd.readouterr().out  # never unpickled unsafely


def test_lost_rng_states_warn_that_the_resume_is_not_exact(hubert_data, tmp_path, caplog):
    out = tmp_path / "kd"
    _train(hubert_data, out, _small())
    (_checkpoint(out) / "random_states_0.pkl").write_bytes(pickle.dumps(_Evil()))
    with caplog.at_level(logging.WARNING):
        _train(hubert_data, out, _small())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "random_states_0.pkl: the RNG states could not be restored" in r.getMessage()
        and "will not be bit-exact" in r.getMessage()
        for r in warnings
    )


def test_a_setting_added_since_the_record_resumes_at_its_default(hubert_data, tmp_path):
    """A run recorded before a setting existed resumes when the setting is at its default, and
    is refused when it is not."""
    out = tmp_path / "kd"
    _train(hubert_data, out, _small())
    path = out / "train_run.json"
    record = json.loads(path.read_text())
    assert "defaults" not in record
    del record["config"]["target_norm"]  # as written by a version without the setting
    path.write_text(json.dumps(record))
    assert _train(hubert_data, out, _small())["steps"] == 2
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"was trained with target_norm=null; now target_norm="):
        _train(hubert_data, out, _small(target_norm="utterance"))
