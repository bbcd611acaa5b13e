"""Reliability of the command line: every failure a one-line error naming its culprit, every bad
option refused before any work (the CLI's argparse types, the recipes' option checks)."""

from __future__ import annotations

import errno
import io
import logging
import os
import pickle
import subprocess

import numpy as np
import pytest
import soundfile as sf
import yaml
from hubert_helpers import noise_data_dir
from recipe_helpers import copy_egs, run_recipe
from safetensors import SafetensorError

import speechdistill.cli.compare
from speechdistill.cli import main

ENOSPC_TEXT = os.strerror(errno.ENOSPC)


def error_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def usage_error(capsys, argv: list[str]) -> str:
    """The one-line argparse error of ``speechdistill argv`` (exit status 2)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(lines) == 1
    return lines[0]


class _FullDisk(io.FileIO):
    """A file on a full disk: every write fails with ENOSPC (no file name, as the kernel says)."""

    def write(self, data):
        raise OSError(errno.ENOSPC, ENOSPC_TEXT)


@pytest.fixture
def full_disk(monkeypatch):
    """Binary files opened by speechdistill's atomic writes land on a full disk."""
    real = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        if "b" in mode and "w" in mode:
            return _FullDisk(fd, "wb")
        return real(fd, mode, *args, **kwargs)

    monkeypatch.setattr("speechdistill.utils.os.fdopen", fdopen)


# ---- 1. a full disk, and library exceptions -------------------------------------------------------


def test_format_on_a_full_disk_is_one_error_naming_the_wav(tmp_path, full_disk, caplog):
    """soundfile asserted on the short write (a traceback); now an OSError naming the file."""
    src = noise_data_dir(tmp_path / "src", 2)
    assert main(["format", str(src), str(tmp_path / "dst")]) == 1
    (line,) = error_lines(caplog)
    assert f"[Errno {errno.ENOSPC}] {ENOSPC_TEXT}: '" in line
    assert str(tmp_path / "dst" / "wav") in line and line.rstrip("'").endswith(".wav")
    left = {p.name for p in (tmp_path / "dst" / "wav").iterdir()}
    assert left <= {"format_manifest.json"}  # no half-written WAV, no temp file


def test_write_wav_keeps_errno_and_names_the_file(tmp_path, full_disk):
    from speechdistill.audio import write_wav

    with pytest.raises(OSError) as info:
        write_wav(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32))
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(tmp_path / "a.wav")


def test_encoder_cache_on_a_full_disk_is_one_error_naming_the_shard(tmp_path, full_disk, caplog):
    """safetensors raised its own SafetensorError (a traceback); now an OSError naming the shard."""
    from hubert_helpers import tiny_whisper_teacher

    data = noise_data_dir(tmp_path / "data", 2)
    teacher = tiny_whisper_teacher(tmp_path / "teacher")
    out = tmp_path / "pl"
    argv = ["pseudo-label", "--teacher", str(teacher), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--cache-encoder", "--max-new-tokens", "4"]) == 1
    (line,) = error_lines(caplog)
    assert f"[Errno {errno.ENOSPC}] {ENOSPC_TEXT}: '{out / 'cache' / 'encoder'}" in line
    assert ".safetensors'" in line
    assert not list((out / "cache" / "encoder").glob("*"))


def test_save_shard_keeps_errno(tmp_path, full_disk):
    import torch

    from speechdistill.cache import save_shard

    path = tmp_path / "cache" / "encoder" / "000000.safetensors"
    with pytest.raises(OSError) as info:
        save_shard(path, {"u": torch.zeros(2, 3)}, {"k": "v"})
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(path))


def test_garbage_cache_shard_is_an_error_naming_it(tmp_path):
    import torch

    from speechdistill.cache import CacheIndex, CacheReader, save_shard

    cache = tmp_path / "cache"
    save_shard(cache / "encoder" / "000000.safetensors", {"u1": torch.zeros(2, 3)}, {})
    CacheIndex({"id": "t"}, {}, {"encoder": {"u1": "encoder/000000.safetensors"}}).save(cache)
    (cache / "encoder" / "000000.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match=r"000000\.safetensors: not a readable safetensors file"):
        CacheReader(cache).encoder("u1")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_format_onto_a_real_full_tmpfs(tmp_path, caplog):
    """A real 256 KiB tmpfs: format fails with one line naming a WAV under it, errno ENOSPC."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        src = tmp_path / "src"
        wavs, utts = src / "wav", [f"s1-u{i:02d}" for i in range(12)]
        wavs.mkdir(parents=True)
        for u in utts:  # 12 x 1 s of 16-bit audio: 384 KB, more than the disk holds
            sf.write(wavs / f"{u}.wav", np.full(16000, 0.1, dtype=np.float32), 16000)
        (src / "wav.scp").write_text("".join(f"{u} {wavs / u}.wav\n" for u in utts))
        (src / "utt2spk").write_text("".join(f"{u} s1\n" for u in utts))
        (src / "spk2utt").write_text("s1 " + " ".join(utts) + "\n")
        assert main(["format", str(src), str(mnt / "dst")]) == 1
        (line,) = error_lines(caplog)
        assert f"[Errno {errno.ENOSPC}] {ENOSPC_TEXT}: '{mnt / 'dst'}" in line
        assert not [p for p in (mnt / "dst" / "wav").iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize(
    "error",
    [
        SafetensorError("Error while deserializing header: HeaderTooLarge"),
        pickle.UnpicklingError("invalid load key, '\\xff'."),
        sf.SoundFileError("Error opening 'x.flac': Format not recognised."),
        yaml.YAMLError("mapping values are not allowed here"),
        ValueError("two\nlines"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_library_errors_are_one_line(tmp_path, monkeypatch, caplog, error):
    def fail(args):
        raise error

    monkeypatch.setattr(speechdistill.cli.compare, "run_compare", fail)
    ref = tmp_path / "ref"
    ref.write_text("u1 a\n")
    assert main(["compare", "--ref", str(ref), "--hyp-a", str(ref), "--hyp-b", str(ref)]) == 1
    (line,) = error_lines(caplog)
    assert "\n" not in line
    assert str(error).splitlines()[0] in line
    if not isinstance(error, ValueError):
        assert line.startswith(f"{type(error).__name__}: ")


@pytest.mark.parametrize("error", [AssertionError("bug"), TypeError("bug"), KeyError("bug")])
def test_bugs_keep_their_traceback(tmp_path, monkeypatch, error):
    def fail(args):
        raise error

    monkeypatch.setattr(speechdistill.cli.compare, "run_compare", fail)
    ref = tmp_path / "ref"
    ref.write_text("u1 a\n")
    with pytest.raises(type(error)):
        main(["compare", "--ref", str(ref), "--hyp-a", str(ref), "--hyp-b", str(ref)])


def test_verbose_shows_the_traceback_of_a_user_error(tmp_path, monkeypatch):
    def fail(args):
        raise SafetensorError("HeaderTooLarge")

    monkeypatch.setattr(speechdistill.cli.compare, "run_compare", fail)
    ref = tmp_path / "ref"
    ref.write_text("u1 a\n")
    with pytest.raises(SafetensorError):
        main(["-v", "compare", "--ref", str(ref), "--hyp-a", str(ref), "--hyp-b", str(ref)])


# ---- 2. model paths that do not exist ------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    noise_data_dir(tmp_path / "data", 1)
    (tmp_path / "exp").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["teacher", "prepare", "./nope", "out"], "./nope: no such directory (and not a Hub repo id)"),
        (["teacher", "prepare", "exp/missing", "out"], "exp/missing: no such directory (and not a Hub"),
        (["hubert-teacher", "~/nope/x", "out"], "~/nope/x: no such directory (and not a Hub repo id)"),
        (["decode", "--model", "exp/missing", "--data", "data", "--out", "o"], "exp/missing: no such"),
        (["init-student", "--teacher", "exp/missing", "--out", "o"], "exp/missing: no such model directory"),
        (["pseudo-label", "--teacher", "./nope", "--data", "data", "--out", "o"], "./nope: no such model directory"),
        (["speed", "--model", "a/b/c", "--data", "data", "--out", "o"], "a/b/c: no such directory (and not a Hub"),
        (["publish", "--model", "exp/student"], "exp/student: no such model directory"),
        (["train", "--student", "exp/x", "--teacher", "exp", "--train", "data", "--dev", "data",
          "--out", "o"], "exp/x: no such model directory"),
        (["decode", "--model", "data/wav.scp", "--data", "data", "--out", "o"], "data/wav.scp: not a directory"),
        (["teacher", "prepare", "org/name", "out"], "org/name: no such directory, and not in the local Hub cache"),
        (["hubert-teacher", "org/name@refs/pr/2", "out"], "org/name@refs/pr/2: no such directory, and not in the local Hub cache"),
    ],
)  # fmt: skip
def test_missing_model_path_is_named(in_tmp, capsys, monkeypatch, argv, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = usage_error(capsys, argv)
    assert message in line
    assert "Repo id must" not in line and "huggingface.co" not in line


# ---- 3. numeric options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["score", "--ref", "r", "--hyp", "h", "--out", "o", "--bootstrap", "-5"],
         "argument --bootstrap: expected an integer >= 0, got '-5'"),
        (["compare", "--ref", "r", "--hyp-a", "a", "--hyp-b", "b", "--bootstrap", "x"],
         "argument --bootstrap: expected an integer, got 'x'"),
        (["decode", "--out", "o", "--num-beams", "0"], "argument --num-beams: expected an integer >= 1"),
        (["decode", "--out", "o", "--batch-size", "-1"], "argument --batch-size: expected an integer >= 1"),
        (["decode", "--long-form", "--out", "o", "--fallback-temperatures", "0.4,0.2"],
         "argument --fallback-temperatures: expected increasing numbers >= 0 separated by commas, got '0.4,0.2'"),
        (["decode", "--long-form", "--out", "o", "--no-speech-threshold", "x"],
         "argument --no-speech-threshold: expected a number or 'none', got 'x'"),
        (["pseudo-label", "--teacher", "exp", "--data", "data", "--out", "o", "--num-jobs", "0"],
         "argument --num-jobs: expected an integer >= 1"),
        (["pseudo-label", "--teacher", "exp", "--data", "data", "--out", "o",
          "--encoder-window", "nan"], "argument --encoder-window: expected a finite number"),
        (["format", "data", "o", "--max-duration", "0"], "argument --max-duration: expected a number > 0"),
        (["filter", "--data", "data", "--out", "o", "--bad-wer", "1.5"],
         "argument --bad-wer: expected a number in [0, 1], got '1.5'"),
        (["data", "split", "data", "0"], "argument n: expected an integer >= 1, got '0'"),
        (["data", "subset", "--random", "-3", "data", "o"], "argument --random: expected an integer >= 1"),
        (["speed", "--model", "exp", "--data", "data", "--out", "o", "--max-utts", "0"],
         "argument --max-utts: expected an integer >= 1"),
        (["train", "--student", "hubert", "--teacher", "exp", "--train", "data", "--dev", "data",
          "--out", "o", "--max-steps", "0"], "argument --max-steps: expected a number >= 1, got 0"),
        (["train", "--student", "exp", "--teacher", "exp", "--train", "data", "--dev", "data",
          "--out", "o", "--timestamp-prob", "2"], "argument --timestamp-prob: expected a number in [0, 1]"),
        (["ctc-finetune", "--model", "exp", "--train", "data", "--dev", "data", "--out", "o",
          "--lr", "0"], "argument --lr: expected a number > 0, got 0.0"),
    ],
)  # fmt: skip
def test_bad_numbers_are_refused_naming_the_option(in_tmp, capsys, argv, message):
    assert message in usage_error(capsys, argv)


def test_bad_numbers_in_a_training_yaml_are_refused(tmp_path):
    from speechdistill.train.config import TrainConfig

    cfg = tmp_path / "train.yaml"
    cfg.write_text("max_steps: 100\nbatch_size: 0\n")
    with pytest.raises(
        ValueError, match=r"^training option batch_size: expected a number >= 1, got 0$"
    ):
        TrainConfig.from_sources(cfg, {})


# ---- 4. recipes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def egs(tmp_path_factory):
    return copy_egs("mini_en", tmp_path_factory.mktemp("egs"))


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("./run.sh", ["--nj", "0"], "--nj '0': expected an integer >= 1"),
        ("./run.sh", ["--nj", "two"], "--nj 'two': expected an integer >= 1"),
        ("./run.sh", ["--nj", "-2"], "--nj '-2': expected an integer >= 1"),
        ("./run.sh", ["--stage", "99"], "--stage 99: no such stage (stages 1 to 10"),
        ("./run.sh", ["--stage", "99", "--stop_stage", "98"], "--stage 99: no such stage"),
        ("./run.sh", ["--stage", "9", "--stop_stage", "8"], "--stop_stage 8 is before --stage 9"),
        ("./run.sh", ["--stage", "score", "--stop_stage", "train"], "--stop_stage train is before --stage score"),
        ("./run.sh", ["--decode_batch_size", "0"], "--decode_batch_size '0': expected an integer >= 1"),
        ("./run_hubert.sh", ["--nj", "0"], "--nj '0': expected an integer >= 1"),
        ("./run_hubert.sh", ["--stage", "8"], "--stage 8: no such stage (stages 1 to 7"),
        ("./run_hubert.sh", ["--stage", "7", "--stop_stage", "3"], "--stop_stage 3 is before --stage 7"),
    ],
)  # fmt: skip
def test_recipe_refuses_bad_stage_and_nj_before_any_work(egs, script, args, message):
    proc = run_recipe(egs, *args, script=script, timeout=60)
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (egs / "exp").exists() and not (egs / "data").exists()


# ---- every command: missing, file-not-dir and empty inputs; an output that is a file ------------

# (argv with DATA for the data dir to read and OUT for the path to write, the option named)
COMMANDS = {
    "format": (["format", "DATA", "OUT"], "src", "dst"),
    "pseudo-label": (["pseudo-label", "--teacher", "M", "--data", "DATA", "--out", "OUT"], "--data", "--out"),
    "filter": (["filter", "--data", "DATA", "--out", "OUT"], "--data", "--out"),
    "train": (["train", "--student", "M", "--teacher", "M", "--train", "DATA", "--dev", "DATA",
               "--out", "OUT"], "--train", "--out"),
    "ctc-finetune": (["ctc-finetune", "--model", "M", "--train", "DATA", "--dev", "DATA", "--out",
                      "OUT"], "--train", "--out"),
    "decode": (["decode", "--model", "M", "--data", "DATA", "--out", "OUT"], "--data", "--out"),
    "decode --long-form": (["decode", "--long-form", "--model", "M", "--data", "DATA", "--out", "OUT"],
                           "--data", "--out"),
    "ctc-decode": (["ctc-decode", "--model", "M", "--data", "DATA", "--out", "OUT"], "--data", "--out"),
    "speed": (["speed", "--model", "M", "--data", "DATA", "--out", "OUTFILE"], "--data", "--out"),
    "data fix": (["data", "fix", "DATA"], "dir", None),
    "data subset": (["data", "subset", "--first", "1", "DATA", "OUT"], "src", "dst"),
    "data copy": (["data", "copy", "DATA", "OUT"], "src", "dst"),
    "data combine": (["data", "combine", "OUT", "DATA"], "src", "dst"),
    "data split": (["data", "split", "DATA", "2"], "dir", None),
    "data utt2dur": (["data", "utt2dur", "DATA"], "DIR", None),
    "data to-hf": (["data", "to-hf", "DATA", "OUT"], "DIR", "OUT"),
    "data reco-text": (["data", "reco-text", "DATA", "OUTFILE"], "dir", "out"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("command", "case"),
    [
        (command, case)
        for command in sorted(COMMANDS)
        for case in ("missing", "a file", "empty", "output is a file")
        if case != "output is a file" or COMMANDS[command][2] is not None
    ],
)
def test_every_command_checks_its_paths(tmp_path, capsys, command, case):
    argv, data_opt, out_opt = COMMANDS[command]
    model = tmp_path / "model"
    model.mkdir()
    good = noise_data_dir(tmp_path / "good", 1)
    (tmp_path / "file").write_text("not a data dir\n")
    (tmp_path / "empty").mkdir()
    data = {"missing": tmp_path / "nope", "a file": tmp_path / "file", "empty": tmp_path / "empty"}
    if case == "output is a file":
        data_path, out = good, tmp_path / "file"
        if "OUTFILE" in argv:
            out = tmp_path / "empty"  # speed writes a file: a directory is the wrong kind
    else:
        data_path, out = data[case], tmp_path / "out"
    subst = {"DATA": str(data_path), "OUT": str(out), "OUTFILE": str(out), "M": str(model)}
    line = usage_error(capsys, [subst.get(a, a) for a in argv])
    if case == "output is a file":
        expected = "is a directory" if "OUTFILE" in argv else "exists and is not a directory"
        assert f"argument {out_opt}: {out}: {expected}" in line
        assert (tmp_path / "file").read_text() == "not a data dir\n"  # not replaced
    else:
        expected = {"missing": "no such data directory", "a file": "not a directory",
                    "empty": "empty directory (not a Kaldi data dir)"}[case]  # fmt: skip
        assert f"argument {data_opt}: {data_path}: {expected}" in line
    assert not (tmp_path / "out").exists()
