"""data_prep.librispeech and egs/librispeech stage 1, on a tiny corpus in LibriSpeech's layout.

The fixture is what the openslr.org/12 archives extract to: ``LibriSpeech/SPEAKERS.TXT`` and
``LibriSpeech/<part>/<reader>/<chapter>/{<reader>-<chapter>-<n>.flac,<reader>-<chapter>.trans.txt}``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from recipe_helpers import REPO, copy_egs, run_recipe

from data_prep.librispeech import main, parse_combine, prepare_librispeech
from speechdistill.audio import AudioReader
from speechdistill.datadir import DataDir, validate

SPEAKERS_TXT = """\
; LibriSpeech speakers (a shortened copy of the corpus' table)
;ID  |SEX| SUBSET           |MINUTES| NAME
103  | F | train-clean-100  | 25.09 | Carla
116  | M | dev-other        | 10.20 | Steve
1034 | M | train-clean-100  | 25.12 | Kevin
1089 | M | test-clean       | 10.15 | Bruce
1272 | M | dev-clean        | 10.04 | John
1688 | M | test-other       | 10.01 | Tom
19   | F | train-other-500  | 30.02 | Kara
"""

# part -> reader -> chapter -> [(n, transcript, seconds or None for no FLAC)]
CORPUS = {
    "train-clean-100": {
        "103": {
            "1240": [
                (0, "CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED", 0.5),
                (1, "THAT HAD ITS SOURCE AWAY BACK", 0.75),
                (3, "THIS LINE HAS NO AUDIO", None),
            ],
            "1241": [(0, "ANOTHER CHAPTER", 0.25)],
        },
        "1034": {"121119": [(0, "HELLO  WORLD", 0.5)]},
    },
    "train-other-500": {"19": {"198": [(0, "NORTHANGER ABBEY", 0.5)]}},
    "dev-clean": {"1272": {"128104": [(0, "MISTER QUILTER", 0.5), (1, "NOR IS MISTER", 0.25)]}},
    "dev-other": {"116": {"288045": [(0, "AS I APPROACHED THE CITY", 0.5)]}},
    "test-clean": {"1089": {"134686": [(0, "HE HOPED THERE WOULD BE STEW", 0.5)]}},
    "test-other": {"1688": {"142285": [(0, "THERE IS NO DANGER", 0.25)]}},
}


def flac(path: Path, seconds: float) -> None:
    t = np.arange(round(seconds * 16000)) / 16000
    sf.write(path, (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000, format="FLAC")


def build_corpus(top: Path) -> Path:
    root = top / "LibriSpeech"
    root.mkdir(parents=True)
    (root / "SPEAKERS.TXT").write_text(SPEAKERS_TXT, encoding="utf-8")
    for part, readers in CORPUS.items():
        for reader, chapters in readers.items():
            for chapter, utts in chapters.items():
                d = root / part / reader / chapter
                d.mkdir(parents=True)
                lines = []
                for n, words, seconds in utts:
                    utt = f"{reader}-{chapter}-{n:04d}"
                    lines.append(f"{utt} {words}")
                    if seconds is not None:
                        flac(d / f"{utt}.flac", seconds)
                (d / f"{reader}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    # bad input in train-clean-100/103/1240: a FLAC without a transcript line, an id of another
    # folder, an empty transcript, and an unreadable FLAC
    d = root / "train-clean-100" / "103" / "1240"
    flac(d / "103-1240-0004.flac", 0.25)
    flac(d / "103-1240-0005.flac", 0.25)
    (d / "103-1240-0006.flac").write_bytes(b"fLaC but broken")
    with open(d / "103-1240.trans.txt", "a", encoding="utf-8") as f:
        f.write("999-1-0000 A LINE OF ANOTHER FOLDER\n103-1240-0005 \n103-1240-0006 BROKEN\n")
    return top


@pytest.fixture
def corpus(tmp_path) -> Path:
    return build_corpus(tmp_path / "ls")


def test_prepare_default_parts(corpus, tmp_path, caplog):
    results = prepare_librispeech(corpus, tmp_path / "data")
    assert sorted(results) == [
        "dev-clean",
        "dev-other",
        "test-clean",
        "test-other",
        "train-clean-100",
    ]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "dev_clean", "dev_other", "test_clean", "test_other", "train_clean_100",
    ]  # fmt: skip

    train = DataDir(tmp_path / "data" / "train_clean_100")
    assert train.text() == {
        "103-1240-0000": "CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED",
        "103-1240-0001": "THAT HAD ITS SOURCE AWAY BACK",
        "103-1241-0000": "ANOTHER CHAPTER",
        "1034-121119-0000": "HELLO WORLD",
    }
    assert train.utt2spk() == {
        "103-1240-0000": "103",
        "103-1240-0001": "103",
        "103-1241-0000": "103",
        "1034-121119-0000": "1034",
    }
    assert train.spk2utt() == {
        "103": ["103-1240-0000", "103-1240-0001", "103-1241-0000"],
        "1034": ["1034-121119-0000"],
    }
    assert train.read("spk2gender") == {"103": "f", "1034": "m"}
    assert train.read("utt2reco") == {  # the chapter each utterance was read from
        "103-1240-0000": "103-1240",
        "103-1240-0001": "103-1240",
        "103-1241-0000": "103-1241",
        "1034-121119-0000": "1034-121119",
    }
    assert train.utt2dur() == {
        "103-1240-0000": 0.5,
        "103-1240-0001": 0.75,
        "103-1241-0000": 0.25,
        "1034-121119-0000": 0.5,
    }
    root = corpus / "LibriSpeech"
    assert train.wav_scp()["103-1241-0000"] == str(
        root / "train-clean-100" / "103" / "1241" / "103-1241-0000.flac"
    )
    assert len(AudioReader(train)("103-1240-0001")) == 12000
    assert results["train-clean-100"].skipped.total == 5
    for d in (tmp_path / "data").iterdir():
        validate(d)
    assert DataDir(tmp_path / "data" / "dev_clean").text() == {
        "1272-128104-0000": "MISTER QUILTER",
        "1272-128104-0001": "NOR IS MISTER",
    }
    assert not (tmp_path / "data" / "train_other_500").exists()

    log = caplog.text
    where = "train-clean-100/103/1240"
    assert f"skipped 1 utterance(s) (missing audio): {where}/103-1240-0003" in log
    assert (
        f"skipped 1 utterance(s) (id not <reader>-<chapter>-<n> of its folder): {where}/999-1-0000"
        in log
    )
    assert f"skipped 1 utterance(s) (empty transcript): {where}/103-1240-0005" in log
    assert f"skipped 1 utterance(s) (no transcript): {where}/103-1240-0004.flac" in log
    assert "(unreadable audio" in log and f"{where}/103-1240-0006" in log


def test_chapter_speakers_and_combined_sets(corpus, tmp_path):
    prepare_librispeech(
        corpus / "LibriSpeech",
        tmp_path / "data",
        parts=["dev-clean"],
        speaker="chapter",
        combine_sets={"train_960": ["train-clean-100", "train-other-500"]},
    )
    part = DataDir(tmp_path / "data" / "train_clean_100")
    assert part.spk2utt() == {
        "103-1240": ["103-1240-0000", "103-1240-0001"],
        "103-1241": ["103-1241-0000"],
        "1034-121119": ["1034-121119-0000"],
    }
    assert part.read("spk2gender") == {"103-1240": "f", "103-1241": "f", "1034-121119": "m"}
    both = DataDir(tmp_path / "data" / "train_960")
    assert sorted(both.text()) == [
        "103-1240-0000", "103-1240-0001", "103-1241-0000", "1034-121119-0000", "19-198-0000",
    ]  # fmt: skip
    assert both.utt2spk()["19-198-0000"] == "19-198"
    assert both.read("spk2gender")["19-198"] == "f"
    validate(both.path)
    assert (tmp_path / "data" / "dev_clean" / "text").is_file()


def test_without_a_full_speakers_table_no_spk2gender(corpus, tmp_path, caplog):
    speakers = corpus / "LibriSpeech" / "SPEAKERS.TXT"
    speakers.write_text(SPEAKERS_TXT.replace("1272 | M | dev-clean        | 10.04 | John\n", ""))
    prepare_librispeech(corpus, tmp_path / "data", parts=["dev-clean", "test-clean"])
    assert not (tmp_path / "data" / "dev_clean" / "spk2gender").exists()
    assert "dev-clean: SPEAKERS.TXT lacks 1272: no spk2gender" in caplog.text
    assert (tmp_path / "data" / "test_clean" / "spk2gender").is_file()
    speakers.unlink()
    prepare_librispeech(corpus, tmp_path / "data", parts=["test-clean"])
    assert not (tmp_path / "data" / "test_clean" / "spk2gender").exists()  # stale one removed
    validate(tmp_path / "data" / "test_clean")


def test_errors(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="is train-clean-360 downloaded"):
        prepare_librispeech(corpus, tmp_path / "data", parts=["train-clean-360"])
    with pytest.raises(ValueError, match="NAME=PART"):
        parse_combine("train_960")
    assert parse_combine("t=a,b c") == ("t", ["a", "b", "c"])


def test_command_line(corpus, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "data_prep.librispeech", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert "--combine NAME=PART,PART" in out and "--speaker {reader,chapter}" in out
    assert main([str(corpus), str(tmp_path / "d"), "--parts", "dev-clean,test-other"]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["dev_clean", "test_other"]
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "d2")]) == 1
    with pytest.raises(SystemExit):
        main([str(corpus), str(tmp_path / "d3"), "--parts", "dev_clean"])


# ---- the recipe: egs/librispeech/run.sh --stage 1 --stop_stage 1 ------------------------------


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A copy of egs/librispeech whose ../../recipes resolves to this repository's recipes/."""
    return copy_egs("librispeech", tmp_path / "egs_root")


def test_recipe_prepare_stage(recipe, corpus):
    proc = run_recipe(
        recipe, "--stage", "1", "--stop_stage", "1",
        "--local_data_opts", f"--corpus_dir {corpus} --speaker chapter",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    sets = {"train_clean_100": 4, "dev_clean": 2, "dev_other": 1, "test_clean": 1, "test_other": 1}
    for name, n in sets.items():
        validate(recipe / "data" / name)
        assert len(DataDir(recipe / "data" / name)) == n
    train = DataDir(recipe / "data" / "train_clean_100")
    assert train.utt2spk()["103-1241-0000"] == "103-1241"
    assert train.text()["1034-121119-0000"] == "HELLO WORLD"
    assert "skipped 1 utterance(s) (no transcript)" in proc.stderr
    config = (recipe / "exp" / "config.sh").read_text()
    assert "teacher=openai/whisper-large-v3" in config and "language=en" in config
    assert "train_set=train_clean_100" in config and "valid_set=dev_clean" in config
    assert "normalizer=english" in config and "student_decoder_layers=2" in config
