"""Never remove what the toolkit did not write: every command that replaces or writes over a
directory refuses a non-empty one that is not its own earlier output (ownership marker), replaces
its own output, and leaves the previous one whole when it fails."""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from speechdistill.cli import main
from speechdistill.init_student import init_student
from speechdistill.scoring import score, write_score_dir
from speechdistill.testing import english_tokenizer, save_random_whisper
from speechdistill.utils import OWNER_FILE, check_owned, dir_owner, replace_dir

REFS = {"u1": "the cat sat", "u2": "a dog ran"}


def _user_folder(path: Path) -> dict[str, bytes]:
    """A user's folder: a README.md, notes and a data/ subfolder; returns its files' bytes."""
    (path / "data").mkdir(parents=True)
    (path / "README.md").write_text("# my project\n")
    (path / "notes.txt").write_text("do not lose me\n")
    (path / "data" / "table.csv").write_text("a,b\n1,2\n")
    return _snapshot(path)


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> SimpleNamespace:
    """A random tiny teacher and student dir with scores, as publish reads them."""
    root = tmp_path_factory.mktemp("exp")
    teacher = save_random_whisper(root / "teacher", english_tokenizer(), multilingual=False)
    student = root / "student"
    init_student(teacher, student, decoder_layers=1)
    result = score(REFS, {"u1": "the cat sat", "u2": "a dog"}, model="student", dataset="test")
    write_score_dir(result, student / "decode_test" / "score_wer")
    return SimpleNamespace(root=root, teacher=teacher, student=student)


def test_publish_refuses_a_users_folder_and_replaces_its_own(exp, tmp_path, caplog):
    out = tmp_path / "mine"
    before = _user_folder(out)
    argv = ["publish", "--model", str(exp.student), "--out", str(out), "--dry-run"]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 1
    assert _snapshot(out) == before  # README.md, notes.txt, data/ all still there
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"{out}: not empty and not written by `speechdistill publish` (no {OWNER_FILE}); "
        "not replacing it: choose another --out or remove it yourself"
    ]

    hub = tmp_path / "hub"
    assert main(["publish", "--model", str(exp.student), "--out", str(hub), "--dry-run"]) == 0
    assert dir_owner(hub) == "publish"
    first = (hub / "model.safetensors").read_bytes()
    (hub / "README.md").write_text("edited by hand\n")
    assert main(["publish", "--model", str(exp.student), "--out", str(hub), "--dry-run"]) == 0
    assert (hub / "README.md").read_text() != "edited by hand\n"  # its own output: replaced
    assert (hub / "model.safetensors").read_bytes() == first


def test_publish_failure_keeps_the_previous_folder(exp, tmp_path, monkeypatch):
    from speechdistill.publish import folder

    hub = tmp_path / "hub"
    folder.build_hub_folder(exp.student, hub)
    before = _snapshot(hub)

    def broken(*args, **kwargs):
        raise ValueError("verification failed")

    monkeypatch.setattr(folder, "verify_hub_folder", broken)
    with pytest.raises(ValueError, match="verification failed"):
        folder.build_hub_folder(exp.student, hub)
    assert _snapshot(hub) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]  # no temporary folder left


def test_publish_accepts_a_hub_folder_of_an_older_release(exp, tmp_path):
    from speechdistill.publish.folder import build_hub_folder

    hub = tmp_path / "hub"
    build_hub_folder(exp.student, hub)
    (hub / OWNER_FILE).unlink()  # older releases wrote no marker
    build_hub_folder(exp.student, hub)
    assert dir_owner(hub) == "publish"
    (hub / OWNER_FILE).unlink()
    (hub / "notes.txt").write_text("mine\n")  # not a hub folder's file: refused
    with pytest.raises(ValueError, match="not written by `speechdistill publish`"):
        build_hub_folder(exp.student, hub)
    assert (hub / "notes.txt").read_text() == "mine\n"


def test_export_ct2_force_replaces_only_its_own_export(exp, tmp_path):
    pytest.importorskip("ctranslate2")
    from speechdistill.whisper.ct2.binary import ConversionError
    from speechdistill.whisper.ct2.export import export_ct2

    out = tmp_path / "mine"
    before = _user_folder(out)
    with pytest.raises(ConversionError, match="exists and is not empty"):
        export_ct2(exp.teacher, out)
    with pytest.raises(ValueError, match=r"mine: not empty and not written by `speechdistill teac"):
        export_ct2(exp.teacher, out, force=True)  # ctranslate2's force would rmtree it
    assert _snapshot(out) == before

    ct2 = tmp_path / "ct2"
    export_ct2(exp.teacher, ct2)
    assert dir_owner(ct2) == "teacher export-ct2" and (ct2 / "model.bin").is_file()
    export_ct2(exp.teacher, ct2, quantization="int8", force=True)  # its own export: replaced
    assert (ct2 / "model.bin").is_file() and not list(tmp_path.glob(".ct2*"))


def test_converted_teacher_refuses_a_foreign_ct2_dir(exp, tmp_path):
    pytest.importorskip("ctranslate2")
    import shutil

    from speechdistill.whisper.ct2.runtime import converted_teacher

    teacher = tmp_path / "teacher"
    shutil.copytree(exp.teacher, teacher)
    before = _user_folder(teacher / "ct2-int8")
    with pytest.raises(ValueError, match=r"ct2-int8: not empty and not written by `speechdis"):
        converted_teacher(teacher, "int8")
    assert _snapshot(teacher / "ct2-int8") == before


def test_init_student_overwrite_refuses_a_users_model_dir(exp, tmp_path):
    out = tmp_path / "theirs"
    save_random_whisper(out, english_tokenizer(), multilingual=False)  # their own model
    before = _snapshot(out)
    with pytest.raises(ValueError, match=r"theirs: not empty and not written by `speechdistill i"):
        init_student(exp.teacher, out, decoder_layers=1, overwrite=True)
    assert _snapshot(out) == before

    own = tmp_path / "student"
    init_student(exp.teacher, own, decoder_layers=1)
    init_student(exp.teacher, own, decoder_layers=[0], overwrite=True)  # its own: replaced
    assert dir_owner(own) == "init-student"
    # another command's output is not init-student's either
    with pytest.raises(ValueError, match=r"written by `speechdistill init-student`, not `speechd"):
        from speechdistill.teachers.whisper import prepare_teacher

        prepare_teacher(str(exp.teacher), own)


def test_teacher_prepare_refuses_a_users_model_dir(exp, tmp_path):
    from speechdistill.teachers.whisper import prepare_teacher

    out = tmp_path / "theirs"
    save_random_whisper(out, english_tokenizer(), multilingual=False)
    before = _snapshot(out)
    with pytest.raises(ValueError, match=r"theirs: not empty and not written by `speechdistill t"):
        prepare_teacher(str(exp.teacher), out)
    assert _snapshot(out) == before
    own = tmp_path / "teacher"
    prepare_teacher(str(exp.teacher), own)
    (own / OWNER_FILE).unlink()  # an older release's teacher dir: it holds teacher.json
    (own / "teacher.json").write_text(json.dumps({"name": "old"}))
    prepare_teacher(str(exp.teacher), own)
    assert dir_owner(own) == "teacher prepare"


def test_train_out_and_best_dir(tmp_path):
    from speechdistill.train.common import AcceleratedTrainer

    trainer = AcceleratedTrainer.__new__(AcceleratedTrainer)
    trainer.out = tmp_path / "mine"
    before = _user_folder(trainer.out)
    with pytest.raises(ValueError, match=r"mine: not empty and not written by `speechdistill tra"):
        trainer._claim_out()
    assert _snapshot(trainer.out) == before

    trainer.out = tmp_path / "student"
    (trainer.out / "log").mkdir(parents=True)  # the recipe's job log comes first
    trainer._claim_out()
    assert dir_owner(trainer.out) == "train"

    def write(model, directory: Path) -> None:
        (directory / "config.json").write_text(json.dumps({"step": model}))

    trainer._write_model = write
    best = trainer.out / "best"
    trainer._save_model(1, best)
    trainer._save_model(2, best)  # its own best/: replaced
    assert json.loads((best / "config.json").read_text()) == {"step": 2}

    def crash(model, directory: Path) -> None:
        (directory / "config.json").write_text("half")
        raise OSError("disk full")

    trainer._write_model = crash
    with pytest.raises(OSError, match="disk full"):
        trainer._save_model(3, best)
    assert json.loads((best / "config.json").read_text()) == {"step": 2}  # previous best kept
    assert not [p for p in trainer.out.iterdir() if p.name.startswith(".best")]


def _data_dir(path: Path, n: int = 4) -> Path:
    path.mkdir(parents=True)
    utts = [f"spk1-u{i}" for i in range(n)]
    for u in utts:
        sf.write(path / f"{u}.wav", np.zeros(1600, dtype=np.float32), 16000)
    (path / "wav.scp").write_text("".join(f"{u} {path / u}.wav\n" for u in utts))
    (path / "text").write_text("".join(f"{u} hello\n" for u in utts))
    (path / "utt2spk").write_text("".join(f"{u} spk1\n" for u in utts))
    (path / "spk2utt").write_text("spk1 " + " ".join(utts) + "\n")
    return path


def test_split_refuses_a_foreign_split_dir(tmp_path):
    from speechdistill.datadir.ops import split

    data = _data_dir(tmp_path / "train")
    before = _user_folder(data / "split2")
    with pytest.raises(ValueError, match=r"split2: not empty and not written by `speechdistill d"):
        split(data, 2)
    assert _snapshot(data / "split2") == before

    parts = split(data, 3)
    assert dir_owner(data / "split3") == "data split"
    (data / "text").write_text("".join(f"spk1-u{i} bye\n" for i in range(4)))
    assert split(data, 3) == parts  # changed source: its own split replaced
    assert "bye" in (parts[0] / "text").read_text()


def test_save_to_hf_refuses_a_folder_with_other_files(tmp_path):
    pytest.importorskip("datasets")
    from speechdistill.datadir.hf import save_to_hf

    data = _data_dir(tmp_path / "train", n=2)
    out = tmp_path / "mine"
    before = _user_folder(out)
    (out / "dataset_info.json").write_text("{}")  # looked like a saved dataset before
    before["dataset_info.json"] = b"{}"
    with pytest.raises(ValueError, match=r"mine: not empty and not written by `speechdistill da"):
        save_to_hf(data, out)
    assert _snapshot(out) == before

    own = tmp_path / "hf"
    save_to_hf(data, own)
    save_to_hf(data, own)  # its own output: replaced
    assert dir_owner(own) == "data to-hf" and (own / "dataset_info.json").is_file()


def test_combined_cache_refuses_a_foreign_cache_dir(tmp_path):
    from speechdistill.cache import CacheIndex, combine_caches

    dst = tmp_path / "combined" / "cache"
    before = _user_folder(dst)
    index = CacheIndex({"name": "t"}, {}, {})
    with pytest.raises(ValueError, match=r"cache: not empty and not written by `speechdistill da"):
        combine_caches(dst, [], index)
    assert _snapshot(dst) == before
    own = tmp_path / "other" / "cache"
    combine_caches(own, [], index)
    combine_caches(own, [], index)  # its own: replaced
    assert dir_owner(own) == "data combine" and (own / "index.json").is_file()


def test_nurc_sp_keeps_a_foreign_partial_folder(tmp_path):
    from data_prep.nurc_sp import extract_archive

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("audio list\n")
    archive = tmp_path / "corpus.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(src / "a.txt", arcname="a.txt")
    dest = tmp_path / "extracted"
    partial = tmp_path / ".extracted.partial"
    before = _user_folder(partial)
    with pytest.raises(ValueError, match=r"extracted.partial: not empty and not written by"):
        extract_archive(archive, dest)
    assert _snapshot(partial) == before

    partial_own = tmp_path / ".again.partial"  # one left by an interrupted extraction
    partial_own.mkdir()
    (partial_own / "half").write_text("x")
    (partial_own / OWNER_FILE).write_text(json.dumps({"owner": "data_prep.nurc_sp extract"}))
    assert (extract_archive(archive, tmp_path / "again") / "a.txt").is_file()
    assert not partial_own.exists()


def test_replace_dir_restores_the_previous_dir_when_the_move_fails(tmp_path, monkeypatch):
    import os

    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("old")
    (out / OWNER_FILE).write_text(json.dumps({"owner": "x"}))
    new = tmp_path / "new"
    new.mkdir()
    (new / "a").write_text("new")

    def fail(src, dst):
        raise OSError("no space")

    monkeypatch.setattr(os, "rename", fail)
    with pytest.raises(OSError, match="no space"):
        replace_dir(new, out, "x")
    assert (out / "a").read_text() == "old"
    check_owned(out, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out"]


def test_decode_refuses_to_write_into_a_data_dir(exp, tmp_path, caplog):
    data = _data_dir(tmp_path / "test", n=2)
    before = _snapshot(data)
    argv = ["decode", "--model", str(exp.student), "--data", str(data), "--out", str(data)]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 1
        assert main(["decode", "--out", str(data), "--merge", str(tmp_path / "part1")]) == 1
    assert _snapshot(data) == before  # the references in text are intact
    errors = {r.getMessage() for r in caplog.records if r.levelno == logging.ERROR}
    assert errors == {
        f"{data}: holds wav.scp, a data dir whose text the hypotheses would replace; "
        "choose another --out"
    }
