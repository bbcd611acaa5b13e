"""The mini_en recipe end to end (real espeak-ng speech, real tiny.en teacher), on a tiny corpus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from recipe_helpers import REPO, copy_egs, run_recipe

from speechdistill.datadir import read_kv
from speechdistill.scoring import load_results


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """A copy of egs/mini_en whose ../../recipes resolves to this repository's recipes/."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it)")
    return copy_egs("mini_en", tmp_path_factory.mktemp("egs_root"))


def run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    return run_recipe(recipe, *args, timeout=1200)


def test_mini_en_recipe_end_to_end(recipe):
    # train-only text: recorded, unused by so few clips (train's own sentences come first)
    small = "--num_train 6 --num_dev 4 --num_test 10 --train_text bundled"
    short = "--max-steps 4 --batch-size 4 --warmup-steps 1 --eval-steps 2 --save-steps 2"
    proc = run(
        recipe,
        "--local_data_opts",
        small,
        "--nj",
        "2",
        "--train_opts",
        short,
        "--speed_max_utts",
        "4",
        "--decode_temperature_fallback",
        "true",
        # a 4-step student loops to the token limit at every fallback temperature: capped, it
        # takes minutes less (run.sh's long-form options, plus the cap per 30 s window)
        "--decode_max_new_tokens",
        "48",
        "--long_decode_opts",
        "--condition-on-prev-tokens false --num-beams 3 --max-new-tokens 128",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    for s in ("train_packed", "dev", "test", "test_long"):
        assert (recipe / "dump" / s / "wav.scp").is_file()
    corpus = json.loads((recipe / "data" / "local" / "config.json").read_text())
    assert corpus["train_text"] == [str(REPO / "data_prep" / "mini_en" / "sentences_train")]
    assert corpus["num_train_only_sentences"] >= 1000
    assert (recipe / "exp" / "teacher" / "model.safetensors").is_file()
    assert (recipe / "exp" / "config.sh").is_file()
    for s in ("dev", "test"):
        res = load_results(recipe / "exp" / "teacher" / f"decode_{s}" / "score_wer")
        assert res["normalizer"] == "english"
        assert res["n_utts"] == {"dev": 4, "test": 10}[s]
        assert 0.0 <= res["wer"] < 0.8  # real decoding of real (synthetic) speech
        assert res["extra"]["rtfx"] > 0  # speed from decode.json
        # decoded as 2 jobs, merged
        assert (recipe / "exp" / "teacher" / f"decode_{s}" / "split2" / "2" / "text").is_file()
    # run.sh packs the train recordings into windows, labelled with and without timestamps
    assert (recipe / "data" / "train_packed" / "window2utts").is_file()
    assert (recipe / "dump" / "train_packed_pl" / "text.teacher_ts").is_file()
    # pseudo-labels, filtered labels, a trained student that was decoded and scored too
    kept = (recipe / "dump" / "train_packed_pl_label_free" / "text.teacher").read_text()
    kept = kept.splitlines()
    assert 1 <= len(kept) <= 6
    # run.sh weights the labels (--filter_mode weight) and train reads the weights
    weights = read_kv(recipe / "dump" / "train_packed_pl_label_free" / "utt2weight")
    assert len(weights) == len(kept) and all(0 < float(w) <= 1 for w in weights.values())
    run_record = json.loads((recipe / "exp" / "student" / "train_run.json").read_text())
    assert run_record["inputs"]["sample_weights"]["sha256"]
    assert (recipe / "exp" / "student" / "model.safetensors").is_file()
    assert (recipe / "exp" / "student" / "train_log.csv").is_file()
    # the fallback decoded test and chose the checkpoint on dev
    for job in ("1", "2"):
        decoded = recipe / "exp" / "student" / "decode_test" / "split2" / job / "decode.json"
        assert json.loads(decoded.read_text())["config"]["temperature_fallback"] is True
    train_config = (recipe / "exp" / "student" / "train_config.yaml").read_text()
    assert re.search(r"^eval_temperature_fallback: true$", train_config, re.M), train_config
    student = load_results(recipe / "exp" / "student" / "decode_test" / "score_wer")
    assert student["n_utts"] == 10 and student["wer"] >= 0.0
    results_md = (recipe / "exp" / "RESULTS.md").read_text()
    assert re.search(r"^\|test\|10\|\d+\|", results_md, re.M), results_md
    assert "## teacher" in results_md and "## student" in results_md
    assert "## Label filter (`exp/filter_label_free`)" in results_md  # kept hours, AUC table
    assert "weighted hours" in results_md and "ROC-AUC" in results_md
    # test_long: the test recordings whole, decoded long-form by both models and scored
    assert re.search(r"^\|long_test_long\|2\|\d+\|", results_md, re.M), results_md  # 2 recordings
    for m in ("teacher", "student"):
        assert (recipe / "exp" / m / "decode_long_test_long" / "ctm").is_file()
        long_json = recipe / "exp" / m / "decode_long_test_long" / "decode.json"
        long_config = json.loads(long_json.read_text())["config"]
        assert long_config["num_beams"] == 3 and long_config["max_new_tokens"] == 128
        assert long_config["long_form"]["condition_on_prev_tokens"] is False
    for m in ("teacher", "student"):  # and one RESULTS.md per model, beside its decodes
        own = (recipe / "exp" / m / "RESULTS.md").read_text()
        assert f"# {m}" in own and re.search(r"^\|test\|10\|", own, re.M), own
    assert (recipe / "exp" / "student" / "speed.json").is_file()
    assert (recipe / "exp" / "student" / "log" / "speed.log").is_file()  # run as a job
    # stage 10 as the recipes' default dry run: a checked Hub folder whose card carries the WER
    from huggingface_hub import ModelCard

    hub = recipe / "exp" / "student" / "hub"
    assert (hub / "model.safetensors").is_file()
    card = ModelCard.load(hub / "README.md")
    wers = {r.dataset_name: r.metric_value for r in card.data.eval_results}
    assert wers["test"] == pytest.approx(100 * student["wer"], abs=0.01)

    # A rerun skips the finished stages; --force reruns the chosen one.
    again = run(recipe, "--stop_stage", "decode")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already done, skipping") >= 4, again.stderr
    assert "Stage 1 (prepare): start" not in again.stderr

    bad = run(recipe, "--stage", "no_such_stage")
    assert bad.returncode != 0 and "no_such_stage" in bad.stderr
