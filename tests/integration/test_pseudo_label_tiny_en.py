"""The pseudo-label stage with the real tiny.en teacher: statistics, audio-only input, bad audio,
resume after a kill, 1 vs 2 processes and jobs, caches, timestamps; a tiny random multilingual
teacher's prompts."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from recipe_helpers import kill_when

from speechdistill.cache import COMBINED_OWNER, CacheReader
from speechdistill.cli import main
from speechdistill.datadir import DataDir, read_kv
from speechdistill.datadir.ops import subset
from speechdistill.datadir.validate import validate
from speechdistill.format import format_data_dir
from speechdistill.pseudo_label import HFLabeler, PseudoLabelConfig, finalize, pseudo_label
from speechdistill.pseudo_label.stats import STATS, token_stats
from speechdistill.teachers.identity import teacher_identity
from speechdistill.utils import mark_owned


@pytest.fixture(scope="module")
def labeler(tiny_en_teacher):
    return HFLabeler.from_pretrained(tiny_en_teacher, PseudoLabelConfig(batch_size=2))


@pytest.fixture(scope="module")
def six(mini_corpus, tmp_path_factory) -> Path:
    """Six training utterances (three batches of two)."""
    return subset(mini_corpus / "train", tmp_path_factory.mktemp("six") / "data", first=6)


def _outputs(d: Path) -> dict[str, str]:
    skip = {"pseudo_label.json"}
    return {
        p.name: p.read_text() for p in sorted(d.iterdir()) if p.is_file() and p.name not in skip
    }


def test_statistics_come_from_the_raw_logits_of_the_decode(labeler, six):
    """The teacher-forced pass reproduces generate's own raw logits of the same hypothesis."""
    from speechdistill.audio import AudioReader

    reader = AudioReader(six)
    ids = reader.utt_ids[:2]
    audios = [reader(u) for u in ids]
    labels = labeler.label(ids, audios)
    model, proc = labeler.model, labeler.processor
    feats = proc.feature_extractor(audios, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        out = model.generate(feats, output_logits=True, return_dict_in_generate=True)
    eos = model.generation_config.eos_token_id
    for i, lb in enumerate(labels):
        seq = out.sequences[i, 2:].tolist()  # after <|startoftranscript|><|notimestamps|>
        n = seq.index(eos) + 1
        raw = torch.stack([step[i] for step in out.logits[:n]])
        expected = token_stats(raw, torch.tensor(seq[:n]))
        for key, value in expected.items():
            assert lb.stats[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
        assert lb.text == " ".join(proc.decode(seq[:n], skip_special_tokens=True).split())
        assert 0.0 < lb.stats["no_speech_prob"] < 0.5  # it is speech
        assert lb.stats["chars_per_sec"] == pytest.approx(len(lb.text) / (len(audios[i]) / 16000))


def test_audio_only_input_and_unreadable_audio(labeler, tiny_en_teacher, mini_corpus, tmp_path):
    # one WAV per utterance (the corpus has recordings cut by segments), so one can be broken
    data = tmp_path / "data"
    format_data_dir(subset(mini_corpus / "dev", tmp_path / "dev4", first=4), data)
    (data / "text").unlink()
    d = DataDir(data)
    wav = d.wav_scp()
    broken = sorted(wav)[2]
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    wav[broken] = str(tmp_path / "broken.wav")
    d.write("wav.scp", wav)
    (data / "utt2dur").unlink()

    out = tmp_path / "pl"
    summary = pseudo_label(tiny_en_teacher, data, out, labeler.config, labeler=labeler)
    assert summary.num_utts == 3 and summary.num_unreadable == 1
    assert broken in read_kv(out / "bad_utts")
    teacher = read_kv(out / "text.teacher")
    assert set(teacher) == set(d.utt_ids()) - {broken}
    assert all(len(t.split()) >= 3 for t in teacher.values())
    assert not (out / "text").exists()
    for stat in STATS:
        values = read_kv(out / f"utt2{stat}")
        assert set(values) == set(teacher)
        assert all(math.isfinite(float(v)) for v in values.values())
    validate(out, no_text=True)


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "speechdistill", "-q", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_resume_after_kill_equals_an_uninterrupted_run(tiny_en_teacher, six, tmp_path):
    common = ["pseudo-label", "--teacher", str(tiny_en_teacher), "--data", str(six)]
    common += ["--batch-size", "2", "--rskd-k", "8"]
    full = tmp_path / "full"
    proc = _run_cli([*common, "--out", str(full)])
    assert proc.wait(timeout=600) == 0, proc.stderr.read()

    killed = tmp_path / "killed"
    results = killed / ".pseudo_label" / "results.000-of-001.jsonl"
    cmd = [sys.executable, "-m", "speechdistill", "-q", *common, "--out", str(killed)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    kill_when(cmd, env, lambda: results.is_file() and results.read_text().count("\n") >= 1,
              timeout=300)  # fmt: skip
    assert results.read_text().count("\n") < 3  # killed mid-run
    assert not (killed / "text.teacher").exists()

    proc = _run_cli([*common, "--out", str(killed)])
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    assert _outputs(killed) == _outputs(full)
    for f in sorted((full / "cache" / "rskd").iterdir()):
        assert (killed / "cache" / "rskd" / f.name).read_bytes() == f.read_bytes()

    # other settings in the same output dir are refused, not mixed
    proc = _run_cli([*common[:-2], "--rskd-k", "4", "--out", str(killed)])
    assert proc.wait(timeout=600) == 1
    assert "other settings" in proc.stderr.read()


def _assert_same_labels(a: Path, b: Path) -> None:
    assert read_kv(a / "text.teacher") == read_kv(b / "text.teacher")
    for stat in STATS:
        va, vb = read_kv(a / f"utt2{stat}"), read_kv(b / f"utt2{stat}")
        assert va.keys() == vb.keys()
        for u in va:
            assert float(va[u]) == pytest.approx(float(vb[u]), rel=1e-3, abs=1e-5), (stat, u)


def test_two_processes_and_two_jobs_equal_one(tiny_en_teacher, six, tmp_path):
    common = ["--teacher", str(tiny_en_teacher), "--data", str(six), "--batch-size", "2"]
    one = tmp_path / "one"
    assert main(["pseudo-label", *common, "--out", str(one)]) == 0

    accelerate = Path(sys.executable).parent / "accelerate"
    two = tmp_path / "two"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    # --multi_gpu is accelerate's torch.distributed launcher; without GPUs it runs CPU processes
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "speechdistill"]
    cmd += ["pseudo-label", *common, "--out", str(two)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = sorted(p.name for p in (two / ".pseudo_label").glob("results.*.jsonl"))
    assert shards == ["results.000-of-002.jsonl", "results.001-of-002.jsonl"]
    _assert_same_labels(one, two)

    jobs = tmp_path / "jobs"
    for job in (1, 2):
        args = ["pseudo-label", *common, "--out", str(jobs), "--num-jobs", "2", "--job", str(job)]
        assert main(args) == 0
        if job == 1:
            assert not (jobs / "text.teacher").exists()  # not whole yet
            with pytest.raises(RuntimeError, match="not labelled yet"):
                finalize(six, jobs)
    assert main(["pseudo-label", *common, "--out", str(jobs), "--finalize"]) == 0
    _assert_same_labels(one, jobs)
    assert _outputs(one).keys() == _outputs(jobs).keys()


def test_cache_round_trip(labeler, tiny_en_teacher, six, tmp_path):
    config = PseudoLabelConfig(batch_size=2, cache_encoder=True, rskd_k=16, seed=3)
    lab = HFLabeler(labeler.model, labeler.processor, config)
    out = tmp_path / "pl"
    data = subset(six, tmp_path / "data", first=3)
    pseudo_label(tiny_en_teacher, data, out, config, labeler=lab)

    from speechdistill.audio import AudioReader

    reader = CacheReader(out / "cache", teacher=teacher_identity(tiny_en_teacher))
    audio = AudioReader(data)
    num_tokens = read_kv(out / "utt2num_tokens")
    for utt in audio.utt_ids:
        feats = lab.processor.feature_extractor(
            audio(utt), sampling_rate=16000, return_tensors="pt"
        ).input_features
        with torch.inference_mode():
            states = lab.model.model.encoder(feats).last_hidden_state[0]
        cached = reader.encoder(utt)
        assert cached.dtype == torch.float16 and cached.shape == (1500, 384)
        torch.testing.assert_close(cached.float(), states, atol=2e-2, rtol=1e-2)
        ids, counts, offsets = reader.rskd(utt)
        assert len(offsets) == int(num_tokens[utt]) + 1
        per_position = torch.tensor(
            [int(counts[offsets[t] : offsets[t + 1]].sum()) for t in range(len(offsets) - 1)]
        )
        assert (per_position == 16).all()
        assert ids.dtype == torch.int32 and int(ids.max()) < 51864
        # ~36 bytes a position or less: peaked teacher distributions give few distinct draws
        assert (ids.numel() * 5 + offsets.numel() * 4) / (len(offsets) - 1) < 60
    with pytest.raises(ValueError, match="teacher"):
        CacheReader(out / "cache", teacher={"weights_sha256": "another"})
    with pytest.raises(ValueError, match="30 s"):
        pseudo_label(tiny_en_teacher, data, tmp_path / "x",
                     PseudoLabelConfig(cache_encoder=True, encoder_window=10))  # fmt: skip


def test_combine_carries_the_teacher_caches(
    labeler, tiny_en_teacher, six, tmp_path, caplog, capsys
):
    """Data dirs pseudo-labelled apart, then combined, train from one cache."""
    config = PseudoLabelConfig(batch_size=2, cache_encoder=True, rskd_k=8, seed=1)
    lab = HFLabeler(labeler.model, labeler.processor, config)
    parts = []
    for name, sel in (("a", {"first": 2}), ("b", {"last": 2})):
        data = subset(six, tmp_path / f"data_{name}", **sel)
        pseudo_label(tiny_en_teacher, data, tmp_path / name, config, labeler=lab)
        parts.append(tmp_path / name)
    dst = tmp_path / "both"
    (dst / "cache").mkdir(parents=True)
    (dst / "cache" / "stale.safetensors").write_text("x")
    # a cache combine did not write is never replaced; an earlier combined cache is
    assert main(["data", "combine", str(dst), *map(str, parts)]) == 1
    assert "not written by `speechdistill data combine`" in caplog.text
    assert (dst / "cache" / "stale.safetensors").exists()
    mark_owned(dst / "cache", COMBINED_OWNER)
    assert main(["data", "combine", str(dst), *map(str, parts)]) == 0
    assert "teacher caches of 4 utterances" in capsys.readouterr().out
    assert not (dst / "cache" / "stale.safetensors").exists()
    combined = CacheReader(dst / "cache", teacher=teacher_identity(tiny_en_teacher))
    assert sorted(combined.utt_ids("encoder")) == sorted(DataDir(dst).utt_ids())
    for part in parts:
        reader = CacheReader(part / "cache")
        for utt in reader.utt_ids("rskd"):
            assert torch.equal(combined.encoder(utt), reader.encoder(utt))
            for x, y in zip(combined.rskd(utt), reader.rskd(utt), strict=True):
                assert torch.equal(x, y)
    # another sampling seed: refused before anything is written
    other = PseudoLabelConfig(batch_size=2, cache_encoder=True, rskd_k=8, seed=2)
    lab2 = HFLabeler(labeler.model, labeler.processor, other)
    data = subset(six, tmp_path / "data_c", utt_list=[DataDir(six).utt_ids()[2]])
    pseudo_label(tiny_en_teacher, data, tmp_path / "c", other, labeler=lab2)
    caplog.clear()
    assert main(["data", "combine", str(tmp_path / "x"), str(parts[0]), str(tmp_path / "c")]) == 1
    assert "differs" in caplog.text and "settings" in caplog.text
    assert not (tmp_path / "x").exists()
    # a part without a cache: the data are combined, the stale cache is removed
    shutil.rmtree(tmp_path / "c" / "cache")
    caplog.clear()
    assert main(["data", "combine", str(dst), str(parts[0]), str(tmp_path / "c")]) == 0
    assert "not combining the teacher caches" in caplog.text
    assert len(DataDir(dst)) == 3 and not (dst / "cache").exists()


def test_timestamps_and_multilingual_prompts(tmp_path, tiny_en_teacher, labeler):
    from speechdistill.testing import multilingual_tokenizer, save_random_whisper

    model_dir = save_random_whisper(
        tmp_path / "ml",
        multilingual_tokenizer(tmp_path, n_langs=5, v3=False),
        multilingual=True,
        max_source_positions=1500,
    )
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(16000 * s).astype(np.float32) * 0.1 for s in (1, 2)]
    for language in (None, "de"):
        cfg = PseudoLabelConfig(max_new_tokens=4, language=language)
        ml = HFLabeler.from_pretrained(model_dir, cfg)
        labels = ml.label(["a", "b"], audios)
        assert [lb.stats["num_tokens"] for lb in labels] == [4, 4]
        with torch.inference_mode():
            states = ml.model.model.encoder(
                ml.processor.feature_extractor(
                    audios, sampling_rate=16000, return_tensors="pt"
                ).input_features
            ).last_hidden_state
        prompts, langs = ml.prompts(states)
        gen = ml.model.generation_config
        assert [p[2:] for p in prompts] == [[gen.task_to_id["transcribe"]]] * 2
        if language == "de":
            assert langs == ["<|de|>", "<|de|>"] and prompts[0][1] == gen.lang_to_id["<|de|>"]
        else:
            assert all(lang in gen.lang_to_id for lang in langs)
    with pytest.raises(ValueError, match="English-only"):
        HFLabeler(labeler.model, labeler.processor, PseudoLabelConfig(language="pt"))


def test_timestamps(labeler, six):
    from speechdistill.audio import AudioReader

    ts = HFLabeler(labeler.model, labeler.processor, PseudoLabelConfig(return_timestamps=True))
    reader = AudioReader(six)
    utt = reader.utt_ids[0]
    (lb,) = ts.label([utt], [reader(utt)])
    (plain,) = labeler.label([utt], [reader(utt)])
    assert lb.text_ts.startswith("<|0.00|>") and lb.text_ts.endswith("|>")
    # a complete timestamped decode: the plain label is its tokens without the timestamps
    first_ts = labeler.gen.no_timestamps_token_id + 1
    assert lb.tokens == [t for t in lb.tokens_ts if t < first_ts]
    assert len(lb.tokens_ts) >= len(lb.tokens) + 2  # at least two timestamp tokens
    assert "<|" not in lb.text and plain.text
