"""Timestamps and previous-text context in every teacher mode, the caches included: the
pseudo-label stage's timestamped labels and RS-KD samples (``rskd_ts``), their alignment with
the training targets, and a few training steps in each mode, all with tiny random models."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from hubert_helpers import csv_rows, noise_data_dir, tiny_whisper_teacher
from transformers import GenerationConfig

from speechdistill.cache import CACHE_DIR, CacheIndex, CacheReader, combine_labelled, save_shard
from speechdistill.datadir import DataDir, read_kv, write_kv
from speechdistill.datadir.ops import subset
from speechdistill.init_student import init_student
from speechdistill.pseudo_label import PseudoLabelConfig, pseudo_label
from speechdistill.pseudo_label.config import plain_labels
from speechdistill.teachers.whisper import load_teacher
from speechdistill.train.config import TrainConfig
from speechdistill.train.data import KDDataset, collate
from speechdistill.train.losses import IGNORE_INDEX
from speechdistill.train.whisper_kd import train_whisper

K = 8


def _ids(path: Path, name: str) -> dict[str, list[int]]:
    return {u: [int(t) for t in v.split()] for u, v in read_kv(path / name).items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random teacher that ends its labels (EOS boosted after 5 tokens), 6 noise clips of 2
    speakers pseudo-labelled with timestamps and caches in two halves, then combined."""
    root = tmp_path_factory.mktemp("ts")
    teacher = tiny_whisper_teacher(root / "teacher")
    gen = GenerationConfig.from_pretrained(teacher)
    gen.exponential_decay_length_penalty = (5, 4.0)
    gen.save_pretrained(teacher)
    data = noise_data_dir(root / "data", 6)
    utts = sorted(DataDir(data).utt_ids())
    halves = [subset(data, root / f"half{i}", utt_list=utts[i::2]) for i in (0, 1)]
    cfg = dict(batch_size=2, cache_encoder=True, rskd_k=K)
    pls = []
    for i, half in enumerate(halves):
        pseudo_label(
            teacher, half, root / f"pl{i}", PseudoLabelConfig(return_timestamps=True, **cfg)
        )
        pls.append(root / f"pl{i}")
    pseudo_label(teacher, halves[0], root / "plain", PseudoLabelConfig(**cfg))
    combine_labelled(root / "pl", pls)
    init_student(teacher, root / "student", decoder_layers=1)
    return {"root": root, "teacher": teacher, "data": data, "pl": root / "pl",
            "parts": pls, "plain": root / "plain", "student": root / "student"}  # fmt: skip


def test_timestamped_labels_and_their_rskd_samples_are_cached(setup):
    pl = setup["pl"]
    model, _ = load_teacher(setup["teacher"])
    first_ts = model.generation_config.no_timestamps_token_id + 1
    plain, ts = _ids(pl, "utt2teacher_tokens"), _ids(pl, "utt2teacher_tokens_ts")
    assert sorted(plain) == sorted(ts) == sorted(DataDir(setup["data"]).utt_ids())
    cache = CacheReader(pl / CACHE_DIR)
    assert sorted(cache.index.shards) == ["encoder", "rskd", "rskd_ts"]
    assert cache.index.settings["timestamps"] is True
    # the plain label is the timestamped one without its timestamps, or, where that decode is
    # incomplete, the label of a run without timestamps (half 0 was also labelled so)
    without = _ids(setup["plain"], "utt2teacher_tokens")
    eos = model.generation_config.eos_token_id
    for utt, ids in plain.items():
        (complete,) = plain_labels([ts[utt]], first_ts, eos)
        assert ids == complete if complete is not None else ids == without.get(utt, ids)
    for utt in plain:
        assert ts[utt][0] >= first_ts  # Whisper's first timestamp <|0.00|>…
        assert max(plain[utt]) < first_ts
        for kind, ids in (("rskd", plain[utt]), ("rskd_ts", ts[utt])):
            _, counts, offsets = cache.rskd(utt, kind)
            assert offsets.numel() - 1 == len(ids)  # one row per label token, EOS included
            assert int(counts.sum()) == K * len(ids)
    assert "<|" in read_kv(pl / "text.teacher_ts")[utt]
    no_ts = CacheReader(setup["plain"] / CACHE_DIR)
    assert sorted(no_ts.index.shards) == ["encoder", "rskd"]
    assert no_ts.index.settings["timestamps"] is False
    assert not (setup["plain"] / "utt2teacher_tokens_ts").exists()


def test_plain_labels_of_timestamped_decodes():
    """Whisper's timestamped decodes: complete (a closed segment, then EOS) gives its text
    tokens; a lone timestamp after a closed segment, or no EOS (the length limit), is incomplete."""
    ts, eos = 100, 50  # timestamp tokens are >= 100
    assert plain_labels([[100, 1, 2, 104, 104, 3, 108, eos]], ts, eos) == [[1, 2, 3, eos]]
    assert plain_labels([[100, 1, 2, 104, 104, eos]], ts, eos) == [None]  # the rest is next
    assert plain_labels([[100, 1, 2, 3]], ts, eos) == [None]  # cut at the length limit
    assert plain_labels([[eos], [100, eos]], ts, eos) == [None, None]


def test_resume_and_combine_keep_the_timestamped_cache(setup, tmp_path):
    part = setup["parts"][0]
    before = (part / "utt2teacher_tokens_ts").read_text()
    index = json.loads((part / CACHE_DIR / "index.json").read_text())
    summary = pseudo_label(setup["teacher"], setup["root"] / "half0", part,
                           PseudoLabelConfig(return_timestamps=True, batch_size=2,
                                             cache_encoder=True, rskd_k=K))  # fmt: skip
    assert summary.num_utts == 3  # nothing relabelled: every batch was done
    assert (part / "utt2teacher_tokens_ts").read_text() == before
    assert json.loads((part / CACHE_DIR / "index.json").read_text()) == index
    # the combined dir holds both halves' timestamped labels and samples
    combined = CacheIndex.load(setup["pl"] / CACHE_DIR)
    assert len(combined.shards["rskd_ts"]) == 6 and combined.settings["timestamps"] is True
    # a cache with timestamps and one without are not combined
    with pytest.raises(ValueError, match=r"differs from .* in its settings"):
        combine_labelled(tmp_path / "mixed", [setup["parts"][1], setup["plain"]])


def _one_hot_cache(pl: Path, out: Path) -> Path:
    """A cache whose every RS-KD row is the label token itself (K draws of it), so that where
    the samples land can be read off the batch."""
    shards: dict[str, dict[str, str]] = {"encoder": {}, "rskd": {}, "rskd_ts": {}}
    tensors: dict[str, dict[str, torch.Tensor]] = {k: {} for k in shards}
    real = CacheReader(pl / CACHE_DIR)
    for kind, name in (("rskd", "utt2teacher_tokens"), ("rskd_ts", "utt2teacher_tokens_ts")):
        for utt, ids in _ids(pl, name).items():
            n = len(ids)
            tensors[kind].update({f"{utt}/ids": torch.tensor(ids, dtype=torch.int32),
                                  f"{utt}/counts": torch.full((n,), K, dtype=torch.uint8),
                                  f"{utt}/offsets": torch.arange(n + 1, dtype=torch.int32)})  # fmt: skip
            shards[kind][utt] = f"{kind}/0.safetensors"
            tensors["encoder"][utt] = real.encoder(utt)
            shards["encoder"][utt] = "encoder/0.safetensors"
    for kind, table in tensors.items():
        save_shard(out / kind / "0.safetensors", table, {})
    CacheIndex(real.index.teacher, real.index.settings, shards).save(out)
    return out


@pytest.mark.parametrize("timestamps", [False, True], ids=["plain", "ts"])
@pytest.mark.parametrize("context", [False, True], ids=["alone", "context"])
def test_cached_samples_land_on_the_label_tokens(setup, tmp_path, timestamps, context):
    """plain/timestamped label × with/without previous context: every cached row sits on the
    label token it was drawn for, timestamp tokens and EOS included, none on the prompt or the
    context."""
    model, proc = load_teacher(setup["student"])
    gen = model.generation_config
    cache = CacheReader(_one_hot_cache(setup["pl"], tmp_path / "cache"))
    cfg = TrainConfig(teacher_mode="cache", timestamp_prob=float(timestamps),
                      prev_context_prob=float(context))  # fmt: skip
    ds = KDDataset(setup["pl"], proc, gen, cfg, cache=cache)
    items = [ds[i] for i in range(len(ds))]
    batch = collate(items, gen.pad_token_id)
    sp, labels = batch["sparse"], batch["labels"]
    first_ts = gen.no_timestamps_token_id + 1
    saw_context = False
    for b, it in enumerate(items):
        start = it["rskd_start"]
        n = it["rskd"][2].numel() - 1
        expected = torch.zeros(labels.shape[1], dtype=torch.bool)
        expected[start : start + n] = True
        assert torch.equal(sp.mask[b], expected)  # exactly the label's word tokens and EOS
        assert torch.equal(sp.ids[b, start : start + n, 0], labels[b, start : start + n])
        assert labels[b, start + n - 1] == gen.eos_token_id
        assert bool((sp.weights[b, start : start + n, 0] == 1.0).all())
        words = labels[b, start : start + n - 1]
        assert bool((words >= first_ts).any()) == timestamps  # timestamp tokens only with ts
        head = labels[b, :start]
        assert (gen.no_timestamps_token_id in head.tolist()) != timestamps
        if it["decoder_input_ids"][0] != gen.decoder_start_token_id:  # <|startofprev|> c1 … cm
            saw_context = True
            assert int((head == IGNORE_INDEX).sum()) == start - (0 if timestamps else 1)
    assert saw_context == context


def test_cache_without_timestamps_is_refused_and_mismatches_name_the_utterance(setup, tmp_path):
    _, proc = load_teacher(setup["student"])
    model, _ = load_teacher(setup["student"])
    gen = model.generation_config
    cfg = TrainConfig(teacher_mode="cache", timestamp_prob=0.5)
    plain = CacheReader(setup["plain"] / CACHE_DIR)
    with pytest.raises(ValueError, match=r"^cache .*plain/cache has no RS-KD samples of "
                       "timestamped labels .*--timestamps --cache-encoder --rskd-k"):  # fmt: skip
        KDDataset(setup["plain"], proc, gen, cfg, cache=plain)
    # a timestamped label that is not the one the samples were drawn for
    pl = tmp_path / "pl"
    shutil.copytree(setup["pl"], pl, ignore=shutil.ignore_patterns(CACHE_DIR))
    ts = read_kv(pl / "utt2teacher_tokens_ts")
    utt = sorted(ts)[0]
    ids = ts[utt].split()
    ts[utt] = " ".join([ids[0], *ids[2:]])
    write_kv(pl / "utt2teacher_tokens_ts", ts)
    cfg = TrainConfig(teacher_mode="cache", timestamp_prob=1.0)
    ds = KDDataset(pl, proc, gen, cfg, cache=CacheReader(setup["pl"] / CACHE_DIR))
    with pytest.raises(ValueError, match=rf"^{utt}: the RS-KD cache \(rskd_ts\) has"):
        ds[ds.utts.index(utt)]


def test_timestamped_text_is_parsed_back_to_the_generated_ids(setup, tmp_path):
    """Data dirs without utt2teacher_tokens_ts: text.teacher_ts gives the same ids (the
    tokenizer does not know the timestamp tokens: they are parsed by their time)."""
    model, proc = load_teacher(setup["student"])
    pl = tmp_path / "pl"
    shutil.copytree(setup["pl"], pl, ignore=shutil.ignore_patterns(CACHE_DIR))
    (pl / "utt2teacher_tokens_ts").unlink()
    ds = KDDataset(pl, proc, model.generation_config, TrainConfig(timestamp_prob=1.0))
    stored = _ids(setup["pl"], "utt2teacher_tokens_ts")
    assert ds.ids_ts == {u: ids[:-1] for u, ids in stored.items()}


def _small(**kw) -> TrainConfig:
    base = dict(max_steps=2, batch_size=2, eval_steps=2, save_steps=2, log_steps=1,
                eval_batch_size=3, eval_max_new_tokens=4, warmup_steps=1, lr=1e-4,
                temperature=1.0, num_workers=0)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("mode", ["cache", "shared_encoder", "online"])
def test_every_teacher_mode_trains_with_timestamps_and_context(setup, tmp_path, mode):
    cache = str(setup["pl"] / CACHE_DIR) if mode == "cache" else None
    cfg = _small(teacher_mode=mode, cache_dir=cache, timestamp_prob=1.0, prev_context_prob=1.0)
    model, proc = load_teacher(setup["student"])
    gen = model.generation_config
    ds = KDDataset(setup["pl"], proc, gen, cfg, cache=CacheReader(cache) if cache else None)
    items = [ds[i] for i in range(len(ds))]
    prev = proc.tokenizer.convert_tokens_to_ids("<|startofprev|>")
    with_context = [it for it in items if it["decoder_input_ids"][0] == prev]
    assert len(with_context) == 4  # 2 speakers × 3 utterances: all but the first of each
    for it in items:  # every example is its timestamped label, <|0.00|> first
        first = next(t for t in it["labels"] if t != IGNORE_INDEX)
        assert first > gen.no_timestamps_token_id
        assert gen.no_timestamps_token_id not in it["decoder_input_ids"]
        if it in with_context:  # no loss on the context
            assert it["labels"][0] == IGNORE_INDEX
            sot = it["decoder_input_ids"].index(gen.decoder_start_token_id)
            assert it["labels"].index(first) == sot
            # the context is the previous label's timestamped ids, as long-form decoding prompts
            context = it["decoder_input_ids"][1:sot]
            assert context[0] > gen.no_timestamps_token_id  # it starts with <|0.00|>
            assert context in [ids[-len(context) :] for ids in ds.ids_ts.values()]
    out = tmp_path / "exp"
    summary = train_whisper(setup["student"], setup["teacher"], setup["pl"], setup["data"], out,
                            cfg)  # fmt: skip
    assert summary["steps"] == 2
    rows = csv_rows(out / "train_log.csv")
    assert len(rows) == 2
    for r in rows:
        assert all(math.isfinite(float(r[k])) and float(r[k]) > 0 for k in ("loss", "ce", "kd"))
    record = json.loads((out / "train_run.json").read_text())["config"]
    assert (record["timestamp_prob"], record["prev_context_prob"]) == (1.0, 1.0)


def test_cache_mode_with_on_policy_kd_weighs_every_term_alike(setup, tmp_path):
    """Equal utterance weights (sums under 1 a step) train the cached RS-KD, CE and on-policy
    terms exactly as no weights do (test_train_weights.py: the other modes, unequal weights)."""
    from safetensors.torch import load_file

    from speechdistill.datadir.weights import write_weights

    weighted = tmp_path / "pl_w"
    weighted.mkdir()
    for p in setup["pl"].iterdir():
        if p.is_file():
            shutil.copy2(p, weighted / p.name)
    write_weights(weighted / "utt2weight", {u: 0.01 for u in DataDir(weighted).utt_ids()})
    cfg = _small(teacher_mode="cache", cache_dir=str(setup["pl"] / CACHE_DIR),
                 on_policy_weight=0.5, grad_accum=2)  # fmt: skip
    models = []
    for name, data in (("plain", setup["pl"]), ("weighted", weighted)):
        train_whisper(setup["student"], setup["teacher"], data, setup["data"], tmp_path / name, cfg)
        models.append(load_file(tmp_path / name / "model.safetensors"))
    assert json.loads((tmp_path / "weighted" / "train_run.json").read_text())["inputs"][
        "sample_weights"
    ]["sha256"]
    for k in models[0]:
        torch.testing.assert_close(models[1][k], models[0][k], rtol=1e-4, atol=1e-5)
