"""The ct2 (CTranslate2) backend of the pseudo-label stage against the hf one: texts, statistics,
the stage end to end, the conversion cache, timestamps, shorter windows, beams, a CTranslate2
teacher dir, the compute types and languages it refuses. Real tiny.en teacher, ≤ 6 utterances."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ctranslate2")

from whisper_helpers import ct2_like

from speechdistill.audio import AudioReader
from speechdistill.datadir import read_kv
from speechdistill.datadir.ops import subset
from speechdistill.datadir.validate import validate
from speechdistill.pseudo_label import HFLabeler, PseudoLabelConfig, pseudo_label
from speechdistill.pseudo_label.ct2 import CT2Labeler
from speechdistill.pseudo_label.stats import STATS
from speechdistill.whisper.ct2.runtime import STAMP, converted_teacher

F32 = PseudoLabelConfig(backend="ct2", dtype="float32", batch_size=2)


def _link_teacher(src: Path, dst: Path) -> Path:
    """A private view of the session teacher (symlinked files): its CT2 cache stays ours."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).symlink_to(f)
    return dst


@pytest.fixture(scope="module")
def teacher(tiny_en_teacher, tmp_path_factory) -> Path:
    return _link_teacher(tiny_en_teacher, tmp_path_factory.mktemp("ct2") / "teacher")


@pytest.fixture(scope="module")
def six(mini_corpus, tmp_path_factory) -> Path:
    return subset(mini_corpus / "train", tmp_path_factory.mktemp("six") / "data", first=6)


@pytest.fixture(scope="module")
def batch(six) -> tuple[list[str], list[np.ndarray]]:
    reader = AudioReader(six)
    return reader.utt_ids, [reader(u) for u in reader.utt_ids]


@pytest.fixture(scope="module")
def hf(teacher) -> HFLabeler:
    return HFLabeler.from_pretrained(teacher, PseudoLabelConfig(dtype="float32"))


@pytest.fixture(scope="module")
def ct2(teacher) -> CT2Labeler:
    return CT2Labeler.from_pretrained(teacher, F32)


def _timed(labeler, ids, audios):
    t0 = time.perf_counter()
    labels = labeler.label(ids, audios)
    return labels, time.perf_counter() - t0


def test_texts_and_statistics_agree_with_the_hf_backend(hf, ct2, teacher, batch, capsys):
    """float32: the same texts and, from the forced pass's raw logits, the same statistics."""
    ids, audios = batch
    ref, hf_s = _timed(hf, ids, audios)
    got, f32_s = _timed(ct2, ids, audios)
    int8 = CT2Labeler.from_pretrained(teacher, PseudoLabelConfig(backend="ct2", dtype="int8"))
    got8, int8_s = _timed(int8, ids, audios)

    same = [a.text == b.text for a, b in zip(ref, got, strict=True)]
    same8 = sum(a.text == b.text for a, b in zip(ref, got8, strict=True))
    assert sum(same) >= 5, [(a.text, b.text) for a, b in zip(ref, got, strict=True)]
    for a, b, eq in zip(ref, got, same, strict=True):
        assert a.utt == b.utt and set(b.stats) == set(STATS)
        assert all(math.isfinite(v) for v in b.stats.values())
        assert b.stats["no_speech_prob"] == pytest.approx(a.stats["no_speech_prob"], abs=1e-3)
        assert b.tokens[-1] == ct2.eos and len(b.tokens) == b.stats["num_tokens"]
        if eq:
            assert b.tokens == a.tokens
            assert b.stats["avg_logprob"] == pytest.approx(a.stats["avg_logprob"], abs=0.01)
            for key in ("entropy_mean", "entropy_max", "min_token_prob"):
                assert b.stats[key] == pytest.approx(a.stats[key], abs=0.01), key
            for key in ("compression_ratio", "max_ngram_repeat", "chars_per_sec"):
                assert b.stats[key] == a.stats[key], key
    assert all(math.isfinite(v) for lb in got8 for v in lb.stats.values())
    pairs = [(a, b) for a, b, eq in zip(ref, got, same, strict=True) if eq]
    worst = max(abs(a.stats["avg_logprob"] - b.stats["avg_logprob"]) for a, b in pairs)
    with capsys.disabled():
        print(
            f"\n[ct2] same text as hf: float32 {sum(same)}/{len(ids)}, int8 {same8}/{len(ids)}; "
            f"max |Δavg_logprob| (same texts) {worst:.1e}; one batch of {len(ids)} "
            f"({sum(len(a) for a in audios) / 16000:.1f} s audio): hf float32 {hf_s:.2f} s, "
            f"ct2 float32 {f32_s:.2f} s, ct2 int8 {int8_s:.2f} s"
        )


def test_the_stage_end_to_end(ct2, teacher, six, tmp_path):
    data = subset(six, tmp_path / "data", first=4)
    out = tmp_path / "pl"
    summary = pseudo_label(teacher, data, out, F32)  # make_labeler → CT2Labeler
    assert summary.num_utts == 4 and summary.config["backend"] == "ct2"
    texts = read_kv(out / "text.teacher")
    assert set(texts) == set(AudioReader(data).utt_ids)
    tokens = read_kv(out / "utt2teacher_tokens")
    assert set(tokens) == set(texts)
    for utt, ids in tokens.items():
        decoded = ct2.tokenizer.decode([int(t) for t in ids.split()], skip_special_tokens=True)
        assert " ".join(decoded.split()) == texts[utt]
    assert all(len(t.split()) >= 3 for t in texts.values())
    for stat in STATS:
        values = read_kv(out / f"utt2{stat}")
        assert set(values) == set(texts), stat
        assert all(math.isfinite(float(v)) for v in values.values()), stat
    validate(out)


def test_the_conversion_is_kept_and_redone_when_the_teacher_changes(tiny_en_teacher, tmp_path):
    src = _link_teacher(tiny_en_teacher, tmp_path / "teacher")
    path = converted_teacher(src, "int8")
    assert path == src / "ct2-int8" and (path / "model.bin").is_file()
    first = (path / "model.bin").stat().st_mtime_ns
    assert converted_teacher(src, "int8") == path
    assert (path / "model.bin").stat().st_mtime_ns == first  # reused

    info = json.loads((src / "teacher.json").read_text())
    info["weights_sha256"] = {"model.safetensors": "0" * 64}  # as if the teacher were replaced
    (src / "teacher.json").unlink()
    (src / "teacher.json").write_text(json.dumps(info))
    assert converted_teacher(src, "int8") == path
    assert (path / "model.bin").stat().st_mtime_ns != first
    assert (
        json.loads((path / STAMP).read_text())["teacher"]["weights_sha256"]
        == info["weights_sha256"]
    )
    assert sorted(p.name for p in src.iterdir() if p.is_dir()) == ["ct2-int8"]  # no leftovers


def test_unsupported_compute_type_and_language(ct2, teacher):
    import ctranslate2

    if "float16" not in ctranslate2.get_supported_compute_types("cpu"):
        with pytest.raises(ValueError, match="cannot compute in float16"):
            CT2Labeler.from_pretrained(teacher, PseudoLabelConfig(backend="ct2", dtype="float16"))
    with pytest.raises(ValueError, match="English-only"):
        ct2_like(ct2, PseudoLabelConfig(backend="ct2", language="pt"))


def test_timestamps_shorter_window_and_beams(hf, ct2, batch):
    ids, audios = batch[0][:2], batch[1][:2]
    ts = PseudoLabelConfig(return_timestamps=True)
    ref = HFLabeler(hf.model, hf.processor, ts).label(ids, audios)
    got = ct2_like(ct2, ts).label(ids, audios)
    for a, b in zip(ref, got, strict=True):
        assert b.text_ts == a.text_ts and b.text == a.text
        assert b.tokens_ts == a.tokens_ts and b.tokens == a.tokens  # one decode of the window
        assert b.tokens == [t for t in b.tokens_ts if t <= ct2.no_timestamps]  # no timestamps
        assert b.text_ts.startswith("<|0.00|>") and "<|" not in b.text
        # CTranslate2 masks with its timestamp rules: the chosen tokens keep more probability
        assert b.stats["avg_logprob"] >= a.stats["avg_logprob"] - 1e-4
        assert b.stats["no_speech_prob"] == pytest.approx(a.stats["no_speech_prob"], abs=1e-3)

    window = PseudoLabelConfig(encoder_window=10.0)  # every clip is ≤ 8 s: the window is used
    ref = HFLabeler(hf.model, hf.processor, window).label(ids, audios)
    got = ct2_like(ct2, window).label(ids, audios)
    for a, b in zip(ref, got, strict=True):
        assert b.text == a.text
        assert b.stats["avg_logprob"] == pytest.approx(a.stats["avg_logprob"], abs=0.01)

    beams = ct2_like(ct2, PseudoLabelConfig(num_beams=3, max_new_tokens=6)).label(ids, audios)
    assert [lb.stats["num_tokens"] for lb in beams] == [6, 6]  # cut at the limit, no EOS
    assert all(math.isfinite(v) for lb in beams for v in lb.stats.values())


def test_a_ctranslate2_teacher_dir(ct2, batch):
    """The embedded tiny.en (CTranslate2 format) labels as its transformers import does."""
    from speechdistill.teachers.source import embedded_teacher_dir

    native = CT2Labeler.from_pretrained(embedded_teacher_dir(), F32)
    ids, audios = batch[0][:2], batch[1][:2]
    for a, b in zip(ct2.label(ids, audios), native.label(ids, audios), strict=True):
        assert b.text == a.text
        assert b.stats["avg_logprob"] == pytest.approx(a.stats["avg_logprob"], abs=1e-3)
