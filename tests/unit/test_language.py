"""--language end to end with tiny random models: the one check every command makes before any
work (unknown languages, a language an English-only model cannot give), the language reaching
generation (speed, dev decoding, the CTranslate2 proxy), and the language-ID score
(utt2lang_prob, the filter's lang_id). With the real multilingual base:
integration/test_language_base.py."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hubert_helpers import noise_data_dir

from speechdistill.cli import main
from speechdistill.datadir import DataDir, read_floats
from speechdistill.whisper.language import check_model_language, resolve_language


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny random multilingual Whisper (en, zh, de, es, ru) and an English-only one, with the
    real 30 s window; a data dir of 4 noise clips."""
    from speechdistill.testing import english_tokenizer, multilingual_tokenizer, save_random_whisper

    root = tmp_path_factory.mktemp("lang")
    ml = save_random_whisper(root / "ml", multilingual_tokenizer(root, n_langs=5, v3=False),
                             multilingual=True, max_source_positions=1500)  # fmt: skip
    en = save_random_whisper(root / "en", english_tokenizer(), multilingual=False,
                             max_source_positions=1500)  # fmt: skip
    return {"ml": ml, "en": en, "data": noise_data_dir(root / "data", 4, seed=3)}


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ---- the one check ---------------------------------------------------------------------------


def test_resolve_language_accepts_codes_names_and_tokens():
    lang_to_id = {"<|en|>": 1, "<|pt|>": 2}
    for form in ("pt", "portuguese", "Portuguese", "<|pt|>", " pt "):
        assert resolve_language(form, lang_to_id) == "<|pt|>"
    assert resolve_language(None, lang_to_id) is None  # detected
    with pytest.raises(ValueError, match=r"--language xx: unknown language 'xx'"):
        resolve_language("xx", lang_to_id)
    with pytest.raises(
        ValueError, match=r"--language de: the model has no language token <\|de\|>"
    ):
        resolve_language("de", lang_to_id)  # a real language the model does not know
    # English-only: English (any form) is a no-op, anything else refused
    for form in (None, "en", "English", "<|en|>"):
        assert resolve_language(form, None) is None
    with pytest.raises(ValueError, match="--language pt: the teacher is English-only"):
        resolve_language("pt", None, "the teacher")


def test_check_model_language_reads_the_config_files(models, tmp_path):
    assert check_model_language(models["ml"], "german") == "<|de|>"
    assert check_model_language(models["en"], "en") is None
    with pytest.raises(ValueError, match="English-only"):
        check_model_language(models["en"], "de", "the teacher")
    with pytest.raises(ValueError, match="multilingual: give its language"):
        check_model_language(models["ml"], None, "the student", required=True)
    # not a local Whisper dir: its loader checks
    assert check_model_language(tmp_path, "xx") is None


@pytest.mark.parametrize(
    ("model", "language", "message"),
    [
        ("ml", "xx", "unknown language 'xx'"),
        ("ml", "pt", "has no language token <|pt|>"),
        ("en", "pt", "is English-only"),
    ],
)
def test_every_command_refuses_a_bad_language_before_any_work(
    models, tmp_path, caplog, model, language, message
):
    """pseudo-label (both backends), decode (and --long-form), speed, train and filter (teacher
    and proxy): one error line naming the option and the model, and no output written."""
    m, data = str(models[model]), str(models["data"])
    out = tmp_path / "out"
    pl = noise_data_dir(tmp_path / "pl", 2, seed=4)
    DataDir(pl).write("text.teacher", DataDir(pl).read("text"))
    lang = ["--language", language]
    commands = [
        ["pseudo-label", "--teacher", m, "--data", data, "--out", str(out), *lang],
        ["decode", "--model", m, "--data", data, "--out", str(out), *lang],
        ["decode", "--long-form", "--model", m, "--data", data, "--out", str(out), *lang],
        ["speed", "--model", m, "--data", data, "--out", str(out), *lang],
        ["train", "--student", m, "--teacher", m, "--train", data, "--dev", data, "--out",
         str(out), "--label-file", "text", *lang],
        ["filter", "--data", str(pl), "--out", str(out), "--teacher", m, *lang],
        ["filter", "--data", str(pl), "--out", str(out), "--proxy", m, "--proxy-language",
         language],
    ]  # fmt: skip
    try:
        import ctranslate2  # noqa: F401

        commands.append([*commands[0], "--backend", "ct2"])
    except ImportError:
        pass
    for argv in commands:
        caplog.clear()
        assert main(argv) == 1, argv
        (line,) = errors(caplog)
        assert f"--language {language}: " in line and message in line, (argv, line)
        assert str(models[model]) in line or "the teacher" in line, line  # names the model
        assert not out.exists(), argv


def test_english_with_an_english_only_model_is_a_no_op(models, tmp_path):
    out = tmp_path / "pl"
    args = ["pseudo-label", "--teacher", str(models["en"]), "--data", str(models["data"]),
            "--out", str(out), "--max-new-tokens", "3"]  # fmt: skip
    assert main([*args, "--language", "en"]) == 0
    assert (out / "text.teacher").is_file()
    assert not (out / "utt2lang").exists() and not (out / "utt2lang_prob").exists()


# ---- the language reaches generation ---------------------------------------------------------


def first_decoder_input(model, run) -> list[int]:
    """The decoder's input ids at the first generation step of ``run()``."""
    seen: list[list[int]] = []

    def hook(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if not seen:
            seen.append(ids[0].tolist())

    handle = model.model.decoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


def test_speed_forces_the_language(models, monkeypatch):
    from speechdistill.inference.whisper import WhisperTranscriber
    from speechdistill.speed import measure_speed

    prompts = []
    real = WhisperTranscriber.generate

    def spy(self, audios, **extra):
        out = []
        run = lambda: out.append(real(self, audios, **extra))  # noqa: E731
        prompts.append(first_decoder_input(self.model, run))
        return out[0]

    monkeypatch.setattr(WhisperTranscriber, "generate", spy)
    report = measure_speed(models["ml"], models["data"], max_utts=1, batch_size=1, warmup=0,
                           language="es")  # fmt: skip
    assert report.num_utts == 1
    from transformers import GenerationConfig

    gen = GenerationConfig.from_pretrained(models["ml"])
    assert prompts and all(p[:2] == [gen.decoder_start_token_id, gen.lang_to_id["<|es|>"]]
                           for p in prompts)  # fmt: skip


def test_dev_decoding_inside_train_forces_the_language(models):
    from speechdistill.teachers.whisper import load_teacher
    from speechdistill.train.config import TrainConfig
    from speechdistill.train.whisper_kd import DevEvaluator

    model, processor = load_teacher(str(models["ml"]))
    config = TrainConfig(language="ru", eval_max_new_tokens=2)
    evaluator = DevEvaluator(models["data"], processor, config)
    t = evaluator.transcriber(model)
    audio = np.zeros(16000, dtype=np.float32)
    ids = first_decoder_input(model, lambda: t.generate([audio]))
    gen = model.generation_config
    assert ids[:3] == [gen.decoder_start_token_id, gen.lang_to_id["<|ru|>"],
                       gen.task_to_id["transcribe"]]  # fmt: skip


# ---- the language-ID score -------------------------------------------------------------------


def test_pseudo_label_writes_the_language_probabilities(models, tmp_path):
    """utt2lang (the most likely language, as transformers' detect_language finds it) and
    utt2lang_prob (the probability of --language, or of the detected language) in [0, 1]."""
    from speechdistill.audio import AudioReader
    from speechdistill.teachers.whisper import load_teacher

    base = ["pseudo-label", "--teacher", str(models["ml"]), "--data", str(models["data"]),
            "--max-new-tokens", "3"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "de"), "--language", "de"]) == 0
    assert main([*base, "--out", str(tmp_path / "auto")]) == 0
    de, auto = DataDir(tmp_path / "de"), DataDir(tmp_path / "auto")
    p_de, p_auto = read_floats(de.file("utt2lang_prob")), read_floats(auto.file("utt2lang_prob"))
    assert set(p_de) == set(auto.utt_ids()) == set(p_auto)
    assert all(0.0 <= v <= 1.0 for v in (*p_de.values(), *p_auto.values()))
    assert de.read("utt2lang") == auto.read("utt2lang")  # the same model, the same audio
    # the detected language is the one transformers detects, and the most likely one
    model, processor = load_teacher(str(models["ml"]))
    reader = AudioReader(models["data"])
    utts = reader.utt_ids
    feats = processor.feature_extractor([reader(u) for u in utts], sampling_rate=16000,
                                        return_tensors="pt").input_features  # fmt: skip
    with torch.inference_mode():
        ids = model.detect_language(input_features=feats).view(-1).tolist()
    id_to_code = {i: t[2:-2] for t, i in model.generation_config.lang_to_id.items()}
    assert auto.read("utt2lang") == {u: id_to_code[i] for u, i in zip(utts, ids, strict=True)}
    for u in utts:
        assert p_de[u] <= p_auto[u] + 1e-6  # the detected language is the most likely one
        if de.read("utt2lang")[u] == "de":
            assert math.isclose(p_de[u], p_auto[u], rel_tol=1e-4)


def test_lang_id_score_joins_the_defaults_and_rejects_other_languages(tmp_path, caplog):
    from speechdistill.filter import ScoreContext, ScoreOptions
    from speechdistill.filter.scores import default_scores

    root = noise_data_dir(tmp_path / "pl", 4, seed=5)
    d = DataDir(root)
    utts = d.utt_ids()
    d.write("text.teacher", {u: "a label" for u in utts})
    ctx = ScoreContext(d, utts, d.text("text.teacher"), {}, ScoreOptions())
    assert "lang_id" not in default_scores(ctx)  # English-only teacher: no utt2lang_prob
    out = tmp_path / "out"
    args = ["filter", "--data", str(root), "--out", str(out), "--no-plots"]
    assert main([*args, "--min-lang-prob", "0.5"]) == 1
    assert "no utt2lang_prob" in errors(caplog)[0]
    probs = dict(zip(utts, (0.97, 0.02, 0.8, 0.4), strict=True))
    d.write("utt2lang_prob", {u: f"{p:g}" for u, p in probs.items()})
    ctx = ScoreContext(d, utts, d.text("text.teacher"), {}, ScoreOptions())
    assert "lang_id" in default_scores(ctx)
    assert main([*args, "--min-lang-prob", "0.5"]) == 0
    assert DataDir(out).utt_ids() == [u for u in utts if probs[u] >= 0.5]
    assert read_floats(out / "filter" / "scores" / "utt2score_lang_id") == pytest.approx(probs)
    report = (out / "filter" / "report.md").read_text()
    assert "lang_id>=0.5" in report and "lang_id" in report
    with pytest.raises(SystemExit):  # not a probability: refused when parsed
        main([*args, "--min-lang-prob", "1.5"])


def test_long_form_and_the_ct2_proxy_force_the_language(models, tmp_path):
    """Long-form decoding gets the forced token whatever form --language had; the CTranslate2
    transcriber (a filter proxy) puts it in its prompt, and refuses an unknown language."""
    pytest.importorskip("ctranslate2")
    from speechdistill.inference import load_transcriber
    from speechdistill.inference.long_form import LongFormConfig, LongFormTranscriber
    from speechdistill.inference.whisper import DecodeConfig, WhisperTranscriber
    from speechdistill.whisper.ct2.export import export_ct2

    t = WhisperTranscriber.from_pretrained(models["ml"], DecodeConfig(language="German"))
    lf = LongFormTranscriber(t, LongFormConfig(word_timestamps=False))
    assert lf.transcriber.generate_kwargs(long_form=True)["language"] == "<|de|>"
    from speechdistill.testing import multilingual_tokenizer, save_random_whisper

    # CTranslate2 sees a model as multilingual by its vocabulary: the real layout, 99 languages
    ml99 = save_random_whisper(tmp_path / "ml99", multilingual_tokenizer(tmp_path, n_langs=99,
                               v3=False), multilingual=True, max_source_positions=1500)  # fmt: skip
    ct2_dir = export_ct2(ml99, tmp_path / "ct2")
    proxy = load_transcriber(ct2_dir, language="spanish", max_new_tokens=2)
    es = proxy.tokenizer.token_to_id("<|es|>")
    assert proxy.prompt[:2] == [proxy.tokenizer.token_to_id("<|startoftranscript|>"), es]
    with pytest.raises(ValueError, match="--language xx: unknown language"):
        load_transcriber(ct2_dir, language="xx")
