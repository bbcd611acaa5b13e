"""The filter stage: scores on hand-checkable cases, the rule language, diagnostics, the stage.
With the real tiny.en teacher: integration/test_filter_tiny_en.py."""

from __future__ import annotations

import json
import math
import random
import zlib
from pathlib import Path

import numpy as np
import pytest

from speechdistill.cli import main
from speechdistill.datadir import DataDir, DataDirError, read_kv, validate, write_kv
from speechdistill.filter import (
    FilterConfig,
    RuleError,
    ScoreContext,
    ScoreOptions,
    choose_auto,
    compute_score,
    filter_data_dir,
    label_quality,
    parse_rule,
    roc_auc,
    select,
)
from speechdistill.filter.diagnostics import LabelQuality, selection_metrics, sweep
from speechdistill.filter.scores import agreement, cps_score
from speechdistill.filter.select import percentile_ranks

NAN = float("nan")


def write_pl_dir(
    path: Path,
    labels: dict[str, str],
    *,
    refs: dict[str, str] | None = None,
    stats: dict[str, dict[str, float]] | None = None,
    durations: dict[str, float] | None = None,
) -> Path:
    """A pseudo-labelled data dir as the pseudo_label stage writes it (audio paths are fake)."""
    path.mkdir(parents=True, exist_ok=True)
    d = DataDir(path)
    d.write("wav.scp", {u: f"/nonexistent/{u}.wav" for u in labels})
    d.write_utt2spk({u: u.split("-")[0] for u in labels})
    d.write("text.teacher", labels)
    d.write("utt2dur", {u: f"{(durations or {}).get(u, 2.0):g}" for u in labels})
    if refs is not None:
        d.write("text", refs)
    for name, values in (stats or {}).items():
        d.write(f"utt2{name}", {u: f"{v:.6g}" for u, v in values.items()})
    return path


def ctx_for(path: Path, **options) -> ScoreContext:
    d = DataDir(path)
    labels = d.text("text.teacher")
    refs = d.text("text") if d.exists("text") else {}
    return ScoreContext(d, d.utt_ids(), labels, refs, ScoreOptions(**options))


# --------------------------------------------------------------------------------------------------
# scores


def test_statistic_scores_are_signed_so_higher_is_better(tmp_path):
    labels = {"s-a": "good label", "s-b": "bad label", "s-c": "no stats"}
    stats = {
        "avg_logprob": {"s-a": -0.1, "s-b": -2.5},
        "entropy_mean": {"s-a": 0.2, "s-b": 1.5},
        "entropy_max": {"s-a": 1.0, "s-b": 4.0},
        "min_token_prob": {"s-a": 0.6, "s-b": 0.01},
        "no_speech_prob": {"s-a": 0.05, "s-b": 0.9},
    }
    ctx = ctx_for(write_pl_dir(tmp_path / "d", labels, stats=stats))
    got = {n: compute_score(n, ctx) for n in ("confidence", "entropy_mean", "entropy_max")}
    got |= {n: compute_score(n, ctx) for n in ("min_token_prob", "no_speech")}
    assert got["confidence"]["s-a"] == pytest.approx(-0.1)
    assert got["entropy_mean"]["s-b"] == pytest.approx(-1.5)
    assert got["entropy_max"]["s-a"] == pytest.approx(-1.0)
    assert got["min_token_prob"]["s-b"] == pytest.approx(0.01)
    assert got["no_speech"]["s-b"] == pytest.approx(0.1)
    for values in got.values():
        assert values["s-a"] > values["s-b"]  # the good label scores higher on every statistic
        assert math.isnan(values["s-c"])  # missing statistic: NaN, not an error


def test_statistic_score_without_its_file_names_it(tmp_path):
    ctx = ctx_for(write_pl_dir(tmp_path / "d", {"s-a": "x"}))
    with pytest.raises(ValueError, match=r"utt2avg_logprob.*pseudo_label"):
        compute_score("confidence", ctx)
    with pytest.raises(ValueError, match="unknown score 'confidense'"):
        compute_score("confidense", ctx)
    with pytest.raises(ValueError, match="--proxy"):
        compute_score("proxy_wer", ctx)


def test_ngram_repeat_score_by_hand(tmp_path):
    labels = {
        "s-a": "a b c d",
        "s-b": "go to go to go to bed",  # a bigram three times
        "s-c": "x a b c a b c a b c y",  # a trigram, not at the start
        "s-d": "a b c d e a b c d e",  # 5-grams are not counted
        "s-e": "No no NO",  # case is ignored
    }
    ctx = ctx_for(write_pl_dir(tmp_path / "d", labels))
    got = compute_score("ngram_repeat", ctx)
    assert got == {"s-a": -1.0, "s-b": -3.0, "s-c": -3.0, "s-d": -1.0, "s-e": -3.0}


def test_text_heuristics_from_the_label_when_statistics_are_missing(tmp_path):
    labels = {
        "s-a": "hello there friend",  # 18 chars in 2 s: 9 cps
        "s-b": "thank you " * 20,  # 199 chars in 2 s: far above 25 cps
        "s-c": "",
        "s-d": "[Music]",  # the english normaliser removes bracketed annotations
    }
    ctx = ctx_for(write_pl_dir(tmp_path / "d", labels, durations={"s-c": 4.0}))
    ratio = compute_score("compression_ratio", ctx)
    raw = b"hello there friend"
    assert ratio["s-a"] == pytest.approx(-len(raw) / len(zlib.compress(raw)))
    assert ratio["s-b"] < -2.4 and ratio["s-c"] == 0.0
    rep = compute_score("ngram_repeat", ctx)
    assert rep == {"s-a": -1.0, "s-b": -20.0, "s-c": 0.0, "s-d": -1.0}  # empty: 0 (stats)
    cps = compute_score("chars_per_sec", ctx)
    assert cps["s-a"] == 0.0  # inside [5, 25]
    assert cps["s-b"] == pytest.approx(-(199 / 2 - 25))
    assert cps["s-c"] == pytest.approx(-5.0)  # 0 cps: 5 below the range
    assert compute_score("empty", ctx) == {"s-a": 1.0, "s-b": 1.0, "s-c": 0.0, "s-d": 0.0}
    assert cps_score(4.0, 5.0, 25.0) == -1.0 and cps_score(25.0, 5.0, 25.0) == 0.0


def test_heuristics_prefer_the_pseudo_label_statistics(tmp_path):
    stats = {"compression_ratio": {"s-a": 3.0}, "max_ngram_repeat": {"s-a": 5}}
    stats["chars_per_sec"] = {"s-a": 40.0}
    ctx = ctx_for(write_pl_dir(tmp_path / "d", {"s-a": "plain words"}, stats=stats))
    assert compute_score("compression_ratio", ctx) == {"s-a": -3.0}
    assert compute_score("ngram_repeat", ctx) == {"s-a": -5.0}
    assert compute_score("chars_per_sec", ctx) == {"s-a": -15.0}


def test_agreement_rates_by_hand():
    others = {"u1": "a b c d", "u2": "", "u3": "", "u4": "Hello, World!"}
    labels = {"u1": "a b x d", "u2": "two words", "u3": "", "u4": "hello world", "u5": "extra"}
    a = agreement(others, labels, "english")
    assert a.wer == {"u1": 0.25, "u2": 2.0, "u3": 0.0, "u4": 0.0}  # empty ref counts as 1 word
    assert a.cer["u1"] == pytest.approx(1 / 7)  # "a b c d": 7 characters, one substituted
    assert a.empty_ref == {"u2", "u3"}


def test_supervised_wer_is_nan_without_a_usable_reference(tmp_path):
    labels = {"s-a": "the cat sat", "s-b": "a dog", "s-c": "noise", "s-d": "fine"}
    refs = {"s-a": "the cat sat", "s-b": "the dog barked", "s-c": "[noise]", "s-d": "fine"}
    path = write_pl_dir(tmp_path / "d", labels, refs=refs)
    ctx = ctx_for(path)
    ctx.refs.pop("s-d")  # a reference for only some utterances
    sup = compute_score("supervised_wer", ctx)
    assert sup["s-a"] == 0.0
    assert sup["s-b"] == pytest.approx(-2 / 3)  # "a dog" vs "the dog barked": 1 sub + 1 del
    assert math.isnan(sup["s-c"])  # normalises to nothing: unknown WER (distil-whisper drops it)
    assert math.isnan(sup["s-d"])


# --------------------------------------------------------------------------------------------------
# rules


KNOWN = ["confidence", "entropy_mean", "proxy_wer"]


@pytest.mark.parametrize(
    ("text", "canonical", "kind"),
    [
        ("confidence>=-0.6", "confidence>=-0.6", "threshold"),
        (" confidence > -1e-1 ", "confidence>-0.1", "threshold"),
        ("proxy_wer<0", "proxy_wer<0", "threshold"),
        ("top:80%:confidence", "top:80%:confidence", "top_pct"),
        (
            "top: 25 :rank_avg(confidence, proxy_wer)",
            "top:25:rank_avg(confidence,proxy_wer)",
            "top",
        ),
        ("hours:1.5:entropy_mean", "hours:1.5:entropy_mean", "hours"),
        (
            "rank_avg(confidence,entropy_mean)>=0.5",
            "rank_avg(confidence,entropy_mean)>=0.5",
            "threshold",
        ),
        ("auto", "auto", "auto"),
    ],
)
def test_rules_parse(text, canonical, kind):
    rule = parse_rule(text, KNOWN)
    assert rule.kind == kind and rule.text == canonical
    assert parse_rule(rule.text, KNOWN) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("confidense>=0", "unknown score 'confidense'"),
        ("confidence>=high", "not a number"),
        ("confidence=>0", "expected SCORE>=X"),
        ("top:0%:confidence", r"\(0, 100\]"),
        ("top:120%:confidence", r"\(0, 100\]"),
        ("top:2.5:confidence", "positive integer"),
        ("hours:-1:confidence", "positive"),
        ("rank_avg(confidence,confidence)>=0", "twice"),
        ("confidence>=nan", "finite"),
        ("", "empty"),
    ],
)
def test_bad_rules_say_why(text, message):
    with pytest.raises(RuleError, match=message):
        parse_rule(text, KNOWN)


def test_percentile_ranks_and_rank_average_by_hand():
    utts = ["u1", "u2", "u3", "u4"]
    a = {"u1": 1.0, "u2": 2.0, "u3": 3.0, "u4": NAN}
    b = {"u1": 3.0, "u2": 2.0, "u3": 2.0, "u4": 1.0}
    assert percentile_ranks(a, utts) == {"u1": 0.5, "u2": 0.75, "u3": 1.0, "u4": 0.25}
    assert percentile_ranks(b, utts) == {"u1": 1.0, "u2": 0.625, "u3": 0.625, "u4": 0.25}
    rule = parse_rule("rank_avg(a,b)>=0.8")
    values = rule.expr.values({"a": a, "b": b}, utts)
    assert values == {"u1": 0.75, "u2": 0.6875, "u3": 0.8125, "u4": 0.25}
    assert select([rule], {"a": a, "b": b}, utts, {}).kept == {"u3"}


def test_select_thresholds_quotas_and_their_order():
    utts = [f"u{i}" for i in range(1, 7)]
    conf = {"u1": -0.1, "u2": -0.5, "u3": -0.3, "u4": NAN, "u5": -0.3, "u6": -2.0}
    empty = {"u1": 1.0, "u2": 1.0, "u3": 0.0, "u4": 1.0, "u5": 1.0, "u6": 1.0}
    dur = {"u1": 3600.0, "u2": 1800.0, "u3": 900.0, "u4": 100.0, "u5": 1800.0, "u6": 10.0}
    scores = {"confidence": conf, "empty": empty}

    def kept(*rules):
        return select([parse_rule(r) for r in rules], scores, utts, dur).kept

    assert kept("confidence>=-0.3") == {"u1", "u3", "u5"}  # NaN fails
    assert kept("confidence>-0.3") == {"u1"}
    assert kept("confidence<-0.3") == {"u2", "u6"}
    assert kept("top:50%:confidence") == {"u1", "u3", "u5"}  # tie -0.3 broken by id
    assert kept("top:2:confidence") == {"u1", "u3"}
    assert kept("top:100%:confidence") == set(utts)  # NaN ranks last but is in the top 100 %
    assert kept("hours:1.5:confidence") == {"u1", "u3"}  # 1 h + 0.25 h; u5 would exceed
    # quotas come after the thresholds, whatever the order of the rules
    sel = select([parse_rule("top:2:confidence"), parse_rule("empty>=1")], scores, utts, dur)
    assert sel.kept == {"u1", "u5"}
    assert [o.rule for o in sel.outcomes] == ["empty>=1", "top:2:confidence"]
    assert sel.outcomes[1].alone == {"u1", "u3"} and sel.outcomes[1].after == {"u1", "u5"}
    with pytest.raises(ValueError, match="auto"):
        select([parse_rule("auto")], scores, utts, dur)


# --------------------------------------------------------------------------------------------------
# diagnostics


def test_roc_auc_by_hand():
    bad = {"g1": False, "g2": False, "b1": True, "b2": True}
    # pairs (good, bad): (3,1) (3,2) (2,1) win, (2,2) ties: (3 + 0.5) / 4
    assert roc_auc({"g1": 3, "g2": 2, "b1": 1, "b2": 2}, bad) == 0.875
    assert roc_auc({"g1": 0, "g2": 0, "b1": 1, "b2": 1}, bad) == 0.0
    assert roc_auc({"g1": 5, "g2": 5, "b1": 5, "b2": 5}, bad) == 0.5
    assert roc_auc({"g1": 0, "g2": -9, "b1": NAN, "b2": -9}, bad) == 0.875  # NaN ranks lowest
    assert roc_auc({"g1": 1}, {"g1": False}) is None  # one class only


def test_sweep_counts_and_selection_metrics_by_hand():
    bad = {"a": False, "b": False, "c": True, "d": True, "e": False}
    values = {"a": 0.9, "b": 0.5, "c": 0.5, "d": 0.1, "e": NAN}
    s = sweep(values, bad)
    assert s.thresholds.tolist() == [0.9, 0.5, 0.1]
    assert s.good_kept.tolist() == [1, 2, 2] and s.bad_kept.tolist() == [0, 1, 2]
    assert s.objective("f1") == pytest.approx([2 / 4, 4 / 6, 4 / 7])
    assert s.objective("youden") == pytest.approx([1 / 3, 2 / 3 - 1 / 2, 2 / 3 - 1])
    q = LabelQuality(
        {u: 0.5 if b else 0.0 for u, b in bad.items()},
        {"a": 0, "b": 0, "c": 2, "d": 3, "e": 0},
        {u: 4 for u in bad},
    )
    m = selection_metrics({"a", "b", "c"}, bad, q)
    assert (m["kept"], m["good_kept"], m["bad_kept"]) == (3, 2, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["bad_removed"] == 0.5
    assert m["label_wer_all"] == pytest.approx(5 / 20) and m["label_wer_kept"] == pytest.approx(
        2 / 12
    )


def test_choose_auto_by_hand():
    quality = LabelQuality(
        {"a": 0.0, "b": 0.1, "c": 0.5, "d": 0.9, "e": 0.0, "f": 0.6},
        dict.fromkeys("abcdef", 1),
        dict.fromkeys("abcdef", 2),
    )
    good_score = {"a": -0.1, "b": -0.2, "c": -1.0, "d": -2.0, "e": -0.3, "f": -1.5}
    noise = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 0.0, "e": 0.5, "f": 4.0}
    choice = choose_auto({"confidence": good_score, "noise": noise}, quality, bad_wer=0.4)
    # keeps a, b, e (>= -0.3); the threshold sits halfway to the next value seen (-1.0)
    assert choice.score == "confidence" and choice.threshold == pytest.approx(-0.65)
    assert choice.metrics["precision"] == 1.0 and choice.metrics["recall"] == 1.0
    assert choice.rule.text == "confidence>=-0.65" and choice.rule.origin == "auto"
    assert [c["score"] for c in choice.candidates] == ["confidence", "noise"]
    with pytest.raises(ValueError, match="both good and bad"):
        choose_auto({"confidence": good_score}, quality, bad_wer=0.95)


def test_label_quality_uses_the_normaliser():
    q = label_quality({"u1": "Hello, world!", "u2": "one two"}, {"u1": "hello world", "u2": "one"})
    assert q.wer == {"u1": 0.0, "u2": 1.0}
    assert q.pooled_wer(["u1", "u2"]) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------------------------------
# the stage on a generated corpus whose label quality is known

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")
RATES = (0.0, 0.125, 0.25, 0.5, 1.0)  # share of the 8 reference words replaced in the label


def known_quality_corpus(path: Path, n: int = 60, *, with_text: bool = True, seed: int = 0):
    """Labels with a known WER: utterance i replaces RATES[i % 5] of its 8 words.

    ``confidence`` tracks the damage (2 nats a fully wrong label, tiny noise); ``entropy_mean`` is
    pure noise; ``min_token_prob`` equals the damage (an inverted score).
    """
    rng = random.Random(seed)
    labels, refs, dur = {}, {}, {}
    stats: dict[str, dict[str, float]] = {
        k: {} for k in ("avg_logprob", "entropy_mean", "min_token_prob")
    }
    rates = {}
    for i in range(n):
        utt = f"spk{i % 3}-utt{i:03d}"
        ref = [rng.choice(WORDS) for _ in range(8)]
        rate = RATES[i % len(RATES)]
        hit = rng.sample(range(8), round(rate * 8))
        labels[utt] = " ".join("zulu" if j in hit else w for j, w in enumerate(ref))
        refs[utt] = " ".join(ref)
        dur[utt] = 2.0 + i % 4
        stats["avg_logprob"][utt] = -0.1 - 2 * rate + rng.gauss(0, 0.01)
        stats["entropy_mean"][utt] = rng.uniform(0.2, 2.0)
        stats["min_token_prob"][utt] = rate
        rates[utt] = rate
    write_pl_dir(path, labels, refs=refs if with_text else None, stats=stats, durations=dur)
    return rates, refs


def test_stage_diagnostics_and_auto_on_known_label_quality(tmp_path):
    rates, _ = known_quality_corpus(tmp_path / "pl")
    result = filter_data_dir(
        FilterConfig(tmp_path / "pl", tmp_path / "out", exp_dir=tmp_path / "exp", keep=["auto"])
    )
    r = json.loads((tmp_path / "exp" / "report.json").read_text())
    d = r["diagnostics"]
    assert d["n_labelled"] == 60
    assert d["counts"]["0.2"] == {"n_good": 24, "n_bad": 36}
    assert d["counts"]["0.4"] == {"n_good": 36, "n_bad": 24}
    assert d["counts"]["0.8"] == {"n_good": 48, "n_bad": 12}
    for t in ("0.2", "0.4", "0.8"):
        assert d["auc"]["confidence"][t] == 1.0
        assert d["auc"]["min_token_prob"][t] == 0.0  # perfectly inverted
        assert d["auc"]["empty"][t] == 0.5  # constant: no information
        assert 0.25 < d["auc"]["entropy_mean"][t] < 0.75  # noise
    assert "supervised_wer" not in d["auc"]  # it uses the reference: not a label-free candidate
    # auto picks confidence and the threshold that separates WER <= 0.25 from WER >= 0.5
    assert result.auto is not None and result.auto.score == "confidence"
    assert set(result.kept) == {u for u, rate in rates.items() if rate <= 0.25}
    assert r["auto"]["metrics"]["precision"] == 1.0 and r["auto"]["metrics"]["recall"] == 1.0
    assert r["auto"]["heldout"]["f1"] == 1.0
    sel = d["selection"]["0.4"]
    assert (sel["precision"], sel["recall"], sel["bad_removed"]) == (1.0, 1.0, 1.0)
    # kept: 12 labels with 0, 12 with 1 and 12 with 2 of their 8 words wrong
    assert sel["label_wer_kept"] == pytest.approx((12 * 1 + 12 * 2) / (36 * 8))
    # the output: a valid data dir with the kept utterances, their labels and scores
    out = DataDir(tmp_path / "out")
    validate(out.path)
    assert out.utt_ids() == sorted(result.kept)
    assert set(read_kv(out.file("utt2score_confidence"))) == set(result.kept)
    assert len(read_kv(tmp_path / "exp" / "scores" / "utt2score_confidence")) == 60
    assert r["kept"]["utts"] == 36 and r["dropped"]["utts"] == 24
    assert r["rules"][0]["origin"] == "auto" and r["rules"][0]["after"]["utts"] == 36
    md = (tmp_path / "exp" / "report.md").read_text()
    assert "## Diagnostics" in md and "`confidence` | 1.000 | 1.000 | 1.000" in md
    for p in r["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {Path(p).name for p in r["plots"]} >= {"roc.png", "hist_confidence.png"}


def test_stage_labelled_subset_chooses_and_applies_to_the_rest(tmp_path):
    rates, refs = known_quality_corpus(tmp_path / "pl", with_text=False)
    labelled = sorted(rates)[:20]
    write_kv(tmp_path / "dev_text", {u: refs[u] for u in labelled})
    result = filter_data_dir(
        FilterConfig(
            tmp_path / "pl",
            tmp_path / "out",
            ref=tmp_path / "dev_text",
            keep=["auto", "hours:0.02:confidence"],
            objective="youden",
            plots=False,
        )
    )
    r = result.report
    assert r["diagnostics"]["n_labelled"] == 20 and r["plots"] == []
    assert result.auto.score == "confidence"
    # the rule chosen on 20 utterances holds on the 40 others too (known quality)
    assert all(rates[u] <= 0.25 for u in result.kept)
    # then the best 0.02 h (72 s) of those by confidence: a prefix of their ranking
    conf = result.scores["confidence"]
    passed = sorted((u for u in rates if conf[u] >= result.auto.threshold), key=lambda u: -conf[u])
    dur = {u: 2.0 + int(u[-3:]) % 4 for u in rates}
    n = len(result.kept)
    assert set(result.kept) == set(passed[:n])
    assert sum(dur[u] for u in passed[:n]) <= 72 < sum(dur[u] for u in passed[: n + 1])
    assert r["rules"][1]["rule"] == "hours:0.02:confidence"
    assert r["kept"]["hours"] <= 0.02
    assert not (tmp_path / "out" / "text").exists()
    validate(tmp_path / "out", no_text=True)
    assert (tmp_path / "out" / "filter" / "report.md").is_file()  # the default exp dir


def test_stage_without_any_reference(tmp_path):
    known_quality_corpus(tmp_path / "pl", with_text=False)
    result = filter_data_dir(
        FilterConfig(
            tmp_path / "pl",
            tmp_path / "out",
            keep=["confidence>=-0.7", "ngram_repeat>=-3", "empty>=1"],
        )
    )
    assert len(result.kept) == 36
    assert "diagnostics" not in result.report and result.report["plots"] == []
    assert "supervised_wer" not in result.scores  # no reference: not computed by default
    validate(tmp_path / "out", no_text=True)
    with pytest.raises(ValueError, match="auto needs reference"):
        filter_data_dir(FilterConfig(tmp_path / "pl", tmp_path / "o2", keep=["auto"]))
    with pytest.raises(ValueError, match="no reference transcripts"):
        filter_data_dir(FilterConfig(tmp_path / "pl", tmp_path / "o3", keep=["supervised_wer>0"]))


def test_supervised_filter_like_distil_whisper(tmp_path):
    rates, _ = known_quality_corpus(tmp_path / "pl")
    result = filter_data_dir(
        FilterConfig(tmp_path / "pl", tmp_path / "out", keep=["supervised_wer>-0.1"], plots=False)
    )
    assert set(result.kept) == {u for u, rate in rates.items() if rate == 0.0}
    validate(tmp_path / "out")  # the reference text travels with the kept utterances


def test_labelled_max_wer_overrides_the_rules_on_labelled_utterances(tmp_path):
    rates, refs = known_quality_corpus(tmp_path / "pl", with_text=False)
    labelled = sorted(rates)[:10]
    write_kv(tmp_path / "dev_text", {u: refs[u] for u in labelled})
    result = filter_data_dir(
        FilterConfig(
            tmp_path / "pl",
            tmp_path / "out",
            ref=tmp_path / "dev_text",
            keep=["top:100%:confidence"],
            labelled_max_wer=0.0,
            plots=False,
        )
    )
    expected = {u for u in rates if u not in labelled or rates[u] == 0.0}
    assert set(result.kept) == expected
    changed = sum(rates[u] > 0 for u in labelled)
    assert changed > 0
    assert result.report["labelled_override"] == {"n": 10, "changed": changed}
    assert result.report["kept"]["utts"] == len(expected)


def test_stage_input_errors(tmp_path):
    known_quality_corpus(tmp_path / "pl", n=10)
    write_pl_dir(tmp_path / "nolab", {"s-a": "x"})
    (tmp_path / "nolab" / "text.teacher").unlink()
    with pytest.raises(DataDirError, match=r"no text.teacher.*pseudo_label"):
        filter_data_dir(FilterConfig(tmp_path / "nolab", tmp_path / "o"))
    partial = tmp_path / "partial"
    write_pl_dir(partial, {"s-a": "x", "s-b": "y"}, refs={"s-a": "x"})
    with pytest.raises(DataDirError, match=r"covers 1 of 2.*--ref"):
        filter_data_dir(FilterConfig(partial, tmp_path / "o"))
    with pytest.raises(ValueError, match="no utterance passed"):
        filter_data_dir(FilterConfig(tmp_path / "pl", tmp_path / "o4", keep=["confidence>=5"]))
    assert (tmp_path / "o4" / "filter" / "report.json").is_file()  # the report says why


def test_unlabelled_utterances_are_dropped_and_counted(tmp_path):
    path = write_pl_dir(tmp_path / "d", {"s-a": "one two", "s-b": "three four"})
    write_kv(path / "text.teacher", {"s-a": "one two"})
    result = filter_data_dir(FilterConfig(path, tmp_path / "out", keep=["empty>=1"]))
    assert result.kept == ["s-a"] and result.report["no_label"] == 1


def test_cli_filter(tmp_path, caplog):
    known_quality_corpus(tmp_path / "pl")
    args = ["filter", "--data", str(tmp_path / "pl"), "--out", str(tmp_path / "out")]
    args += ["--exp-dir", str(tmp_path / "exp"), "--no-plots", "--score", "confidence,empty"]
    assert main([*args, "--keep", "top:50%:rank_avg(confidence,empty)"]) == 0
    r = json.loads((tmp_path / "exp" / "report.json").read_text())
    assert set(r["scores"]) == {"confidence", "empty"}  # only those asked for
    assert r["kept"]["utts"] == 30
    assert main([*args, "--keep", "confidence>>0"]) == 1
    assert "bad rule" in caplog.text


# --------------------------------------------------------------------------------------------------
# models: perturbations, CTC proxy, LM


def test_noise_perturbation_has_the_requested_snr_and_is_seeded():
    from speechdistill.filter.models import parse_perturbation, perturb

    t = np.arange(32000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noisy = perturb(audio, "noise:20", utt="u1", seed=3)
    noise = noisy - audio
    snr = 10 * np.log10(
        np.mean(audio.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2)
    )
    assert snr == pytest.approx(20.0, abs=0.2)
    assert np.array_equal(noisy, perturb(audio, "noise:20", utt="u1", seed=3))
    assert not np.array_equal(noisy, perturb(audio, "noise:20", utt="u2", seed=3))
    fast = perturb(audio, "speed:2", utt="u1")
    assert len(fast) == 16000
    assert np.array_equal(perturb(np.zeros(10, np.float32), "noise:0", utt="u"), np.zeros(10))
    for bad in ("noise", "speed:0", "pitch:2", "noise:abc"):
        with pytest.raises(ValueError, match="perturbation"):
            parse_perturbation(bad)


def _tiny_ctc(path: Path) -> Path:
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    path.mkdir(parents=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefgh")}}
    (path / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(path / "vocab.json"), word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(path)
    cfg = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    Wav2Vec2ForCTC(cfg).save_pretrained(path)
    return path


def test_ctc_proxy_batches_like_single_utterances_and_is_cached(tmp_path, monkeypatch):
    import soundfile as sf

    from speechdistill.filter import models
    from speechdistill.inference import detect_model_kind, load_transcriber

    model_dir = _tiny_ctc(tmp_path / "ctc")
    assert detect_model_kind(model_dir) == "ctc"
    rng = np.random.default_rng(0)
    labels, wavs = {}, {}
    for i, n in enumerate((8000, 12000, 16000)):
        utt = f"s-{i}"
        wav = tmp_path / f"{utt}.wav"
        sf.write(wav, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        labels[utt], wavs[utt] = "abc", str(wav)
    path = write_pl_dir(tmp_path / "d", labels, durations={"s-0": 0.5, "s-1": 0.75, "s-2": 1.0})
    write_kv(path / "wav.scp", wavs)
    ctc = load_transcriber(model_dir).transcribe
    from speechdistill.audio import AudioReader

    reader = AudioReader(path)
    audios = [reader(u) for u in sorted(labels)]
    assert ctc(audios) == [ctc([a])[0] for a in audios]  # padding does not leak into the output
    exp = tmp_path / "exp"
    cfg = FilterConfig(path, tmp_path / "out", exp_dir=exp, scores=["proxy_wer", "proxy_cer"])
    cfg.options.proxy = str(model_dir)
    cfg.options.batch_size = 2
    first = filter_data_dir(cfg)
    proxy = read_kv(exp / "cache" / "text.proxy")
    assert proxy == dict(zip(sorted(labels), ctc(audios), strict=True))
    expected = agreement(proxy, labels)
    assert first.scores["proxy_wer"] == {u: -w for u, w in expected.wer.items()}
    # a rerun reads the cache and never loads the model
    monkeypatch.setattr(models, "shared_transcriber", lambda *a, **k: pytest.fail("decoded again"))
    second = filter_data_dir(cfg)
    assert second.scores == first.scores


def _tiny_lm(path: Path, *, zero: bool) -> Path:
    import torch
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<|endoftext|>", "<unk>", "the", "cat", "sat", "on", "mat", "a"]
    tk = Tokenizer(tok_models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<unk>"
    )
    tok.save_pretrained(path)
    cfg = GPT2Config(vocab_size=len(words), n_positions=32, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg)
    if zero:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    model.save_pretrained(path)
    return path


def test_lm_nll_uniform_model_by_hand_and_batching(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    labels = {"s-a": "the cat sat on the mat", "s-b": "a cat", "s-c": "", "s-d": "the"}
    path = write_pl_dir(tmp_path / "d", labels)
    ctx = ctx_for(path, lm=str(_tiny_lm(tmp_path / "zero", zero=True)), batch_size=3)
    nll = compute_score("lm_nll", ctx)
    # all weights zero: every next-token distribution is uniform over the 8 tokens
    assert nll["s-a"] == pytest.approx(-math.log(8)) and nll["s-d"] == pytest.approx(-math.log(8))
    assert math.isnan(nll["s-c"])  # nothing to score
    lm_dir = _tiny_lm(tmp_path / "rand", zero=False)
    ctx = ctx_for(path, lm=str(lm_dir), batch_size=4)
    batched = compute_score("lm_nll", ctx)
    model = AutoModelForCausalLM.from_pretrained(lm_dir)
    ids = torch.tensor([[0, 7, 3]])  # <|endoftext|> a cat
    logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
    by_hand = -(logp[0, 7] + logp[1, 3]).item() / 2
    assert batched["s-b"] == pytest.approx(-by_hand, abs=1e-5)  # padding changes nothing


def test_model_kind_detection_and_missing_ctranslate2(tmp_path, monkeypatch):
    from speechdistill.inference import detect_model_kind
    from speechdistill.inference.ct2 import CT2Transcriber

    with pytest.raises(ValueError, match="not found"):
        detect_model_kind(tmp_path / "nope")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="not a Whisper, CTC or CTranslate2"):
        detect_model_kind(tmp_path / "bert")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text('{"model_type": "whisper"}')
    assert detect_model_kind(tmp_path / "w") == "whisper"
    (tmp_path / "ct2").mkdir()
    (tmp_path / "ct2" / "model.bin").write_bytes(b"")
    assert detect_model_kind(tmp_path / "ct2") == "ct2"
    monkeypatch.setitem(__import__("sys").modules, "ctranslate2", None)
    with pytest.raises(RuntimeError, match=r"speechdistill\[ct2\]"):
        CT2Transcriber(tmp_path / "ct2")
