"""A Whisper student on a pruned encoder (``init-student --encoder``), and KD training from the
pseudo-label caches of a student whose encoder is not the teacher's: tiny random models."""

from __future__ import annotations

import json

import pytest
import torch
from hubert_helpers import noise_data_dir, tiny_whisper_teacher
from prune_helpers import scramble_gates
from safetensors.torch import load_file
from transformers import GenerationConfig

from speechdistill.cache import CACHE_DIR
from speechdistill.init_student import init_student, read_student_info
from speechdistill.prune.gates import PruningGates
from speechdistill.prune.io import PrunedWhisperForConditionalGeneration, load_pruned, save_pruned
from speechdistill.prune.remove import prune_model
from speechdistill.pseudo_label import PseudoLabelConfig, pseudo_label
from speechdistill.teachers.whisper import load_teacher
from speechdistill.train.config import TrainConfig
from speechdistill.train.whisper_kd import train_whisper


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random teacher (its labels end), its encoder pruned (layer 1 without heads, layer 0 without FFN: a
    ``pruning`` record), 6 noise clips pseudo-labelled with the encoder and RS-KD caches."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pruned_student")
    teacher = tiny_whisper_teacher(root / "teacher")
    gen = GenerationConfig.from_pretrained(teacher)
    gen.exponential_decay_length_penalty = (5, 4.0)  # labels that end (EOS after ~5 tokens)
    gen.save_pretrained(teacher)
    encoder = load_teacher(teacher)[0].model.encoder
    gates = PruningGates(encoder, ("head", "interm"))
    scramble_gates(gates)
    gates.eval()
    prune_model(encoder, gates)
    pruned = save_pruned(encoder, root / "pruned", {"sparsity": 0.5})
    data = noise_data_dir(root / "data", 6)
    pseudo_label(teacher, data, root / "pl",
                 PseudoLabelConfig(batch_size=2, cache_encoder=True, rskd_k=4))  # fmt: skip
    return {"root": root, "teacher": teacher, "pruned": pruned, "data": data, "pl": root / "pl"}


def test_init_student_on_a_pruned_encoder(setup, tmp_path):
    info = init_student(setup["teacher"], tmp_path / "s", decoder_layers=1, encoder=setup["pruned"])
    assert not info.shares_teacher_encoder
    assert info.encoder["pruned"] is True and info.encoder["sparsity"] == 0.5
    assert read_student_info(tmp_path / "s").encoder == info.encoder
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["pruning"]["num_heads"][1] == 0 and config["decoder_layers"] == 1
    student, _ = load_teacher(tmp_path / "s")
    assert isinstance(student, PrunedWhisperForConditionalGeneration)
    enc = load_pruned(setup["pruned"])
    assert info.encoder["params"] == sum(p.numel() for p in enc.parameters())
    feats = torch.randn(1, 80, 3000)
    with torch.inference_mode():
        torch.testing.assert_close(
            student.model.encoder(feats).last_hidden_state, enc(feats).last_hidden_state
        )
    teacher = load_file(setup["teacher"] / "model.safetensors")
    mine = load_file(tmp_path / "s" / "model.safetensors")
    assert torch.equal(  # decoder layer 0 of the student is the teacher's last (layer 1)
        mine["model.decoder.layers.0.fc1.weight"], teacher["model.decoder.layers.1.fc1.weight"]
    )
    # it generates like any Whisper model
    ids = student.generate(feats, max_new_tokens=3)
    assert ids.shape[0] == 1
    with pytest.raises(ValueError, match="not both"):
        init_student(setup["teacher"], tmp_path / "t", encoder=setup["pruned"], encoder_layers=1)


@pytest.mark.parametrize("kind", ["pruned", "fewer_layers", "teacher"])
def test_cache_training_runs_the_students_own_encoder(setup, tmp_path, kind):
    """From the caches, a student whose encoder is not the teacher's reads the audio: its
    (unfrozen) encoder learns. A student with the teacher's own encoder is fed the cached
    states, which its encoder cannot learn from: training it unfrozen is refused."""
    opts = {"pruned": {"encoder": setup["pruned"]}, "fewer_layers": {"encoder_layers": 1},
            "teacher": {}}[kind]  # fmt: skip
    student = tmp_path / "student"
    init_student(setup["teacher"], student, decoder_layers=1, **opts)
    cfg = TrainConfig(teacher_mode="cache", cache_dir=str(setup["pl"] / CACHE_DIR),
                      freeze_encoder=False, max_steps=2, batch_size=2, eval_steps=2,
                      save_steps=2, log_steps=1, eval_batch_size=3, eval_max_new_tokens=4,
                      warmup_steps=0, lr=1e-3, temperature=1.0, num_workers=0)  # fmt: skip
    out = tmp_path / "out"
    if kind == "teacher":
        with pytest.raises(ValueError, match="cannot train from the cache"):
            train_whisper(student, setup["teacher"], setup["pl"], setup["data"], out, cfg)
        return
    train_whisper(student, setup["teacher"], setup["pl"], setup["data"], out, cfg)
    before, after = load_file(student / "model.safetensors"), load_file(out / "model.safetensors")
    enc = [k for k in before if k.startswith("model.encoder.layers.") and k.endswith("fc2.weight")]
    changed = [k for k in enc if not torch.equal(before[k], after[k])]
    assert changed and changed == [k for k in enc if before[k].numel()]
    trained, _ = load_teacher(out)
    assert isinstance(trained, PrunedWhisperForConditionalGeneration) == (kind == "pruned")


def test_a_pruned_student_is_refused_where_it_cannot_run(setup, tmp_path):
    """CTranslate2 and a plain transformers Hub folder cannot hold layers of different sizes:
    export and publish say so in one line, before writing anything."""
    from speechdistill.publish.folder import build_hub_folder
    from speechdistill.whisper.ct2.binary import ConversionError
    from speechdistill.whisper.ct2.export import export_ct2

    student = tmp_path / "s"
    init_student(setup["teacher"], student, decoder_layers=1, encoder=setup["pruned"])
    with pytest.raises(ConversionError, match="layers of different sizes"):
        export_ct2(student, tmp_path / "ct2")
    with pytest.raises(ValueError, match="does not load as a plain transformers model"):
        build_hub_folder(student, tmp_path / "hub")
    assert not (tmp_path / "ct2").exists() and not (tmp_path / "hub").exists()


def test_a_pruned_student_decodes_long_audio_and_runs_in_the_pipeline(setup, tmp_path):
    """Past one 30 s window, with word timestamps: ``decode --long-form`` (CTM inside the
    recording), and transformers' ASR pipeline given the model object (the folder alone needs
    this package's class)."""
    import numpy as np
    from transformers import pipeline

    from speechdistill.audio import write_wav
    from speechdistill.datadir import write_kv
    from speechdistill.decode import decode_long_form
    from speechdistill.inference.long_form import LongFormConfig
    from speechdistill.inference.whisper import DecodeConfig

    student = tmp_path / "s"
    init_student(setup["teacher"], student, decoder_layers=1, encoder=setup["pruned"])
    duration = 42.0
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(duration * 16000))).astype(np.float32)
    data = tmp_path / "data"
    data.mkdir()
    write_wav(tmp_path / "rec.wav", audio)
    write_kv(data / "wav.scp", {"rec": str(tmp_path / "rec.wav")})
    write_kv(data / "utt2spk", {"rec": "rec"})
    write_kv(data / "spk2utt", {"rec": "rec"})
    out = tmp_path / "decode"
    summary = decode_long_form(student, data, out, DecodeConfig(batch_size=1),
                               LongFormConfig(temperatures=(0.0,)))  # fmt: skip
    assert summary.num_utts == 1 and summary.num_skipped == 0
    text = dict(line.split(" ", 1) for line in (out / "text").read_text().splitlines())
    assert list(text) == ["rec"] and text["rec"].strip()
    ctm = [line.split() for line in (out / "ctm").read_text().splitlines()]
    assert ctm and all(f[0] == "rec" for f in ctm)
    assert max(float(f[2]) + float(f[3]) for f in ctm) <= duration + 0.01
    assert [f[4] for f in ctm] == text["rec"].split()
    # the pipeline, sequential long-form over the whole recording, with word timestamps
    model, processor = load_teacher(student)
    asr = pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                   feature_extractor=processor.feature_extractor)  # fmt: skip
    result = asr({"raw": audio, "sampling_rate": 16000}, return_timestamps="word",
                 generate_kwargs={"num_beams": 1})  # fmt: skip
    assert result["chunks"]
    times = [c["timestamp"] for c in result["chunks"]]
    assert all(0.0 <= s <= e <= duration + 0.1 for s, e in times if e is not None)
