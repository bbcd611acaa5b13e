"""Size and speed: latency, RTFx and speculative decoding that keeps the teacher's output."""

from __future__ import annotations

import json

from speechdistill.cli import main
from speechdistill.init_student import init_student


def test_speed_and_speculative_decoding(tmp_path, tiny_en_teacher, mini_corpus):
    student = tmp_path / "student"
    init_student(tiny_en_teacher, student, decoder_layers=2)
    out = tmp_path / "teacher" / "speed.json"
    args = ["speed", "--model", str(tiny_en_teacher), "--data", str(mini_corpus / "test"),
            "--out", str(out), "--max-utts", "2", "--batch-size", "2",
            "--assistant", str(student)]  # fmt: skip
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert r["params"]["total"] == 37_760_256  # tiny.en (the tied projection counted once)
    assert r["params"]["encoder"] + r["params"]["decoder"] == r["params"]["total"]
    assert r["num_utts"] == 2 and r["latency_b1"] > 0 and r["rtfx"] > 0
    spec = r["speculative"]
    # Verification by the teacher makes the output the teacher's, whatever the assistant proposes
    # (this untrained 2-layer student proposes badly, so no speed-up is expected here).
    assert spec["identical"] == 2 and spec["speedup"] > 0

    res = tmp_path / "RESULTS.md"
    score_dir = tmp_path / "teacher" / "decode_test" / "score_wer"
    assert main(["decode", "--model", str(tiny_en_teacher), "--data", str(mini_corpus / "test"),
                 "--out", str(score_dir.parent)]) == 0  # fmt: skip
    assert main(["score", "--ref", str(mini_corpus / "test" / "text"), "--hyp",
                 str(score_dir.parent / "text"), "--out", str(score_dir)]) == 0  # fmt: skip
    assert main(["results", "--out", str(res), str(score_dir), "--speed", str(out)]) == 0
    text = res.read_text()
    assert "## Size and speed" in text
    row = next(line for line in text.splitlines() if line.startswith("|teacher|37.76M|"))
    assert row.endswith("|2/2|")
