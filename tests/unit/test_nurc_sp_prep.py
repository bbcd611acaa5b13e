"""data_prep.nurc_sp and egs/nurc_sp stage 1, on a tiny corpus in the Hub dataset's layout.

The fixture is what ``huggingface-cli download --repo-type dataset
nilc-nlp/CORAA-NURC-SP-Audio-Corpus`` gives: ``{original,filtered}/audios_<split>_metadata.csv``
(the corpus' columns) and ``<split>.tar.gz`` archives of one WAV per segment.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from recipe_helpers import REPO, copy_egs, run_recipe

from data_prep import nurc_sp
from data_prep.nurc_sp import EXTRACT_OWNER, EXTRACTED_MARKER, main, prepare_nurc_sp
from speechdistill.datadir import DataDir, validate
from speechdistill.utils import mark_owned

COLUMNS = [
    "audio_name",
    "file_path",
    "text",
    "start_time",
    "end_time",
    "duration",
    "quality",
    "speech_genre",
    "speech_style",
    "variety",
    "accent",
    "sex",
    "age_range",
    "num_speakers",
    "speaker_id",
]


def wav_bytes(seconds: float, sr: int = 16000) -> bytes:
    t = np.arange(round(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def row(audio, path, text, start, end, spk="0", quality="high", genre="dialogue") -> dict:
    return {
        "audio_name": audio,
        "file_path": path,
        "text": text,
        "start_time": start,
        "end_time": end,
        "duration": "",
        "quality": quality,
        "speech_genre": genre,
        "speech_style": "spontaneous speech",
        "variety": "pt-br",
        "accent": "sp-city",
        "sex": "F",
        "age_range": "II",
        "num_speakers": "2",
        "speaker_id": spk,
    }


# (row, seconds of audio or None when the archive lacks the file)
FILTERED = {
    "train": [
        (row("SP_D2_012", "train/SP_D2_012_7.wav", "então a gente ia ao cinema", "10.5", "12.0"), 1.5),
        (row("SP_D2_012", "train/SP_D2_012_8.wav", "((risos)) é verdade", "12.3", "14", "1"), 1.7),
        (row("SP_D2_012", "train/SP_D2_012_1.wav", "primeiro", "2", "3.0"), 1.0),
        (row("SP_EF_156", "train/SP_EF_156_0.wav", "  bom \n  dia ", "0.0", "0.8", ""), 0.8),
        (row("SP_EF_156", "train/SP_EF_156_1.wav", "   ", "1.0", "2.0"), 1.0),
        (row("SP_EF_156", "train/SP_EF_156_2.wav", "tempo ao contrário", "5.0", "5.0"), 1.0),
        (row("SP_EF_156", "train/SP_EF_156_3.wav", "sem áudio", "6.0", "7.0"), None),
        (row("SP_EF_156", "train/SP_EF_156_4.wav", "hora estranha", "abc", "7.0"), 1.0),
    ],
    "dev": [
        (row("SP_DID_242", "dev/SP_DID_242_0.wav", "uma frase", "1.0", "2.5", "1.0"), 1.5),
        (row("SP_DID_242", "dev/SP_DID_242_1.wav", "outra frase", "3.0", "4.0", "1.0"), 1.0),
    ],
    "test": [
        (
            row("SP_EF_377", "test/SP_EF_377_0.wav", "a aula começa", "0.5", "1.5", "0", "low",
                "lecture and talks"),
            1.0,
        ),
        (row("SP_EF_377", "test/SP_EF_377_1.wav", "agora", "1.5", "2.0", "0"), 0.5),
    ],
}  # fmt: skip
# the "original" config also lists segments with an empty transcription
ORIGINAL_EXTRA = {
    "train": [(row("SP_D2_012", "train/SP_D2_012_9.wav", "", "20.0", "21.0"), 1.0)],
    "dev": [(row("SP_DID_242", "dev/SP_DID_242_2.wav", "", "5.0", "6.0"), 1.0)],
    "test": [],
}


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def build_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, entries in FILTERED.items():
        everything = entries + ORIGINAL_EXTRA[split]
        write_csv(root / "filtered" / f"audios_{split}_metadata.csv", [r for r, _ in entries])
        write_csv(root / "original" / f"audios_{split}_metadata.csv", [r for r, _ in everything])
        write_tar(
            root / f"{split}.tar.gz",
            {r["file_path"]: wav_bytes(s) for r, s in everything if s is not None},
        )
    (root / "README.md").write_text("NURC-SP Corpus\n", encoding="utf-8")
    return root


@pytest.fixture
def corpus(tmp_path) -> Path:
    return build_corpus(tmp_path / "nurc")


TRAIN_IDS = [
    "SP_D2_012_spk0-SP_D2_012_0000200_0000300",
    "SP_D2_012_spk0-SP_D2_012_0001050_0001200",
    "SP_D2_012_spk1-SP_D2_012_0001230_0001400",
    "SP_EF_156_unk-SP_EF_156_0000000_0000080",
]


def test_prepare_from_archives(corpus, tmp_path, caplog):
    ext = tmp_path / "ext"
    results = prepare_nurc_sp(corpus, tmp_path / "data", extract_dir=ext)
    assert sorted(results) == ["dev", "test", "train"]

    train = DataDir(tmp_path / "data" / "train")
    assert train.text() == {
        TRAIN_IDS[0]: "primeiro",
        TRAIN_IDS[1]: "então a gente ia ao cinema",
        TRAIN_IDS[2]: "((risos)) é verdade",
        TRAIN_IDS[3]: "bom dia",
    }
    assert list(train.text()) == TRAIN_IDS  # written C-sorted: a speaker's segments in time order
    assert train.utt2spk() == {u: u.split("-")[0] for u in TRAIN_IDS}
    assert train.spk2utt() == {
        "SP_D2_012_spk0": TRAIN_IDS[:2],
        "SP_D2_012_spk1": [TRAIN_IDS[2]],
        "SP_EF_156_unk": [TRAIN_IDS[3]],
    }
    assert train.utt2dur() == pytest.approx(
        {TRAIN_IDS[0]: 1.0, TRAIN_IDS[1]: 1.5, TRAIN_IDS[2]: 1.7, TRAIN_IDS[3]: 0.8}
    )
    assert train.wav_scp()[TRAIN_IDS[1]] == str(ext / "train" / "train" / "SP_D2_012_7.wav")
    assert not train.exists("segments")  # the segments are files of their own
    assert train.read("utt2genre") == dict.fromkeys(TRAIN_IDS, "dialogue")
    assert train.read("utt2quality") == dict.fromkeys(TRAIN_IDS, "high")
    assert results["train"].kept == 4 and results["train"].skipped.total == 4
    assert results["train"].hours == pytest.approx(5.0 / 3600)

    test = DataDir(tmp_path / "data" / "test")
    assert test.read("utt2genre") == {
        "SP_EF_377_spk0-SP_EF_377_0000050_0000150": "lecture_and_talks",
        "SP_EF_377_spk0-SP_EF_377_0000150_0000200": "dialogue",
    }
    assert test.read("utt2quality")["SP_EF_377_spk0-SP_EF_377_0000050_0000150"] == "low"
    assert test.read("utt2reco") == {  # audio_name: the recording the segments were cut from
        "SP_EF_377_spk0-SP_EF_377_0000050_0000150": "SP_EF_377",
        "SP_EF_377_spk0-SP_EF_377_0000150_0000200": "SP_EF_377",
    }
    dev = DataDir(tmp_path / "data" / "dev")
    assert dev.utt2spk() == {  # "1.0" (a pandas float column) is speaker 1
        "SP_DID_242_spk1-SP_DID_242_0000100_0000250": "SP_DID_242_spk1",
        "SP_DID_242_spk1-SP_DID_242_0000300_0000400": "SP_DID_242_spk1",
    }
    for split in ("train", "dev", "test"):
        validate(tmp_path / "data" / split)  # with text: raises on any problem
        assert (ext / split / EXTRACTED_MARKER).is_file()
    assert not list(ext.glob(".*partial"))

    log = caplog.text
    assert "train: skipped 1 row(s) (empty text): train/SP_EF_156_1.wav" in log
    assert "skipped 1 row(s) (end_time <= start_time): train/SP_EF_156_2.wav (5 .. 5)" in log
    assert "skipped 1 row(s) (missing audio): train/SP_EF_156_3.wav" in log
    assert "skipped 1 row(s) (missing or bad times): train/SP_EF_156_4.wav ('abc'" in log
    assert "dev: skipped" not in log and "test: skipped" not in log


def test_rerun_reuses_the_extraction_and_restarts_an_interrupted_one(
    corpus, tmp_path, monkeypatch, caplog
):
    ext = tmp_path / "ext"
    prepare_nurc_sp(corpus, tmp_path / "data", extract_dir=ext, splits=["train"])
    # an extraction killed half-way: only its temporary folder is left
    (ext / ".dev.partial" / "dev").mkdir(parents=True)
    (ext / ".dev.partial" / "dev" / "junk.wav").write_bytes(b"half")
    mark_owned(ext / ".dev.partial", EXTRACT_OWNER)  # as extract_archive marks it before extracting
    prepare_nurc_sp(corpus, tmp_path / "data", extract_dir=ext, splits=["dev"])
    assert "left by an interrupted extraction" in caplog.text
    assert not (ext / ".dev.partial").exists()
    assert sorted(p.name for p in (ext / "dev" / "dev").iterdir()) == [
        "SP_DID_242_0.wav",
        "SP_DID_242_1.wav",
        "SP_DID_242_2.wav",
    ]

    def no_tar(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(tarfile, "open", no_tar)
    results = prepare_nurc_sp(corpus, tmp_path / "data2", extract_dir=ext, splits=["train", "dev"])
    assert [results[s].kept for s in ("train", "dev")] == [4, 2]
    with pytest.raises(AssertionError, match="extracted again"):  # test.tar.gz: not yet extracted
        prepare_nurc_sp(corpus, tmp_path / "data2", extract_dir=ext, splits=["test"])


def test_foreign_folder_is_not_overwritten(corpus, tmp_path):
    (tmp_path / "ext" / "train").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a finished extraction"):
        prepare_nurc_sp(corpus, tmp_path / "data", extract_dir=tmp_path / "ext", splits=["train"])


def test_hand_extracted_audio_and_other_file_path_forms(tmp_path, caplog):
    """No archives: the audio already lies under CORPUS/<split>; file_path as absolute paths of
    another machine, as a bare file name (unique, or ambiguous), with Windows separators."""
    root = tmp_path / "nurc"
    (root / "test" / "a").mkdir(parents=True)
    (root / "test" / "b").mkdir(parents=True)
    (root / "test" / "a" / "x.wav").write_bytes(wav_bytes(0.5))
    (root / "test" / "b" / "y.wav").write_bytes(wav_bytes(0.25))
    (root / "test" / "a" / "dup.wav").write_bytes(wav_bytes(0.5))
    (root / "test" / "b" / "dup.wav").write_bytes(wav_bytes(0.5))
    (root / "test" / "c.flac").parent.mkdir(exist_ok=True)
    sf.write(root / "test" / "c.flac", np.zeros(8000, dtype=np.float32) + 0.1, 16000)
    write_csv(
        root / "filtered" / "audios_test_metadata.csv",
        [
            row("R1", "/home/someone/nurc/audios/test/a/x.wav", "um", "0", "0.5"),
            row("R1", "y.wav", "dois", "1", "1.25"),
            row("R1", "dup.wav", "três", "2", "2.5"),
            row("R1", "test\\c.flac", "quatro", "3", "3.5"),
        ],
    )
    results = prepare_nurc_sp(root, tmp_path / "data", splits=["test"])
    d = results["test"].data
    assert d.wav_scp() == {
        "R1_spk0-R1_0000000_0000050": str(root / "test" / "a" / "x.wav"),
        "R1_spk0-R1_0000100_0000125": str(root / "test" / "b" / "y.wav"),
        "R1_spk0-R1_0000300_0000350": str(root / "test" / "c.flac"),
    }
    assert d.utt2dur()["R1_spk0-R1_0000100_0000125"] == pytest.approx(0.25)
    assert "skipped 1 row(s) (ambiguous audio file name): dup.wav" in caplog.text
    assert not (root / "extracted").exists()  # nothing to extract


def test_original_config_recording_speakers_and_duplicates(corpus, tmp_path, caplog):
    # a second row for the same segment (same recording and times) is a duplicate id
    path = corpus / "original" / "audios_dev_metadata.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    write_csv(path, [*rows, dict(rows[0], text="de novo")])
    results = prepare_nurc_sp(
        corpus, tmp_path / "data", config="original", speaker="recording",
        extract_dir=tmp_path / "ext",
    )  # fmt: skip
    train = results["train"].data
    # the same utterances as "filtered"; the extra rows are empty transcriptions
    assert sorted(train.text().values()) == sorted(
        ["primeiro", "então a gente ia ao cinema", "((risos)) é verdade", "bom dia"]
    )
    assert results["train"].skipped.count("empty text") == 2
    assert set(train.utt2spk().values()) == {"SP_D2_012", "SP_EF_156"}
    assert "SP_D2_012-SP_D2_012_0001230_0001400" in train.utt2spk()
    dev = results["dev"]
    assert dev.kept == 2 and dev.skipped.count("duplicate utterance id") == 1
    assert "duplicate utterance id" in caplog.text and "dev/SP_DID_242_0.wav" in caplog.text
    validate(train.path)


def test_rerun_with_other_options_leaves_no_stale_files(corpus, tmp_path):
    out = tmp_path / "data"
    prepare_nurc_sp(corpus, out, extract_dir=tmp_path / "ext", splits=["dev"])
    (out / "dev" / "text.teacher").write_text("old-utt hello\n", encoding="utf-8")
    prepare_nurc_sp(corpus, out, extract_dir=tmp_path / "ext", splits=["dev"], speaker="recording")
    assert not (out / "dev" / "text.teacher").exists()
    validate(out / "dev")


def test_layout_of_earlier_revisions_and_missing_metadata(tmp_path, caplog):
    root = tmp_path / "old"
    root.mkdir()
    write_csv(root / "audios_dev_metadata.csv", [r for r, _ in FILTERED["dev"]])
    write_tar(root / "dev.tar.gz", {r["file_path"]: wav_bytes(s) for r, s in FILTERED["dev"]})
    results = prepare_nurc_sp(root, tmp_path / "data", splits=["dev"])
    assert results["dev"].kept == 2
    assert "layout of earlier revisions" in caplog.text
    with pytest.raises(FileNotFoundError, match="no metadata CSV for split 'test'"):
        prepare_nurc_sp(root, tmp_path / "data", splits=["test"])


def test_missing_columns_and_nothing_usable_are_errors(tmp_path):
    root = tmp_path / "bad"
    (root / "filtered").mkdir(parents=True)
    (root / "filtered" / "audios_dev_metadata.csv").write_text("file_path,text\na.wav,oi\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['audio_name', 'start_time'"):
        prepare_nurc_sp(root, tmp_path / "data", splits=["dev"])
    write_csv(root / "filtered" / "audios_dev_metadata.csv", [row("R", "a.wav", "oi", "0", "1")])
    with pytest.raises(ValueError, match="dev: nothing usable"):
        prepare_nurc_sp(root, tmp_path / "data", splits=["dev"])


def test_download_fetches_only_the_needed_files(tmp_path, monkeypatch):
    """--download goes through huggingface_hub.snapshot_download (replaced here: no network)."""
    source = build_corpus(tmp_path / "hub")
    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        dest = Path(kwargs["local_dir"])
        for pattern in kwargs["allow_patterns"]:
            for p in source.glob(pattern):
                (dest / p.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, dest / p.relative_to(source))
        return str(dest)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    local = tmp_path / "downloads" / "nurc"
    results = prepare_nurc_sp(local, tmp_path / "data", splits=["dev"], download_first=True)
    assert results["dev"].kept == 2
    assert calls == [
        {
            "repo_id": "nilc-nlp/CORAA-NURC-SP-Audio-Corpus",
            "repo_type": "dataset",
            "revision": None,
            "local_dir": str(local.resolve()),
            "allow_patterns": ["filtered/audios_dev_metadata.csv", "dev.tar.gz", "README.md"],
        }
    ]
    assert not (local / "train.tar.gz").exists()


def test_command_line(corpus, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "data_prep.nurc_sp", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert "--config {original,filtered}" in out and "--download" in out
    args = [str(corpus), str(tmp_path / "d"), "--splits", "dev,test", "--extract-dir"]
    assert main([*args, str(tmp_path / "ext")]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["dev", "test"]
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "d2")]) == 1
    with pytest.raises(SystemExit):
        main([str(corpus), str(tmp_path / "d3"), "--splits", "validation"])


# ---- the recipe: egs/nurc_sp/run.sh --stage 1 --stop_stage 1 ---------------------------------


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A copy of egs/nurc_sp whose ../../recipes resolves to this repository's recipes/."""
    return copy_egs("nurc_sp", tmp_path / "egs_root")


def test_recipe_prepare_stage(recipe, corpus, tmp_path):
    opts = f"--corpus_dir {corpus} --extract_dir {tmp_path / 'ext'}"
    proc = run_recipe(recipe, "--stage", "1", "--stop_stage", "1", "--local_data_opts", opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped 1 row(s) (missing audio)" in proc.stderr
    train = DataDir(recipe / "data" / "train")
    assert list(train.text()) == TRAIN_IDS
    assert train.text()[TRAIN_IDS[3]] == "bom dia"
    for split, n in (("train", 4), ("dev", 2), ("test", 2)):
        validate(recipe / "data" / split)
        assert len(DataDir(recipe / "data" / split)) == n
    assert (recipe / "data" / ".prepare.done").is_file()
    assert not (recipe / "dump").exists()  # stage 2 did not run
    config = (recipe / "exp" / "config.sh").read_text()
    assert "teacher=openai/whisper-large-v3" in config and "language=pt" in config
    assert "normalizer=pt_br" in config and "student_decoder_layers=2" in config
    assert "pl_timestamps=true" in config and "filter_max_wer=0.2" in config

    # local/data.sh options reach the preparer: the original config, recording speakers
    opts += " --hub_config original --speaker recording --splits dev"
    proc = run_recipe(
        recipe, "--stage", "1", "--stop_stage", "1", "--force", "true",
        "--train_set", "dev", "--test_sets", "dev", "--local_data_opts", opts,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dev: skipped 1 row(s) (empty text)" in proc.stderr
    assert set(DataDir(recipe / "data" / "dev").utt2spk().values()) == {"SP_DID_242"}


def test_parse_seconds():
    assert nurc_sp.parse_seconds(" 12.25 ") == pytest.approx(12.25)
    assert nurc_sp.parse_seconds("1:02.5") == pytest.approx(62.5)
    assert nurc_sp.parse_seconds("1:00:00") == pytest.approx(3600)
    assert nurc_sp.parse_seconds("nan") is None and nurc_sp.parse_seconds("") is None
