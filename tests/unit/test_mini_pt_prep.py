"""data_prep.mini_pt: the espeak-ng Brazilian Portuguese corpus in NURC-SP's Hub layout, read by
the real data_prep.nurc_sp (tiny corpora, a few seconds in all)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
from recipe_helpers import copy_egs, run_recipe

from data_prep import mini_pt as mp
from data_prep import nurc_sp
from data_prep.mini_pt import conventions
from speechdistill.datadir import DataDir, read_kv, validate
from speechdistill.text import normalize
from speechdistill.utils import mark_owned

TINY = ["--num-train", "14", "--num-dev", "5", "--num-test", "9", "--nj", "2", "-q"]
SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    """``a`` (seed 0, through the CLI), ``b`` (the same again), ``seed1``."""
    if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("mini_pt")
    for name, seed in (("a", 0), ("b", 0), ("seed1", 1)):
        assert mp.main([str(root / name), *TINY, "--seed", str(seed)]) == 0
    return {name: root / name for name in ("a", "b", "seed1")}


@pytest.fixture(scope="module")
def prepared(corpora, tmp_path_factory) -> dict[str, dict]:
    """``python -m data_prep.nurc_sp`` on corpus ``a``, both configs."""
    out = tmp_path_factory.mktemp("mini_pt_data")
    return {
        config: nurc_sp.prepare_nurc_sp(corpora["a"], out / config, config=config)
        for config in ("filtered", "original")
    }


def _rows(corpus: Path, config: str, split: str) -> list[dict[str, str]]:
    path = corpus / config / f"audios_{split}_metadata.csv"
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _archive(corpus: Path, split: str) -> dict[str, bytes]:
    with tarfile.open(corpus / f"{split}.tar.gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


# ----------------------------------------------------------------------------- the text


def test_bundled_sentences_are_many_distinct_and_of_spoken_length():
    sentences = mp.load_sentences()
    assert len(sentences) >= 1000
    assert len({mp.sentence_key(s) for s in sentences}) == len(sentences)
    lengths = [len(s.split()) for s in sentences]
    assert min(lengths) >= 4 and max(lengths) <= 25
    assert sum(n >= 15 for n in lengths) >= 40  # some long turns too
    # numbers in words and no NURC marks in the plain text (the generator adds those)
    assert not [s for s in sentences if any(c.isdigit() or c in "():/" for c in s)]
    words = Counter(w for s in sentences for w in s.split())
    for marker in ("né", "então", "assim", "olha", "sabe", "aí", "tá"):
        assert words[marker] >= 5, marker


def test_every_mark_normalises_away():
    rng = random.Random(0)
    sentence = "então a gente ia na feira todo domingo de manhã"
    for kind in conventions.KINDS:
        for _ in range(20):
            words = sentence.split()
            assert conventions.mark_one(words, kind, rng)
            marked = " ".join(words)
            assert marked != sentence
            assert normalize(marked, "pt_br") == normalize(sentence, "pt_br"), marked
    with pytest.raises(ValueError, match="unknown NURC mark"):
        conventions.mark_one(sentence.split(), "hipótese", rng)


# ----------------------------------------------------------------------------- the layout


def test_layout_and_columns_are_the_hub_datasets(corpora):
    corpus = corpora["a"]
    for split in SPLITS:
        assert (corpus / f"{split}.tar.gz").is_file()
        for config in ("original", "filtered"):
            path = corpus / config / f"audios_{split}_metadata.csv"
            header = path.read_text(encoding="utf-8").split("\n", 1)[0]
            assert header.split(",") == [
                *nurc_sp.REQUIRED_COLUMNS, "duration", "quality", "speech_genre", "speech_style",
                "variety", "accent", "sex", "age_range", "num_speakers", "speaker_id",
            ]  # fmt: skip
        rows = _rows(corpus, "original", split)
        assert {r["variety"] for r in rows} == {"pt-br"}
        assert {r["accent"] for r in rows} == {"sp-city"}
        assert {r["speech_style"] for r in rows} == {"spontaneous speech"}
        assert {r["speech_genre"] for r in rows} <= {"dialogue", "interview", "lecture and talks"}
        assert {r["sex"] for r in rows} <= {"F", "M", "F e F", "F e M", "M e M"}
        assert {r["age_range"] for r in rows} <= {"I", "II", "III"}
        for r in rows:
            assert r["file_path"] == f"{split}/{r['audio_name']}_{r['file_path'].rsplit('_', 1)[1]}"
            assert r["audio_name"].split("_")[1] in mp.KINDS
            speakers = int(r["num_speakers"])
            assert speakers == (1 if r["speech_genre"] == "lecture and talks" else 2)
            assert 0 <= int(r["speaker_id"]) < speakers
            assert (len(r["sex"].split(" e "))) == speakers


def test_original_has_empty_rows_that_filtered_drops(corpora):
    for split in SPLITS:
        original = _rows(corpora["a"], "original", split)
        filtered = _rows(corpora["a"], "filtered", split)
        empty = [r for r in original if not r["text"]]
        assert empty, split
        assert {r["quality"] for r in empty} == {"low"}
        assert filtered == [r for r in original if r["text"]]
        assert sum(bool(r["text"]) for r in original) == {"train": 14, "dev": 5, "test": 9}[split]


def test_segments_are_consecutive_cuts_with_real_times(corpora):
    corpus = corpora["a"]
    for split in SPLITS:
        files = _archive(corpus, split)
        rows = _rows(corpus, "original", split)
        assert sorted(files) == sorted(r["file_path"] for r in rows)  # one WAV per segment
        by_reco: dict[str, list[dict[str, str]]] = {}
        for r in rows:
            by_reco.setdefault(r["audio_name"], []).append(r)
            start, end = float(r["start_time"]), float(r["end_time"])
            audio, sr = sf.read(io.BytesIO(files[r["file_path"]]), dtype="int16")
            assert sr == 16000
            assert len(audio) == round((end - start) * sr)  # the cut is exactly start..end
            assert float(r["duration"]) == pytest.approx(end - start, abs=1e-6)
            if r["text"]:
                assert abs(audio).max() > 1000  # speech, not the faint noise of empty rows
        for reco, segs in by_reco.items():
            segs.sort(key=lambda r: int(r["file_path"].rsplit("_", 1)[1].split(".")[0]))
            assert float(segs[0]["start_time"]) > 0
            for prev, cur in itertools.pairwise(segs):
                pause = float(cur["start_time"]) - float(prev["end_time"])
                assert 0.2 - 1e-6 <= pause <= 1.5 + 1e-6, reco
            if len({r["speaker_id"] for r in segs}) == 2:
                voices = _voices(corpus)[reco]
                assert voices["0"] != voices["1"]  # two speakers, two espeak-ng voices


def _voices(corpus: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    lines = (corpus / "local" / "voices.tsv").read_text(encoding="utf-8").splitlines()[1:]
    for line in lines:
        reco, spk, voice, *_ = line.split("\t")
        out.setdefault(reco, {})[spk] = voice
    return out


def test_reference_normalises_to_the_sentence_spoken(corpora):
    corpus = corpora["a"]
    spoken = {}
    for line in (corpus / "local" / "segments.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        path, _, _, sentence = line.split("\t")
        spoken[path] = sentence
    marked = 0
    for split in SPLITS:
        for r in _rows(corpus, "original", split):
            assert normalize(r["text"], "pt_br") == normalize(spoken[r["file_path"]], "pt_br")
            marked += r["text"] != spoken[r["file_path"]]
            assert (r["quality"] == "low") == (not r["text"] or "(( ))" in r["text"])
    total = sum(len(_rows(corpus, "filtered", s)) for s in SPLITS)
    assert 0 < marked < total  # some references carry NURC marks, not all


def test_dev_and_test_voices_are_unseen_in_train(corpora):
    config = json.loads((corpora["a"] / "local" / "config.json").read_text(encoding="utf-8"))
    held = set(config["held_out_variants"])
    assert held and not held & set(config["train_variants"])
    voices = _voices(corpora["a"])
    for split in SPLITS:
        variants = {
            voices[r["audio_name"]][r["speaker_id"]].split("+")[1]
            for r in _rows(corpora["a"], "original", split)
        }
        assert variants <= held if split != "train" else not variants & held


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_differs(corpora):
    names = [f"{s}.tar.gz" for s in SPLITS] + [
        f"{c}/audios_{s}_metadata.csv" for c in ("original", "filtered") for s in SPLITS
    ]
    for name in names:
        assert (corpora["a"] / name).read_bytes() == (corpora["b"] / name).read_bytes(), name
    assert (corpora["a"] / "train.tar.gz").read_bytes() != (
        corpora["seed1"] / "train.tar.gz"
    ).read_bytes()
    with tarfile.open(corpora["a"] / "dev.tar.gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["dev", *sorted(m.name for m in members[1:])]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0, 0, "", "", members[0].mtime)
    }


def test_dev_and_test_do_not_depend_on_the_train_size():
    sentences = mp.load_sentences()
    kw = {"num_dev": 5, "num_test": 9, "seed": 3, "variants": list(mp.VARIANTS)}
    small, _, _ = mp.plan_corpus(sentences, num_train=10, **kw)
    big, _, _ = mp.plan_corpus(sentences, num_train=40, **kw)
    assert small["dev"] == big["dev"] and small["test"] == big["test"]
    train_text = {s.text for r in big["train"] for s in r.segments}
    held = {s.text for split in ("dev", "test") for r in big[split] for s in r.segments}
    assert not (train_text & held) - {""}


# ----------------------------------------------------------------------------- nurc_sp reads it


@pytest.mark.parametrize("split", SPLITS)
def test_nurc_sp_reads_it_into_valid_data_dirs(corpora, prepared, split):
    for config, results in prepared.items():
        result = results[split]
        rows = _rows(corpora["a"], config, split)
        skipped = result.skipped.reasons
        # nothing skipped but the empty transcriptions of original/
        assert skipped == ({"empty text": [r["file_path"] for r in rows if not r["text"]]}
                           if config == "original" else {})  # fmt: skip
        assert result.kept == sum(bool(r["text"]) for r in rows)
        data = result.data
        validate(data.path)
        utt2reco = read_kv(data.path / "utt2reco")
        utt2spk = read_kv(data.path / "utt2spk")
        assert set(utt2reco.values()) == {r["audio_name"] for r in rows if r["text"]}
        for utt, spk in utt2spk.items():
            assert spk.startswith(f"{utt2reco[utt]}_spk")  # a speaker of its recording
        speakers = {}
        for r in rows:
            if r["text"]:
                speakers.setdefault(r["audio_name"], set()).add(r["speaker_id"])
        for reco, ids in speakers.items():
            assert {s for u, s in utt2spk.items() if utt2reco[u] == reco} == {
                f"{reco}_spk{i}" for i in ids
            }
        assert sorted(DataDir(data.path).read("text").values()) == sorted(
            r["text"] for r in rows if r["text"]
        )


# ----------------------------------------------------------------------------- guards and errors


def test_refuses_a_folder_it_does_not_own(tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("mine\n", encoding="utf-8")
    assert mp.main([str(tmp_path), *TINY]) == 1
    assert "not written by" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    other = tmp_path / "other"
    other.mkdir()
    mark_owned(other, "someone else")
    (other / "x").write_text("x", encoding="utf-8")
    assert mp.main([str(other), *TINY]) == 1


def test_rerun_removes_a_stale_extraction(corpora, tmp_path):
    corpus = tmp_path / "c"
    shutil.copytree(corpora["a"], corpus)
    nurc_sp.prepare_nurc_sp(corpus, tmp_path / "data", splits=["dev"])
    assert (corpus / "extracted" / "dev" / nurc_sp.EXTRACTED_MARKER).is_file()
    assert mp.main([str(corpus), *TINY, "--seed", "1"]) == 0
    assert not (corpus / "extracted").exists()


def test_empty_split_is_an_error_before_anything_is_written(tmp_path, caplog):
    assert mp.main([str(tmp_path / "c"), *TINY, "--num-dev", "0"]) == 1
    assert "--num-dev must be at least 1, got 0" in caplog.text
    assert not list((tmp_path / "c").glob("*.tar.gz"))


def test_unknown_variants_are_an_error(tmp_path, caplog):
    assert mp.main([str(tmp_path / "c"), *TINY, "--variants", "nosuchvoice"]) == 1
    assert "none of the variants" in caplog.text


# ----------------------------------------------------------------------------- the recipe's stage 1


def test_recipe_stage_1_with_mini_synthesises_and_prepares(tmp_path):
    if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        pytest.skip("espeak-ng is not installed")
    recipe = copy_egs("nurc_sp", tmp_path / "egs_root")
    opts = "--mini true --mini_num_train 8 --mini_num_dev 3 --mini_num_test 4 --mini_seed 2"
    proc = run_recipe(recipe, "--stage", "1", "--stop_stage", "1", "--local_data_opts", opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    corpus = recipe / "downloads" / "mini_pt"
    assert (corpus / "filtered" / "audios_train_metadata.csv").is_file()
    for split, n in (("train", 8), ("dev", 3), ("test", 4)):
        data = DataDir(recipe / "data" / split)
        assert len(data.text()) == n
        assert set(data.read("utt2reco").values()) == {
            r["audio_name"] for r in _rows(corpus, "filtered", split)
        }
    stage1 = ["--stage", "1", "--stop_stage", "1", "--force", "true", "--local_data_opts"]
    proc = run_recipe(recipe, *stage1, "--mini true --download true")
    assert proc.returncode != 0 and "exclude each other" in proc.stderr
