"""Filtering that does not starve the student: weight mode, --weight, --min-hours and its
fallback, utt2weight in the filtered dir and its checks (hand-computed ranks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechdistill.cli import main
from speechdistill.datadir import DataDir, DataDirError, validate
from speechdistill.datadir.validate import DataDirValidationError
from speechdistill.datadir.weights import read_weights, write_weights
from speechdistill.filter import FilterConfig, filter_data_dir

# confidence = avg_logprob; s-d has none (NaN); s-f's label is empty (fails empty>=1)
CONF = {"s-a": -0.1, "s-b": -0.5, "s-c": -0.3, "s-e": -2.0, "s-f": -0.2}
LABELS = {"s-a": "one two", "s-b": "three", "s-c": "four five", "s-d": "six", "s-e": "seven",
          "s-f": ""}  # fmt: skip
# weight mode keeps s-a…s-e; confidence ranks among them: s-a 5/5, s-c 4/5, s-b 3/5, s-e 2/5,
# s-d NaN → the floor. weight = 0.1 + 0.9 · rank
WEIGHT_MODE = {"s-a": 1.0, "s-b": 0.64, "s-c": 0.82, "s-d": 0.1, "s-e": 0.46}
HALF_HOUR = 1800.0


def pl_dir(path: Path, weights: dict[str, float] | None = None) -> Path:
    """A pseudo-labelled dir of six utterances of half an hour each (audio paths are fake)."""
    path.mkdir(parents=True)
    d = DataDir(path)
    d.write("wav.scp", {u: f"/nonexistent/{u}.wav" for u in LABELS})
    d.write_utt2spk({u: u.split("-")[0] for u in LABELS})
    d.write("text.teacher", LABELS)
    d.write("utt2dur", {u: f"{HALF_HOUR:g}" for u in LABELS})
    d.write("utt2avg_logprob", {u: f"{v:g}" for u, v in CONF.items()})
    if weights is not None:
        write_weights(path / "utt2weight", weights)
    return path


def run(tmp_path: Path, out: str, *keep: str, **options) -> dict:
    config = FilterConfig(tmp_path / "pl", tmp_path / out, exp_dir=tmp_path / f"{out}_exp",
                          scores=["confidence", "empty"], keep=keep, plots=False,
                          **options)  # fmt: skip
    return filter_data_dir(config).report


def weights_of(path: Path) -> dict[str, float]:
    return read_weights(path / "utt2weight")


def test_weight_mode_keeps_what_passes_the_thresholds_weighted_by_rank(tmp_path):
    pl_dir(tmp_path / "pl")
    r = run(tmp_path, "w", "empty>=1", "top:2:confidence", mode="weight")
    assert r["mode"] == "weight" and r["kept"]["utts"] == 5  # the quota dropped nothing
    got = weights_of(tmp_path / "w")
    assert got == pytest.approx(WEIGHT_MODE)
    assert r["weights"]["weighted_hours"] == pytest.approx(0.5 * sum(WEIGHT_MODE.values()))
    assert r["weights"]["mean"] == pytest.approx(sum(WEIGHT_MODE.values()) / 5)
    md = (tmp_path / "w_exp" / "report.md").read_text()
    assert "weighted hours Σ w·dur 1.510 h, mean weight 0.604" in md
    validate(tmp_path / "w", no_text=True)  # utt2weight passes the data dir's checks
    # another floor; drop mode (default) keeps the top 2 and writes no weights
    r = run(tmp_path, "w", "empty>=1", "top:2:confidence", mode="weight", weight_floor=0.5)
    assert weights_of(tmp_path / "w")["s-d"] == 0.5 and weights_of(tmp_path / "w")["s-e"] == 0.7
    r = run(tmp_path, "w", "empty>=1", "top:2:confidence")
    assert r["mode"] == "drop" and r["weights"] is None
    assert not (tmp_path / "w" / "utt2weight").exists()  # the rerun left no stale weights


def test_weight_in_drop_mode_ranks_among_the_kept_and_overrides_the_quota_score(tmp_path):
    pl_dir(tmp_path / "pl")
    r = run(tmp_path, "d", "top:2:confidence", weight="confidence")
    assert r["kept"]["utts"] == 2
    assert weights_of(tmp_path / "d") == pytest.approx({"s-a": 1.0, "s-f": 0.55})
    # in weight mode --weight replaces the quota's score: empty ranks 1 (ties) or 0 (s-f)
    run(tmp_path, "e", "top:2:confidence", mode="weight", weight="empty")
    got = weights_of(tmp_path / "e")
    assert len(got) == 6 and got["s-f"] == pytest.approx(0.1 + 0.9 / 6)
    assert got["s-a"] == pytest.approx(0.1 + 0.9 * 4 / 6)  # five tied at ranks 2…6


def test_min_hours_warns_in_the_report_and_falls_back_to_weighting(tmp_path, caplog):
    pl_dir(tmp_path / "pl")
    r = run(tmp_path, "a", "empty>=1", "top:2:confidence", min_hours=2)
    message = "the selection keeps 1.000 h, under --min-hours 2"
    assert r["mode"] == "drop" and r["kept"]["utts"] == 2
    assert r["min_hours"]["under"] and not r["min_hours"]["switched"]
    assert message in r["min_hours"]["message"] and message in caplog.text
    assert message in (tmp_path / "a_exp" / "report.md").read_text()
    r = run(tmp_path, "b", "empty>=1", "top:2:confidence", min_hours=2, fallback="weight")
    assert r["mode"] == "weight" and r["min_hours"]["switched"] and r["kept"]["utts"] == 5
    assert weights_of(tmp_path / "b") == pytest.approx(WEIGHT_MODE)
    assert "switched to --mode weight" in (tmp_path / "b_exp" / "report.md").read_text()
    r = run(tmp_path, "c", "empty>=1", "top:2:confidence", min_hours=0.5, fallback="weight")
    assert r["mode"] == "drop" and not r["min_hours"]["under"]  # enough: nothing switched


def test_the_input_weights_are_carried_in_drop_mode_and_replaced_by_computed_ones(tmp_path):
    pl_dir(tmp_path / "pl", weights={u: 0.5 for u in LABELS})
    r = run(tmp_path, "d", "top:2:confidence")
    assert weights_of(tmp_path / "d") == {"s-a": 0.5, "s-f": 0.5}
    assert r["weights"]["source"] == "input" and r["weights"]["weighted_hours"] == 0.5
    run(tmp_path, "w", "top:2:confidence", mode="weight")
    assert weights_of(tmp_path / "w")["s-a"] == 1.0


def test_weighting_without_a_score_to_rank_by_is_a_one_line_error(tmp_path, caplog):
    pl_dir(tmp_path / "pl")
    with pytest.raises(ValueError, match=r"--mode weight needs a quota rule .* or --weight"):
        run(tmp_path, "x", "empty>=1", mode="weight")
    with pytest.raises(ValueError, match="--fallback weight needs a quota rule"):
        run(tmp_path, "x", "empty>=1", min_hours=1, fallback="weight")
    assert not (tmp_path / "x").exists()  # refused before anything is written
    args = ["filter", "--data", str(tmp_path / "pl"), "--out", str(tmp_path / "y"), "--no-plots"]
    assert main([*args, "--keep", "empty>=1", "--weight", "nope"]) == 1
    assert "unknown score 'nope'" in caplog.text
    with pytest.raises(SystemExit):
        main([*args, "--weight-floor", "0"])


def test_cli_weight_mode_prints_the_weighted_hours(tmp_path, capsys):
    pl_dir(tmp_path / "pl")
    args = ["filter", "--data", str(tmp_path / "pl"), "--out", str(tmp_path / "o"), "--no-plots"]
    args += ["--score", "confidence,empty", "--keep", "top:2:confidence", "--min-hours", "2"]
    assert main([*args, "--fallback", "weight"]) == 0
    out = capsys.readouterr().out
    assert "filter (weight): kept 6 of 6 utterances" in out and "mean weight" in out
    assert "warning: the selection keeps 1.000 h, under --min-hours 2" in out
    r = json.loads((tmp_path / "o" / "filter" / "report.json").read_text())
    assert r["weights"]["n"] == 6


@pytest.mark.parametrize(
    "line, problem",
    [
        ("s-a 0", "weight must be in (0, 1], got 0"),
        ("s-a 1.5", "weight must be in (0, 1], got 1.5"),
        ("s-a nan", "weight must be in (0, 1], got nan"),
        ("s-a heavy", "expected one number in (0, 1], got 'heavy'"),
        ("zz-x 0.5", "utterance 'zz-x' is not in utt2spk"),
    ],
)
def test_a_bad_utt2weight_is_refused_naming_file_and_line(tmp_path, line, problem):
    path = pl_dir(tmp_path / "pl")
    (path / "utt2weight").write_text(f"{line}\n")
    with pytest.raises(DataDirValidationError) as e:
        validate(path, no_text=True)
    assert f"{path / 'utt2weight'}:1: " in str(e.value) and problem in str(e.value)
    if not line.startswith("zz"):
        with pytest.raises(DataDirError, match=r"utt2weight:1: 's-a': "):
            read_weights(path / "utt2weight")


def test_results_md_carries_the_filter_summary(tmp_path):
    """``speechdistill results --filter-report``: the recipe's RESULTS.md says what the filter
    kept (hours, weights) beside the WER tables; a file that is no report is a one-line error."""
    from speechdistill.scoring import score
    from speechdistill.scoring.results import save_results

    pl_dir(tmp_path / "pl")
    run(tmp_path, "w", "empty>=1", "top:2:confidence", mode="weight")
    refs = {"u1": "a b c", "u2": "d e"}
    res = score(refs, {"u1": "a b c", "u2": "d"}, normalizer="none", bootstrap=0)
    save_results(tmp_path / "results.json", res.to_dict())
    md = tmp_path / "RESULTS.md"
    assert main(["results", str(tmp_path / "results.json"), "--out", str(md),
                 "--filter-report", str(tmp_path / "w_exp" / "report.json")]) == 0  # fmt: skip
    text = md.read_text()
    section = text[text.index("## Label filter") :]
    assert "- rules: `empty>=1`, `top:2:confidence`" in section
    assert "- kept: 5 of 6 utterances, 2.500 of 3.000 h" in section
    assert "weighted hours Σ w·dur 1.510 h" in section
    with pytest.raises(SystemExit, match=r"not a filter report\.json"):
        main(["results", str(tmp_path / "results.json"), "--out", str(md),
              "--filter-report", str(tmp_path / "results.json")])  # fmt: skip
