"""Long-form decoding with a tiny random Whisper over two generated 45 s and 62 s recordings cut
by ``segments``: the outputs' formats and ids, CTM order, resume after a kill, unreadable
recordings; the recording-level reference builder and its errors; scoring by recording. With
tiny.en: integration/test_decode_long_tiny_en.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from speechdistill.audio import AudioError, write_wav
from speechdistill.datadir import DataDirError, write_kv
from speechdistill.datadir.reco import reco_text
from speechdistill.decode import PROGRESS_DIR, decode_long_form
from speechdistill.inference.long_form import LongFormConfig, LongFormTranscriber
from speechdistill.inference.whisper import DecodeConfig, WhisperTranscriber

DURATIONS = {"recA": 45.0, "recB": 62.0}
#: fast settings for a random model: short windows of text, no fallback
CONFIG = DecodeConfig(batch_size=2, max_new_tokens=4)
FAST = LongFormConfig(temperatures=(0.0,))


def _data_dir(root: Path) -> Path:
    """wav.scp of two recordings (tones in noise), segments of 10 s, their text, utt2spk."""
    d = root / "data"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    wav_scp, segments, text, utt2spk = {}, {}, {}, {}
    for reco, dur in DURATIONS.items():
        n = int(dur * 16000)
        t = np.arange(n) / 16000
        audio = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)
        write_wav(root / f"{reco}.wav", audio.astype(np.float32))
        wav_scp[reco] = str(root / f"{reco}.wav")
        for i, start in enumerate(np.arange(0.5, dur - 10, 10.5)):
            utt = f"{reco}-{i:02d}"
            segments[utt] = f"{reco} {start:.2f} {start + 10:.2f}"
            text[utt] = f"words of {reco} part {i}"
            utt2spk[utt] = reco
    write_kv(d / "wav.scp", wav_scp)
    write_kv(d / "segments", segments)
    write_kv(d / "text", text)
    write_kv(d / "utt2spk", utt2spk)
    write_kv(d / "spk2utt", {r: " ".join(u for u in utt2spk if u.startswith(r)) for r in wav_scp})
    return d


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from speechdistill.testing import english_tokenizer, save_random_whisper

    root = tmp_path_factory.mktemp("long")
    model = save_random_whisper(
        root / "model", english_tokenizer(), multilingual=False, max_source_positions=1500
    )
    data = _data_dir(root)
    out = root / "decode"
    summary = decode_long_form(model, data, out, CONFIG, FAST)
    return {"model": model, "data": data, "out": out, "summary": summary, "root": root}


def test_outputs_are_keyed_by_recording(setup):
    out = setup["out"]
    text = dict(line.split(" ", 1) for line in (out / "text").read_text().splitlines())
    assert sorted(text) == ["recA", "recB"]
    info = json.loads((out / "decode.json").read_text())
    assert info["num_utts"] == 2 and info["num_skipped"] == 0
    assert info["audio_seconds"] == pytest.approx(sum(DURATIONS.values()))
    assert info["config"]["unit"] == "recording"
    assert info["config"]["long_form"]["temperatures"] == [0.0]
    assert info["config"]["long_form"]["no_speech_threshold"] == 0.6
    times = (out / "reco2decode_time").read_text().split()
    assert times[0::2] == ["recA", "recB"] and all(float(t) > 0 for t in times[1::2])
    assert not (out / PROGRESS_DIR).exists() and not (out / ".speechdistill.lock").exists()


def test_segments_hyp_and_ctm_formats(setup):
    out = setup["out"]
    seg_lines = (out / "segments_hyp").read_text().splitlines()
    assert seg_lines, "no hypothesised segment"
    joined = {"recA": [], "recB": []}
    for line in seg_lines:
        seg_id, reco, start, end, *words = line.split()
        assert seg_id.startswith(f"{reco}-") and reco in DURATIONS
        assert 0 <= float(start) <= float(end) <= DURATIONS[reco]
        joined[reco] += words
    text = dict(line.split(" ", 1) for line in (out / "text").read_text().splitlines())
    assert {r: " ".join(w) for r, w in joined.items()} == {r: t.strip() for r, t in text.items()}

    ctm = [line.split() for line in (out / "ctm").read_text().splitlines()]
    assert ctm, "no CTM word"
    assert all(len(f) == 5 and f[1] == "1" for f in ctm)
    keys = [(f[0], float(f[2])) for f in ctm]
    assert keys == sorted(keys)  # by recording, then time
    for reco, _, start, dur, _ in ctm:
        assert float(dur) >= 0 and float(start) + float(dur) <= DURATIONS[reco] + 0.01
    assert [f[4] for f in ctm if f[0] == "recA"] != []
    # every CTM word is a word of its recording's text
    for reco, *_, word in ctm:
        assert word in text[reco].split()


def test_resume_after_a_kill_decodes_only_the_rest(setup, monkeypatch):
    out = setup["root"] / "resume"
    config = DecodeConfig(batch_size=1, max_new_tokens=4)
    real = LongFormTranscriber.transcribe_long
    calls: list[int] = []

    def killed_after_one(self, audios):
        if calls:
            raise KeyboardInterrupt  # the kill, after one finished batch
        calls.append(len(audios))
        return real(self, audios)

    monkeypatch.setattr(LongFormTranscriber, "transcribe_long", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        decode_long_form(setup["model"], setup["data"], out, config, FAST)
    assert not (out / "text").exists()
    assert len((out / PROGRESS_DIR / "done.jsonl").read_text().splitlines()) == 2  # header + 1

    def counting(self, audios):
        calls.append(len(audios))
        return real(self, audios)

    monkeypatch.setattr(LongFormTranscriber, "transcribe_long", counting)
    decode_long_form(setup["model"], setup["data"], out, config, FAST)
    assert calls == [1, 1]  # the rerun decoded one recording, not two
    for name in ("text", "segments_hyp", "ctm"):
        assert (out / name).read_text() == (setup["out"] / name).read_text()
    assert not (out / PROGRESS_DIR).exists()


def test_unreadable_recording_is_an_error_or_a_counted_skip(setup, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    (tmp_path / "bad.wav").write_bytes(b"RIFF garbage")
    wav_scp = (data / "wav.scp").read_text() + f"recC {tmp_path / 'bad.wav'}\n"
    (data / "wav.scp").write_text(wav_scp)
    for name, line in (
        ("segments", "recC-00 recC 0 1"),
        ("text", "recC-00 x"),
        ("utt2spk", "recC-00 recC"),
        ("spk2utt", "recC recC-00"),
    ):
        (data / name).write_text((data / name).read_text() + line + "\n")
    with pytest.raises(AudioError, match="recC"):
        decode_long_form(setup["model"], data, tmp_path / "out1", CONFIG, FAST)

    # skipped: only the bad one is listed, the others are decoded (reusing the first run's work)
    out = tmp_path / "out2"
    shutil.copytree(setup["out"], out)
    config = DecodeConfig(batch_size=2, max_new_tokens=4, skip_bad=True)
    summary = decode_long_form(setup["model"], data, out, config, FAST)
    assert summary.num_skipped == 1 and summary.num_utts == 2
    assert (out / "bad_utts").read_text().startswith("recC ")
    assert "recC" not in (out / "text").read_text()


def test_refuses_a_data_dir_as_out_and_a_model_without_alignment_heads(setup, tmp_path):
    with pytest.raises(ValueError, match=r"holds wav\.scp"):
        decode_long_form(setup["model"], setup["data"], setup["data"], CONFIG, FAST)
    t = WhisperTranscriber.from_pretrained(setup["model"], CONFIG)
    del t.model.generation_config.alignment_heads
    with pytest.raises(ValueError, match="alignment_heads"):
        LongFormTranscriber(t, FAST)
    LongFormTranscriber(t, LongFormConfig(word_timestamps=False))  # fine without the CTM


def test_a_batch_whose_word_timestamps_fail_is_decoded_one_recording_at_a_time(
    setup, monkeypatch, caplog
):
    """transformers' generate raises IndexError on word timestamps when the temperature fallback
    has reduced a batch of recordings of different lengths: those recordings are decoded again one
    at a time, with the same result as an unbatched decode, and a warning says so."""
    from speechdistill.audio import read_audio

    t = WhisperTranscriber.from_pretrained(setup["model"], CONFIG)
    lf = LongFormTranscriber(t, FAST)
    audios = [read_audio(str(setup["root"] / f"{r}.wav"), utt_id=r) for r in DURATIONS]
    alone = [lf.transcribe_long([a])[0] for a in audios]
    generate = t.model.generate

    def failing_in_batches(*args, **kwargs):
        if kwargs["input_features"].shape[0] > 1:
            raise IndexError("index 0 is out of bounds for dimension 0 with size 0")
        return generate(*args, **kwargs)

    monkeypatch.setattr(t.model, "generate", failing_in_batches)
    with caplog.at_level("WARNING", logger="speechdistill.inference.long_form"):
        batched = lf.transcribe_long(audios)
    assert [r.text for r in batched] == [r.text for r in alone]
    assert [len(r.segments) for r in batched] == [len(r.segments) for r in alone]
    assert "decoding them one at a time" in caplog.text
    # without word timestamps nothing is retried: the error is not swallowed
    plain = LongFormTranscriber(t, LongFormConfig(temperatures=(0.0,), word_timestamps=False))
    with pytest.raises(IndexError):
        plain.transcribe_long(audios)


def test_beams_with_word_timestamps_decode_one_recording_at_a_time(setup, monkeypatch):
    """With beams, transformers' batched word timestamps fail: a batch is decoded one recording
    at a time from the start (each generate call sees one), with the unbatched result."""
    from speechdistill.audio import read_audio

    t = WhisperTranscriber.from_pretrained(
        setup["model"], DecodeConfig(num_beams=2, max_new_tokens=4)
    )
    lf = LongFormTranscriber(t, FAST)
    audios = [read_audio(str(setup["root"] / f"{r}.wav"), utt_id=r) for r in DURATIONS]
    alone = [lf.transcribe_long([a])[0] for a in audios]
    generate, sizes = t.model.generate, []

    def counting(*args, **kwargs):
        sizes.append(kwargs["input_features"].shape[0])
        return generate(*args, **kwargs)

    monkeypatch.setattr(t.model, "generate", counting)
    batched = lf.transcribe_long(audios)
    assert sizes == [1, 1]
    assert [r.text for r in batched] == [r.text for r in alone]
    # greedy, the batch goes to generate whole
    sizes.clear()
    t.config.num_beams = 1
    lf.transcribe_long(audios)
    assert sizes == [2]


def test_long_form_settings_reach_generate():
    kwargs = LongFormConfig().generate_kwargs()
    assert kwargs["temperature"] == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert kwargs["compression_ratio_threshold"] == 1.35
    assert kwargs["logprob_threshold"] == -1.0
    assert kwargs["no_speech_threshold"] == 0.6
    assert kwargs["condition_on_prev_tokens"] is True
    assert kwargs["return_timestamps"] and kwargs["return_token_timestamps"]
    off = LongFormConfig(temperatures=(0.0,), no_speech_threshold=None).generate_kwargs()
    assert off["temperature"] == 0.0 and "no_speech_threshold" not in off


# recording-level references -------------------------------------------------------------------


def _segmented(tmp_path: Path, segments: dict[str, str], text: dict[str, str]) -> Path:
    d = tmp_path / "d"
    d.mkdir(exist_ok=True)
    write_kv(d / "wav.scp", {"r1": "r1.wav", "r2": "r2.wav"})
    write_kv(d / "segments", segments)
    write_kv(d / "text", text)
    write_kv(d / "utt2spk", {u: "s" for u in text})
    return d


def test_reco_text_joins_utterances_in_start_order(tmp_path):
    # ids in C order are not time order: r1-b starts first
    d = _segmented(
        tmp_path,
        {"r1-a": "r1 5.0 9.0", "r1-b": "r1 0.5 4.0", "r1-c": "r1 9.0 -1"},
        {"r1-a": "second  part", "r1-b": "first", "r1-c": "third"},
    )
    assert reco_text(d) == {"r1": "first second part third", "r2": ""}


def test_reco_text_errors_name_the_culprits(tmp_path):
    d = _segmented(
        tmp_path,
        {"r1-a": "r1 0.0 5.0", "r1-b": "r1 4.5 8.0"},
        {"r1-a": "a", "r1-b": "b"},
    )
    with pytest.raises(DataDirError, match="'r1-a' and 'r1-b' overlap in recording 'r1'"):
        reco_text(d)
    d = _segmented(tmp_path, {"r1-a": "r1 0.0 5.0"}, {"r1-a": "a", "r1-z": "z"})
    with pytest.raises(DataDirError, match="'r1-z' has no segment"):
        reco_text(d)
    d = _segmented(
        tmp_path, {"r1-a": "r1 0.0 -1", "r1-b": "r1 6.0 7.0"}, {"r1-a": "a", "r1-b": "b"}
    )
    with pytest.raises(DataDirError, match="overlap"):  # -1: to the end of the recording
        reco_text(d)


def test_reco_text_without_segments_is_the_text(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write_kv(d / "wav.scp", {"u1": "u1.wav"})
    write_kv(d / "text", {"u1": "hello  world"})
    assert reco_text(d) == {"u1": "hello world"}


def test_cli_reco_text_and_long_form_score_count_deletions(tmp_path, capsys):
    from speechdistill.cli import main

    d = _segmented(
        tmp_path,
        {"r1-a": "r1 0.0 5.0", "r1-b": "r1 5.0 9.0", "r2-a": "r2 1.0 2.0"},
        {"r1-a": "red green blue", "r1-b": "cat dog cow", "r2-a": "sun moon"},
    )
    ref = tmp_path / "reco_text"
    assert main(["data", "reco-text", str(d), str(ref)]) == 0
    assert ref.read_text() == "r1 red green blue cat dog cow\nr2 sun moon\n"
    hyp = tmp_path / "exp" / "m" / "decode_long_x" / "text"
    hyp.parent.mkdir(parents=True)
    hyp.write_text("r1 red green blue\nr2 sun moon\n")  # the second window dropped
    out = hyp.parent / "score_wer"
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"] == "long_x" and res["n_utts"] == 2
    assert res["normalized"]["words"]["del"] == 3 and res["normalized"]["words"]["ins"] == 0


def test_cli_long_form_options_reach_decode_json(setup, tmp_path):
    from speechdistill.cli import main

    out = tmp_path / "cli"
    argv = ["decode", "--long-form", "--model", str(setup["model"]), "--data", str(setup["data"])]
    argv += ["--out", str(out), "--max-new-tokens", "4", "--fallback-temperatures", "0"]
    argv += ["--no-speech-threshold", "none", "--condition-on-prev-tokens", "false"]
    assert main(argv) == 0
    lf = json.loads((out / "decode.json").read_text())["config"]["long_form"]
    assert lf["temperatures"] == [0.0] and lf["no_speech_threshold"] is None
    assert lf["condition_on_prev_tokens"] is False and lf["compression_ratio_threshold"] == 1.35
    assert (out / "text").read_text().split()[0] == "recA"
