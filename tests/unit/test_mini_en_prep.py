"""data_prep.mini_en: the espeak-ng mini_en corpus (tiny corpora, a few seconds in all)."""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep import mini_en as ms
from data_prep.mini_en import cli
from speechdistill.datadir import DataDir, check_id, read_kv, utt2spk_to_spk2utt, validate
from speechdistill.datadir.reco import reco_text

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None and shutil.which("espeak") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng)",
)

TINY = {"num_train": 6, "num_dev": 3, "num_test": 4, "num_speakers": 4, "num_unseen_speakers": 3}
KALDI_FILES = ("wav.scp", "segments", "reco2dur", "text", "utt2spk", "spk2utt", "utt2dur")


def _prepare(out: Path, **kw) -> Path:
    ms.prepare_mini_en(out, nj=2, progress=False, **{**TINY, **kw})
    return out


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    """Tiny corpora: ``a`` (seed 0, through the CLI), ``b`` (the same again), ``seed1``, and
    ``big`` (seed 0 with twice the training clips)."""
    if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("mini_en")
    argv = [str(root / "a"), "--num-train", "6", "--num-dev", "3", "--num-test", "4"]
    argv += ["--num-speakers", "4", "--num-unseen-speakers", "3", "--seed", "0", "--nj", "2"]
    assert ms.main([*argv, "--no-progress", "-q"]) == 0
    return {
        "a": root / "a",
        "b": _prepare(root / "b", seed=0),
        "seed1": _prepare(root / "seed1", seed=1),
        "big": _prepare(root / "big", seed=0, num_train=12),
    }


def _raw_keys(path: Path) -> list[str]:
    return [line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]


# ----------------------------------------------------------------------------- the text


@pytest.mark.parametrize("text_dir", [ms.TEXT_DIR, ms.TRAIN_TEXT_DIR], ids=["main", "train_only"])
def test_bundled_sentences_are_many_distinct_and_natural_length(text_dir):
    sentences = ms.load_sentences([text_dir])
    assert len(sentences) >= 1000
    keys = [ms.sentence_key(s) for s in sentences]
    assert len(set(keys)) == len(keys)
    lengths = [len(s.split()) for s in sentences]
    assert min(lengths) >= 5 and max(lengths) <= 20
    # no duplicates were dropped from the files themselves
    raw = [
        line.strip()
        for f in sorted(text_dir.glob("*.txt"))
        for line in f.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(raw) == len(sentences)
    assert (text_dir / "README.md").is_file()
    if text_dir == ms.TRAIN_TEXT_DIR:  # and none repeats a sentence of the main text
        assert set(keys).isdisjoint(ms.sentence_key(s) for s in ms.load_sentences())


def test_load_sentences_dedups_on_normalised_key(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("# comment\nHello there, my friend.\n\nhello   there my friend\nA new one here.\n")
    assert ms.load_sentences([f]) == ["Hello there, my friend.", "A new one here."]
    assert ms.load_sentences([tmp_path]) == ms.load_sentences([f])
    with pytest.raises(FileNotFoundError):
        ms.load_sentences([tmp_path / "missing.txt"])


# ----------------------------------------------------------------------------- the plan


def test_speakers_are_kaldi_safe_and_unseen_ones_are_held_out():
    seen, unseen, new_acc, new_var = ms.choose_speakers(0)
    assert len(seen) == 40 and len(unseen) == 12
    ids = [s.spk for s in seen + unseen]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids)
    assert {s.accent for s in seen}.isdisjoint(new_acc)
    assert {s.variant for s in seen}.isdisjoint(new_var)
    assert all(s.accent in new_acc or s.variant in new_var for s in unseen)
    assert all(s.voiceset == "unseen" for s in unseen)
    # all three kinds of unseen speaker: new accent, new variant, both
    kinds = {(s.accent in new_acc, s.variant in new_var) for s in unseen}
    assert kinds == {(True, False), (False, True), (True, True)}
    for s in seen + unseen:
        assert ms.SPEED_RANGE[0] <= s.speed <= ms.SPEED_RANGE[1]
        assert ms.PITCH_RANGE[0] <= s.pitch <= ms.PITCH_RANGE[1]


def test_plan_reuses_train_sentences_but_never_dev_or_test(tmp_path):
    sentences = [f"Sentence number {i} is here today." for i in range(12)]
    plan = ms.plan_corpus(sentences, num_train=20, num_dev=2, num_test=3, seed=3)
    keys = {k: {ms.sentence_key(u.text) for u in v} for k, v in plan.utterances.items()}
    assert len(plan.utterances["train"]) == 20 and len(keys["train"]) == 7
    assert keys["train"].isdisjoint(keys["dev"]) and keys["train"].isdisjoint(keys["test"])
    assert keys["dev"].isdisjoint(keys["test"])
    pairs = [(u.spk, ms.sentence_key(u.text)) for u in plan.utterances["train"]]
    assert len(set(pairs)) == len(pairs)  # a speaker never repeats a sentence
    utts = [u.utt for v in plan.utterances.values() for u in v]
    assert len(set(utts)) == len(utts)
    with pytest.raises(ValueError):
        ms.plan_corpus(sentences, num_train=5, num_dev=6, num_test=6)


def test_plan_train_prefix_and_fixed_dev_test():
    sentences = ms.load_sentences()
    small = ms.plan_corpus(sentences, num_train=45, seed=5)
    big = ms.plan_corpus(sentences, num_train=1200, seed=5)  # past the 1050 train sentences
    assert big.utterances["train"][:45] == small.utterances["train"]
    assert big.utterances["dev"] == small.utterances["dev"]
    assert big.utterances["test"] == small.utterances["test"]
    held = {ms.sentence_key(u.text) for k in ("dev", "test") for u in big.utterances[k]}
    assert held.isdisjoint(ms.sentence_key(u.text) for u in big.utterances["train"])
    test = big.utterances["test"]
    assert sum(u.voiceset == "unseen" for u in test) == 50
    assert {u.spk for u in test if u.voiceset == "unseen"}.isdisjoint(
        u.spk for u in big.utterances["train"]
    )


def test_train_only_text_extends_train_and_keeps_the_corpus_without_it(caplog):
    sentences = [f"Sentence number {i} is here today." for i in range(12)]
    # six new sentences and one that repeats the main text (dropped with a count)
    extra = [f"Another line {i} for training only." for i in range(6)] + [sentences[0]]
    kw = {"num_dev": 2, "num_test": 3, "seed": 3, "num_speakers": 4, "num_unseen_speakers": 2}
    base = ms.plan_corpus(sentences, num_train=7, **kw)
    with caplog.at_level(logging.WARNING, logger="data_prep.mini_en"):
        plan = ms.plan_corpus(sentences, train_sentences=extra, num_train=20, **kw)
    assert "dropped 1 train-only sentences" in caplog.text
    assert plan.utterances["dev"] == base.utterances["dev"]
    assert plan.utterances["test"] == base.utterances["test"]
    train = plan.utterances["train"]
    assert train[:7] == base.utterances["train"]  # train's own sentences come first
    keys = [ms.sentence_key(u.text) for u in train]
    assert set(keys[7:13]) == {ms.sentence_key(s) for s in extra[:6]}  # then each extra once
    assert len(set(keys)) == 13  # 7 + 6 distinct before any repeat
    held = {ms.sentence_key(u.text) for k in ("dev", "test") for u in plan.utterances[k]}
    assert held.isdisjoint(keys)


def test_every_training_speaker_occurs_in_train():
    sentences = ms.load_sentences()
    for num_train in (3, 40, 41, 300):
        plan = ms.plan_corpus(sentences, num_train=num_train, num_dev=5, num_test=10, seed=1)
        train_spk = {u.spk for u in plan.utterances["train"]}
        seen = {s.spk for s in plan.speakers.values() if s.voiceset == "seen"}
        assert train_spk == seen and len(seen) == min(num_train, 40)
        for split in ("dev", "test"):
            for u in plan.utterances[split]:
                assert (u.spk in train_spk) == (u.voiceset == "seen")


def test_plan_recordings_one_voice_sizes_and_pauses_in_bounds():
    sentences = ms.load_sentences(None)
    plan = ms.plan_corpus(sentences, seed=2)  # the default sizes
    for split, recos in plan.recordings.items():
        lo, hi = ms.RECORDING_SENTENCES[split]
        held = sorted(u.utt for r in recos for u in r.utts)
        assert held == sorted(u.utt for u in plan.utterances[split])
        last_of = {r.spk: r.reco for r in recos}  # train: a speaker's last one may be short
        for r in recos:
            assert check_id(r.reco) and r.reco.startswith(f"{r.spk}-{split}_r")
            assert {u.spk for u in r.utts} == {r.spk} and {u.reco for u in r.utts} == {r.reco}
            assert [u.utt for u in r.utts] == sorted(u.utt for u in r.utts)  # id order = time
            assert len(r.utts) <= hi
            if split == "test" or (split == "train" and r.reco != last_of[r.spk]):
                assert len(r.utts) >= lo, r.reco
            assert len(r.pauses_ms) == len(r.utts) - 1
            lo_ms, hi_ms = (round(1000 * x) for x in ms.PAUSE_RANGE)
            assert all(lo_ms <= p <= hi_ms for p in r.pauses_ms)
    assert sum(len(r.utts) < 2 for r in plan.recordings["dev"]) <= 1  # only the last one
    assert len({p for r in plan.recordings["test"] for p in r.pauses_ms}) > 20  # drawn
    assert {r.voiceset for r in plan.recordings["test"]} == {"seen", "unseen"}
    assert plan == ms.plan_corpus(sentences, seed=2)  # seeded
    # a voice set with fewer sentences than a test recording's minimum is one recording
    small = ms.plan_corpus(sentences, num_train=8, num_dev=4, num_test=20, seed=1)
    assert [len(r.utts) for r in small.recordings["test"]] == [10, 10]


def test_plan_train_recordings_grow_as_prefixes():
    sentences = ms.load_sentences(None)
    small = {r.reco: r for r in ms.plan_corpus(sentences, num_train=60, seed=5).recordings["train"]}
    big = {r.reco: r for r in ms.plan_corpus(sentences, num_train=400, seed=5).recordings["train"]}
    assert set(small) < set(big)
    for reco, r in small.items():
        assert big[reco].utts[: len(r.utts)] == r.utts
        assert big[reco].pauses_ms[: len(r.pauses_ms)] == r.pauses_ms


def test_synthesized_recording_is_its_utterances_with_the_pauses_between(monkeypatch):
    sentences = ms.load_sentences(None)
    reco = ms.plan_corpus(sentences, num_train=8, num_dev=4, num_test=20, seed=1).recordings[
        "test"
    ][0]
    lengths = {u.utt: 8000 + 997 * i for i, u in enumerate(reco.utts)}
    monkeypatch.setattr(
        "data_prep.mini_en.synthesis.synthesize",
        lambda utt, espeak: np.full(lengths[utt.utt], 7, dtype=np.int16),
    )
    samples, spans = ms.synthesize_recording(reco, "espeak-ng")
    assert spans[0][0] == 0 and spans[-1][1] == samples.shape[0]
    for (start, end), u in zip(spans, reco.utts, strict=True):
        assert end - start == lengths[u.utt] and (samples[start:end] == 7).all()
    for (_, end), (start, _), pause in zip(spans, spans[1:], reco.pauses_ms, strict=False):
        assert start - end == pause * 16 and not samples[end:start].any()


def test_parse_espeak_wav_rejects_garbage():
    with pytest.raises(ValueError):
        ms.parse_espeak_wav(b"not a wav at all")


# ----------------------------------------------------------------------------- the corpus


@needs_espeak
@pytest.mark.parametrize("split", ms.SPLITS)
def test_output_is_a_valid_kaldi_data_dir(corpora, split):
    d = DataDir(corpora["a"] / split)
    validate(d.path)  # Kaldi's checks; raises on any error
    for name in KALDI_FILES:
        keys = _raw_keys(d.file(name))
        assert keys == sorted(keys, key=lambda k: k.encode()), f"{name} not C-sorted"
        assert len(set(keys)) == len(keys), f"{name} has duplicate keys"
    utt2spk = d.utt2spk()
    assert len(utt2spk) == TINY[f"num_{split}"]
    if split == "test":
        assert len(set(utt2spk.values())) >= 2
    for name in ("segments", "text", "utt2dur"):
        assert set(d.read(name)) == set(utt2spk), name
    assert {s: " ".join(u) for s, u in utt2spk_to_spk2utt(utt2spk).items()} == d.read("spk2utt")
    for utt, spk in utt2spk.items():
        assert utt.startswith(spk + "-")
    assert all(t.strip() for t in d.text().values())
    durs, reco2dur, segments = d.utt2dur(), d.read("reco2dur"), d.segments()
    assert set(d.wav_scp()) == {seg.reco for seg in segments.values()} == set(reco2dur)
    for reco, path in d.wav_scp().items():
        p = Path(path)
        assert p.is_absolute() and p.is_file()
        info = sf.info(p)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert float(reco2dur[reco]) == info.frames / 16000
        audio, _ = sf.read(p, dtype="float32")
        assert np.isfinite(audio).all()
        spans = sorted((seg.start, seg.end, u) for u, seg in segments.items() if seg.reco == reco)
        assert spans[0][0] == 0 and spans[-1][1] == info.frames / 16000  # tiled, in order:
        for (_, end, _), (start, _, _) in itertools.pairwise(spans):
            assert ms.PAUSE_RANGE[0] <= round(start - end, 3) <= ms.PAUSE_RANGE[1]
            assert not audio[round(end * 16000) : round(start * 16000)].any()  # the pause
        for start, end, utt in spans:
            assert utt2spk[utt] + "-" == reco[: len(utt2spk[utt]) + 1]  # one voice
            assert abs(float(durs[utt]) - (end - start)) < 1e-9 and end - start > 0.5
            clip = audio[round(start * 16000) : round(end * 16000)]
            assert np.sqrt(np.mean(clip**2)) > 1e-3  # not silent


@needs_espeak
def test_test_long_is_the_test_recordings_whole(corpora):
    test, long = DataDir(corpora["a"] / "test"), DataDir(corpora["a"] / "test_long")
    validate(long.path)
    assert not long.has_segments
    assert long.wav_scp() == test.wav_scp()  # the same recording WAVs, keyed by recording
    assert long.text() == reco_text(test.path)  # texts joined in time order
    assert long.utt2dur() == {r: float(d) for r, d in test.read("reco2dur").items()}
    for reco, spk in long.utt2spk().items():
        assert reco.startswith(spk + "-test_r")
    voiceset = test.read("utt2voiceset")
    assert long.read("utt2voiceset") == {
        seg.reco: voiceset[u] for u, seg in test.segments().items()
    }


@needs_espeak
def test_sentences_disjoint_across_splits(corpora):
    keys = {
        s: {ms.sentence_key(t) for t in DataDir(corpora["big"] / s).text().values()}
        for s in ms.SPLITS
    }
    assert keys["train"].isdisjoint(keys["dev"])
    assert keys["train"].isdisjoint(keys["test"])
    assert keys["dev"].isdisjoint(keys["test"])


@needs_espeak
def test_test_set_has_seen_and_unseen_voices(corpora):
    root = corpora["a"]
    test = DataDir(root / "test")
    voiceset = test.read("utt2voiceset")
    assert set(voiceset) == set(test.utt2spk())
    assert set(voiceset.values()) == {"seen", "unseen"}
    train_spk = set(DataDir(root / "train").utt2spk().values())
    test_spk = test.utt2spk()
    for utt, vs in voiceset.items():
        assert (test_spk[utt] in train_spk) == (vs == "seen"), utt
    assert set(DataDir(root / "dev").utt2spk().values()) <= train_spk
    # local/ records the voices: the unseen ones use a held-out accent or variant
    rows = [line.split("\t") for line in (root / "local" / "voices.tsv").read_text().splitlines()]
    header, rows = rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert header[:3] == ["spk", "voice", "accent"]
    held = dict(
        line.split(" ", 1) for line in (root / "local" / "held_out.txt").read_text().splitlines()
    )
    held_acc, held_var = set(held["accents"].split()), set(held["variants"].split())
    for r in rows:
        is_held = r["accent"] in held_acc or r["variant"] in held_var
        assert is_held == (r["voiceset"] == "unseen")
    for split in ms.SPLITS:
        assert (root / "local" / f"voices_{split}.txt").is_file()
        assert set(read_kv(root / "local" / f"{split}_espeak.tsv", allow_duplicates=False))
    assert "CC0" in (root / "local" / "text_source.txt").read_text()


@needs_espeak
def test_same_seed_same_bytes(corpora):
    a, b = corpora["a"], corpora["b"]
    for split in [*ms.SPLITS, "test_long"]:
        for name in ("text", "utt2spk", "spk2utt", "utt2dur", "segments", "reco2dur"):
            if split != "test_long" or name not in ("segments", "reco2dur"):
                assert (a / split / name).read_bytes() == (b / split / name).read_bytes()
        wa, wb = DataDir(a / split).wav_scp(), DataDir(b / split).wav_scp()
        assert wa.keys() == wb.keys()
        for utt in wa:
            assert Path(wa[utt]).read_bytes() == Path(wb[utt]).read_bytes(), utt
    for f in (a / "local").iterdir():
        assert f.read_bytes() == (b / "local" / f.name).read_bytes(), f.name


@needs_espeak
def test_other_seed_differs(corpora):
    a, c = corpora["a"], corpora["seed1"]
    for split in ms.SPLITS:
        assert (a / split / "text").read_bytes() != (c / split / "text").read_bytes()
    wav_a = {p.read_bytes() for p in (a / "wav").rglob("*.wav")}
    wav_c = {p.read_bytes() for p in (c / "wav").rglob("*.wav")}
    assert wav_a.isdisjoint(wav_c)


@needs_espeak
def test_num_train_scales_train_only(corpora):
    a, big = corpora["a"], corpora["big"]
    train_a, train_big = DataDir(a / "train"), DataDir(big / "train")
    assert len(train_a) == 6 and len(train_big) == 12
    text_a, text_big = train_a.text(), train_big.text()
    assert all(text_big[u] == t for u, t in text_a.items())  # a prefix of the bigger set
    for split in ("dev", "test"):
        assert (a / split / "text").read_bytes() == (big / split / "text").read_bytes()


@needs_espeak
def test_rerun_replaces_stale_wavs(tmp_path):
    out = tmp_path / "c"
    _prepare(out, num_train=16)
    _prepare(out, num_train=4)
    wavs = {p.stem for p in (out / "wav" / "train").glob("*.wav")}
    assert wavs == set(DataDir(out / "train").wav_scp())
    assert len(DataDir(out / "train")) == 4


@needs_espeak
def test_train_text_option_is_used_and_recorded(tmp_path):
    main, extra = tmp_path / "main.txt", tmp_path / "extra.txt"
    main.write_text("".join(f"Main sentence number {i} for the corpus.\n" for i in range(10)))
    extra.write_text("".join(f"Extra line {i} only for training.\n" for i in range(5)))
    out = tmp_path / "c"
    assert ms.main([str(out), "--num-train", "6", "--num-dev", "1", "--num-test", "2",
                    "--num-speakers", "2", "--num-unseen-speakers", "1", "--no-progress",
                    "--text", str(main), "--train-text", str(extra)]) == 0  # fmt: skip
    texts = DataDir(out / "train").text().values()
    assert sum(t.startswith("Main") for t in texts) == 6  # 7 main train sentences come first
    assert ms.main([str(out), "--num-train", "10", "--num-dev", "1", "--num-test", "2",
                    "--num-speakers", "2", "--num-unseen-speakers", "1", "--no-progress",
                    "--text", str(main), "--train-text", str(extra)]) == 0  # fmt: skip
    texts = list(DataDir(out / "train").text().values())
    assert sum(t.startswith("Extra") for t in texts) == 3 and len(set(texts)) == 10
    config = json.loads((out / "local" / "config.json").read_text())
    assert config["train_text"] == [str(extra)] and config["num_train_only_sentences"] == 5
    assert "train-only sha256 " in (out / "local" / "text_source.txt").read_text()


def test_bundled_train_text_is_the_package_folder():
    assert ms.resolve_train_text(["bundled"]) == [ms.TRAIN_TEXT_DIR]
    assert ms.resolve_train_text("bundled") == [ms.TRAIN_TEXT_DIR]
    assert ms.resolve_train_text(["x.txt", "bundled"]) == ["x.txt", ms.TRAIN_TEXT_DIR]
    assert ms.resolve_train_text(None) is None and ms.resolve_train_text([]) is None
    assert ms.resolve_train_text([Path("bundled")]) == [Path("bundled")]  # a Path is a path
    assert ms.TRAIN_TEXT_DIR.parent == ms.TEXT_DIR.parent == Path(ms.__file__).resolve().parent


@needs_espeak
def test_cli_train_text_bundled_is_recorded_as_its_folder(tmp_path):
    out = tmp_path / "c"
    assert ms.main([str(out), "--num-train", "2", "--num-dev", "1", "--num-test", "2",
                    "--num-speakers", "2", "--num-unseen-speakers", "1", "--no-progress", "-q",
                    "--train-text", "bundled"]) == 0  # fmt: skip
    config = json.loads((out / "local" / "config.json").read_text())
    assert config["train_text"] == [str(ms.TRAIN_TEXT_DIR)]
    assert config["num_train_only_sentences"] == len(ms.load_sentences([ms.TRAIN_TEXT_DIR]))
    source = (out / "local" / "text_source.txt").read_text()
    assert source.count("train-only sha256 ") == len(list(ms.TRAIN_TEXT_DIR.glob("*.txt")))


def test_python_m_data_prep_mini_en_help():
    help_text = subprocess.run(
        [sys.executable, "-m", "data_prep.mini_en", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert help_text.startswith("usage: python -m data_prep.mini_en ")
    for option in ("--num-train", "--num-dev", "--num-test", "--seed", "--nj", "--num-speakers",
                   "--num-unseen-speakers", "--text", "--train-text", "--accents", "--variants",
                   "--espeak", "--no-progress", "--verbose", "--quiet"):  # fmt: skip
        assert option in help_text, option
    assert "'bundled'" in help_text


@needs_espeak
def test_every_accent_takes_variants():
    """`-v en-gb+VARIANT` silently ignores the variant in espeak-ng 1.51: guard every accent."""
    exe = ms.find_espeak()
    accents, variants = ms.installed_voices(exe, list(ms.ACCENT_CODES))
    assert set(accents) == set(ms.ACCENT_CODES) and variants == list(ms.VARIANTS)
    for accent in accents:
        outs = set()
        for variant in ("m1", "f2"):
            u = ms.Utterance(
                "x-1", "dev", "x", f"{accent}+{variant}", "Good morning.", 160, 50, 80, 0, "seen"
            )
            outs.add(ms.synthesize(u, exe).tobytes())
        assert len(outs) == 2, accent


def test_cli_errors_are_one_line_and_exit_1(tmp_path, caplog):
    assert ms.main([str(tmp_path / "x"), "--espeak", "/nonexistent/espeak-ng", "-q"]) == 1
    assert "espeak-ng not found" in caplog.text
    if shutil.which("espeak-ng") or shutil.which("espeak"):
        assert ms.main([str(tmp_path / "y"), "--num-dev", "5000", "-q", "--no-progress"]) == 1
        assert "cannot give" in caplog.text


def test_accent_and_variant_pools_are_respected():
    assert cli._comma_list("en-us, en,,en-029") == ["en-us", "en", "en-029"]
    accents, variants = ["en-us", "en-029", "en"], ["m1", "m2", "f2", "klatt"]
    plan = ms.plan_corpus(
        ms.load_sentences(), num_train=10, num_dev=2, num_test=4, seed=2,
        num_speakers=5, num_unseen_speakers=3, held_out_variants=1,
        accents=accents, variants=variants,
    )  # fmt: skip
    assert {s.accent for s in plan.speakers.values()} <= set(accents)
    assert {s.variant for s in plan.speakers.values()} <= set(variants)
    assert ms.speaker_id("en-029", "Alex") == "car_alex"
