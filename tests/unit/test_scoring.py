"""Scoring: hand-counted WER/CER, report formats, bootstrap, RESULTS.md, CLI."""

from __future__ import annotations

import json
import re

import pytest

from speechdistill.cli import main
from speechdistill.scoring import (
    Counts,
    bootstrap_ci,
    format_kaldi_summary,
    format_per_spk,
    format_per_utt,
    format_result_txt,
    format_results_md,
    infer_names,
    load_results,
    score,
    update_results,
    write_results_md,
    write_score_dir,
)

# Hand-counted cases (normaliser "none": words are what you see).
#            ref                       hyp                      N  C  S  D  I
CASES = {
    "u1": ("the cat sat on the mat", "the bat sat on mat"),  # 6  4  1  1  0
    "u2": ("a b", "a x b"),  #                                  2  2  0  0  1   insertion only
    "u3": ("a b c d", "a d"),  #                                4  2  0  2  0   deletion only
    "u4": ("", "x y"),  #                                       0  0  0  0  2   empty ref
    "u5": ("p q r", ""),  #                                     3  0  0  3  0   empty hyp
    "u6": ("ok", "ok"),  #                                      1  1  0  0  0   correct
}


def _score(cases=CASES, **kw):
    kw.setdefault("normalizer", "none")
    kw.setdefault("bootstrap", 0)
    refs = {u: r for u, (r, _) in cases.items()}
    hyps = {u: h for u, (_, h) in cases.items()}
    return score(refs, hyps, **kw)


def test_counts_per_utterance_hand_counted():
    res = _score()
    got = {
        u.utt: (u.words.ref, u.words.corr, u.words.sub, u.words.dels, u.words.ins)
        for u in res.normalized.utts
    }
    assert got == {
        "u1": (6, 4, 1, 1, 0),
        "u2": (2, 2, 0, 0, 1),
        "u3": (4, 2, 0, 2, 0),
        "u4": (0, 0, 0, 0, 2),
        "u5": (3, 0, 0, 3, 0),
        "u6": (1, 1, 0, 0, 0),
    }


def test_pooled_wer_ser_hand_counted():
    res = _score()
    w = res.normalized.words
    assert (w.ref, w.corr, w.sub, w.dels, w.ins, w.err) == (16, 9, 1, 6, 3, 10)
    assert res.wer == pytest.approx(10 / 16)
    assert res.normalized.snt_err == 5 and res.ser == pytest.approx(5 / 6)
    assert res.empty_refs == ["u4"]
    assert res.missing_hyps == []


def test_single_case_rates():
    assert _score({"i": ("a b", "a x b")}).wer == pytest.approx(0.5)  # insertion only
    assert _score({"d": ("a b c d", "a d")}).wer == pytest.approx(0.5)  # deletion only
    assert _score({"e": ("p q r", "")}).wer == pytest.approx(1.0)  # empty hypothesis
    empty = _score({"e": ("", "x y")})  # empty reference only: no denominator
    assert empty.normalized.words.ins == 2 and empty.wer == float("inf")
    assert empty.to_dict()["wer"] is None  # JSON has no infinity
    assert _score({"e": ("", "")}).wer == 0.0


def test_cer_hand_counted():
    # chars incl. the single spaces between words
    res = _score(
        {"s": ("abc", "abd"), "i": ("a b", "a x b"), "d": ("a b c d", "a d"), "e": ("", "x y")}
    )
    got = {
        u.utt: (u.chars.ref, u.chars.sub, u.chars.dels, u.chars.ins) for u in res.normalized.utts
    }
    # "abc"->"abd": 1 sub; "a b"->"a x b": +"x " 2 ins; "a b c d"->"a d": -"b c " 4 del; ""->"x y": 3 ins
    assert got == {"s": (3, 1, 0, 0), "i": (3, 0, 0, 2), "d": (7, 0, 4, 0), "e": (0, 0, 0, 3)}
    assert res.cer == pytest.approx((1 + 2 + 4 + 3) / (3 + 3 + 7 + 0))


def test_normalised_and_orthographic_side_by_side():
    res = _score({"u": ("Hello, World!", "hello world")}, normalizer="english")
    assert res.wer == 0.0 and res.normalizer == "english"
    assert res.orthographic.wer == 1.0  # "Hello," -> "hello", "World!" -> "world": 2 subs / 2
    assert res.orthographic.normalizer == "none"
    # annotation-only reference: empty after normalisation, one word orthographically
    res = _score({"u": ("(laughs)", "")}, normalizer="english")
    assert res.empty_refs == ["u"] and res.orthographic.empty_refs == []
    assert res.orthographic.words.dels == 1


def test_missing_and_unknown_hypotheses():
    refs = {"u1": "a b", "u2": "c d e"}
    res = score(refs, {"u1": "a b"}, normalizer="none", bootstrap=0)
    assert res.missing_hyps == ["u2"]
    assert res.normalized.words.dels == 3 and res.wer == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="u2"):
        score(refs, {"u1": "a b"}, on_missing="error", bootstrap=0)
    with pytest.raises(ValueError, match=r"not in the reference: zz"):
        score(refs, {"u1": "a b", "u2": "c", "zz": "x"}, bootstrap=0)
    with pytest.raises(ValueError, match=r"not in utt2spk: u2"):
        score(refs, refs, utt2spk={"u1": "s"}, bootstrap=0)
    with pytest.raises(ValueError, match="no reference"):
        score({}, {}, bootstrap=0)


def test_counts_arithmetic():
    c = Counts(ref=4, hyp=5, corr=3, sub=1, dels=0, ins=1) + Counts(2, 1, 1, 0, 1, 0)
    assert (c.ref, c.err, c.rate) == (6, 3, 0.5)
    assert Counts.from_dict(c.to_dict()) == c


# --- report files -------------------------------------------------------------------------------


def test_per_utt_format():
    res = _score({"u1": CASES["u1"], "u2": CASES["u2"], "u4": CASES["u4"]})
    assert format_per_utt(res) == (
        "u1 ref  the  cat  sat  on  the  mat\n"
        "u1 hyp  the  bat  sat  on  ***  mat\n"
        "u1 op    C    S    C    C   D    C\n"
        "u1 #csid 4 1 0 1\n"
        "u2 ref  a  ***  b\n"
        "u2 hyp  a   x   b\n"
        "u2 op   C   I   C\n"
        "u2 #csid 2 0 1 0\n"
        "u4 ref  ***  ***\n"
        "u4 hyp   x    y\n"
        "u4 op    I    I\n"
        "u4 #csid 0 0 2 0\n"
    )


def test_per_spk_and_wer_files():
    utt2spk = {"u1": "spkA", "u2": "spkA", "u3": "spkB", "u4": "spkB", "u5": "spkB", "u6": "spkB"}
    res = _score(utt2spk=utt2spk)
    rows = {
        tuple(line.split()[:2]): line.split()[2:] for line in format_per_spk(res).splitlines()[1:]
    }
    # spkA: u1+u2 -> 2 sent, 8 words, C6 S1 I1 D1, err 3, 2 sentences wrong
    assert rows[("spkA", "raw")] == ["2", "8", "6", "1", "1", "1", "3", "2"]
    assert rows[("spkA", "sys")] == [
        "2",
        "8",
        "75.00",
        "12.50",
        "12.50",
        "12.50",
        "37.50",
        "100.00",
    ]
    # spkB: u3..u6 -> 4 sent, 8 words, C3 S0 I2 D5, err 7, 3 sentences wrong
    assert rows[("spkB", "raw")] == ["4", "8", "3", "0", "2", "5", "7", "3"]
    assert rows[("SUM", "raw")] == ["6", "16", "9", "1", "3", "6", "10", "5"]
    assert format_kaldi_summary(res) == (
        "%WER 62.50 [ 10 / 16, 3 ins, 6 del, 1 sub ]\n"
        "%SER 83.33 [ 5 / 6 ]\n"
        "Scored 6 sentences, 0 not present in hyp.\n"
    )


def test_result_txt_is_sclite_like():
    utt2spk = {u: ("spkA" if u in ("u1", "u2") else "spkB") for u in CASES}
    text = format_result_txt(_score(utt2spk=utt2spk))
    # Kaldi's utils/best_wer.sh reads sclite's Sum/Avg line with this pattern (Err is group 2)
    pat = re.compile(
        r" (Mean|Sum/Avg|)\s+\|\s+\S+\s+\S+\s+\|\s+\S+\s+\S+\s+\S+\s+\S+\s+(\S+)\s+\S+\s+\|"
    )
    sums = [
        m.group(2)
        for line in text.splitlines()
        if (m := pat.search(line)) and m.group(1) == "Sum/Avg"
    ]
    assert sums[0] == "62.5"  # words table first, then characters
    assert "| spkA " in text and "| spkB " in text and "S.D." in text
    assert "%WER 62.50 [ 10 / 16, 3 ins, 6 del, 1 sub ]" in text


def test_result_txt_without_utt2spk_has_the_totals():
    text = format_result_txt(_score())
    sum_lines = [line for line in text.splitlines() if line.startswith("| Sum/Avg")]
    assert len(sum_lines) == 2  # words, characters
    assert sum_lines[0].split() == [
        "|",
        "Sum/Avg",
        "|",
        "6",
        "16",
        "|",
        "56.2",
        "6.2",
        "37.5",
        "18.8",
        "62.5",
        "83.3",
        "|",
    ]
    assert "Mean" not in text


def test_write_score_dir_and_results_json(tmp_path):
    res = _score(utt2spk={u: "s" for u in CASES}, model="m", dataset="test", bootstrap=50)
    write_score_dir(res, tmp_path / "score_wer")
    out = tmp_path / "score_wer"
    for name in (
        "result.txt",
        "per_utt",
        "per_spk",
        "wer",
        "cer",
        "ref.trn",
        "hyp.trn",
        "results.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "ref.trn").read_text().splitlines()[0] == "the cat sat on the mat (u1)"
    data = json.loads((out / "results.json").read_text())  # strict JSON (no NaN/Infinity)
    assert data["wer"] == pytest.approx(10 / 16)
    assert data["normalized"]["words"] == {
        "ref": 16, "hyp": 13, "corr": 9, "sub": 1, "del": 6, "ins": 3, "err": 10, "rate": 10 / 16,
    }  # fmt: skip
    assert data["n_empty_refs"] == 1 and data["empty_refs"] == ["u4"]
    assert data["n_utts"] == 6 and data["model"] == "m" and data["dataset"] == "test"
    assert data["normalizer"] == "none" and data["orthographic"]["normalizer"] == "none"
    assert data["per_speaker"]["s"]["words"]["err"] == 10
    assert data["bootstrap"]["resamples"] == 50 and len(data["wer_ci"]) == 2
    assert data["versions"]["jiwer"].startswith("4.")
    assert load_results(out)["wer"] == data["wer"]
    updated = update_results(out / "results.json", extra={"rtfx": 12.34})
    assert updated["extra"] == {"rtfx": 12.34}
    assert load_results(out / "results.json")["extra"]["rtfx"] == 12.34


def test_load_results_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_results(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"wer": 1}')
    with pytest.raises(ValueError, match=r"bad\.json: not a speechdistill results\.json"):
        load_results(bad)


# --- bootstrap ----------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    errs = [0, 1, 2, 0, 3, 1, 0, 0, 5, 1, 2, 0, 1, 0, 4, 2, 0, 1, 1, 0]
    refs = [5, 6, 8, 4, 9, 7, 3, 5, 10, 6, 8, 4, 7, 5, 9, 8, 4, 6, 7, 5]
    point = sum(errs) / sum(refs)
    a = bootstrap_ci(errs, refs, n_resamples=500, seed=3)
    b = bootstrap_ci(errs, refs, n_resamples=500, seed=3)
    c = bootstrap_ci(errs, refs, n_resamples=500, seed=4)
    assert a == b and a != c
    assert a[0] < point < a[1]
    assert bootstrap_ci(errs, refs, n_resamples=0) is None
    assert bootstrap_ci([1, 2], [0, 0]) is None  # no reference words in any resample


def test_score_ci_same_seed_same_interval():
    r1 = _score(bootstrap=200, seed=7)
    r2 = _score(bootstrap=200, seed=7)
    assert r1.normalized.wer_ci == r2.normalized.wer_ci
    lo, hi = r1.normalized.wer_ci
    assert lo <= r1.wer <= hi


# --- RESULTS.md ---------------------------------------------------------------------------------


def _parse_tables(md: str) -> dict[tuple[str, str], list[dict[str, str]]]:
    """{(model, table heading): rows as dicts}, read back from the markdown."""
    tables: dict[tuple[str, str], list[dict[str, str]]] = {}
    model = heading = None
    head: list[str] | None = None
    for line in md.splitlines():
        if line.startswith("## "):
            model, head = line[3:], None
        elif line.startswith("### "):
            heading, head = line[4:], None
        elif line.startswith("|"):
            cells = line.strip("|").split("|")
            if head is None:
                head = cells
                tables[(model, heading)] = []
            elif set(cells) != {"---"}:
                tables[(model, heading)].append(dict(zip(head, cells, strict=True)))
    return tables


def test_results_md_tables_parse_back(tmp_path):
    r_test = _score(model="student", dataset="test", bootstrap=20).to_dict()
    r_dev = _score(
        {"u": ("a b c d", "a b c")}, model="student", dataset="dev", bootstrap=0
    ).to_dict()
    r_dev["extra"] = {"rtfx": 41.25}
    r_teacher = _score(
        {"u": ("a b", "a b")}, model="teacher", dataset="test", bootstrap=0
    ).to_dict()
    path = tmp_path / "RESULTS.md"
    write_results_md(path, [("", r_test), ("", r_dev), ("teacher", r_teacher)], title="mini_en")
    md = path.read_text()
    assert md.splitlines()[1] == "# mini_en"
    assert "## Environments" in md and "- jiwer version: `jiwer 4." in md
    # the ESPnet header: date, versions and the git hash, before the first model section
    head = md[: md.index("## student")]
    assert re.search(r"^- date: `\w{3} \w{3} \d\d \d\d:\d\d:\d\d .* \d{4}`$", head, re.M), head
    for tool in ("python", "speechdistill", "pytorch", "transformers"):
        assert re.search(rf"^- {tool} version: `[^`]*\d[^`]*`$", head, re.M), tool
    assert re.search(r"^- Git hash: `([0-9a-f]{40}(\+dirty)?|unknown)`$", head, re.M), head
    t = _parse_tables(md)
    wer = t[("student", "WER")]
    assert list(wer[0]) == [
        "dataset",
        "Snt",
        "Wrd",
        "Corr",
        "Sub",
        "Del",
        "Ins",
        "Err",
        "S.Err",
        "95% CI",
        "RTFx",
    ]
    assert wer[0] | {"95% CI": ""} == {
        "dataset": "test", "Snt": "6", "Wrd": "16", "Corr": "56.2", "Sub": "6.2", "Del": "37.5",
        "Ins": "18.8", "Err": "62.5", "S.Err": "83.3", "95% CI": "", "RTFx": "-",
    }  # fmt: skip
    assert re.fullmatch(r"\[\d+\.\d, \d+\.\d\]", wer[0]["95% CI"])
    assert wer[1]["dataset"] == "dev" and wer[1]["Err"] == "25.0" and wer[1]["RTFx"] == "41.2"
    assert t[("student", "CER")][1]["Wrd"] == "7" and t[("student", "CER")][1]["Del"] == "28.6"
    # teacher: no CI, no speed figures -> the plain ESPnet columns
    assert list(t[("teacher", "WER")][0]) == [
        "dataset",
        "Snt",
        "Wrd",
        "Corr",
        "Sub",
        "Del",
        "Ins",
        "Err",
        "S.Err",
    ]
    assert ("teacher", "WER (orthographic)") in t


def test_infer_names():
    assert infer_names("exp/student/decode_test/score_wer/results.json") == ("student", "test")
    assert infer_names("exp/student/decode_test") == ("student", "test")
    assert infer_names("somewhere/results.json") == (None, None)


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_score_and_results(tmp_path, capsys):
    data = tmp_path / "data" / "test"
    dec = tmp_path / "exp" / "m1" / "decode_test"
    data.mkdir(parents=True)
    dec.mkdir(parents=True)
    (data / "text").write_text("a-1 The cat sat.\na-2 Hello world\na-3 gone\n")
    (data / "utt2spk").write_text("a-1 a\na-2 a\na-3 a\n")
    (dec / "text").write_text("a-1 the bat sat\na-2 hello world\n")
    out = dec / "score_wer"
    rc = main(["score", "--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out", str(out),
               "--utt2spk", str(data / "utt2spk"), "--bootstrap", "20", "--extra", "rtfx=3.5"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    # english: "the cat sat" vs "the bat sat" (1 sub) + "gone" missing (1 del) over 6 words
    assert "test: %WER 33.33 [ 2 / 6, 0 ins, 1 del, 1 sub ]" in printed
    data_json = load_results(out)
    assert (data_json["model"], data_json["dataset"]) == ("m1", "test")
    assert data_json["missing_hyps"] == ["a-3"] and data_json["extra"] == {"rtfx": 3.5}

    md = tmp_path / "exp" / "RESULTS.md"
    assert main(["results", "--out", str(md), str(out / "results.json")]) == 0
    t = _parse_tables(md.read_text())
    assert t[("m1", "WER")][0]["Err"] == "33.3" and t[("m1", "WER")][0]["RTFx"] == "3.5"

    # errors are one line and exit status 1
    assert main(["score", "--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out", str(out),
                 "--missing", "error"]) == 1  # fmt: skip
    assert (
        main(["score", "--ref", str(data / "text"), "--hyp", str(data / "nope"), "--out", str(out)])
        == 1
    )


def test_results_md_from_paths_uses_path_names(tmp_path):
    res = _score(bootstrap=0)  # no model/dataset recorded
    d = tmp_path / "exp" / "tiny" / "decode_dev" / "score_wer"
    write_score_dir(res, d)
    md = format_results_md([("", d / "results.json")])
    assert "## tiny" in md and "|dev|6|16|" in md


def test_paired_bootstrap_of_two_systems(tmp_path):
    """B − A on the same utterances: the exact difference, an interval around it, P(B better);
    mismatched utterances or normalisers are refused; the CLI prints and writes it."""
    from speechdistill.scoring import paired_bootstrap

    refs = {f"u{i}": "the cat sat on mats" for i in range(20)}
    hyp_a = dict(refs)
    hyp_b = dict(refs)
    for i in range(6):  # B: one substitution in 6 utterances; A: one in 2 of them
        hyp_b[f"u{i}"] = "the cat sat on hats"
    hyp_a["u0"] = hyp_a["u1"] = "the cat sat on hats"
    a, b = score(refs, hyp_a, bootstrap=0), score(refs, hyp_b, bootstrap=0)
    cmp = paired_bootstrap(a, b, n_resamples=2000, seed=1)
    assert (cmp.n_utts, cmp.words) == (20, 100)
    assert cmp.wer_a == 0.02 and cmp.wer_b == 0.06 and abs(cmp.delta - 0.04) < 1e-12
    lo, hi = cmp.delta_ci
    assert 0.0 <= lo < 0.04 < hi  # B is never better than A on an utterance
    assert cmp.p_b_better == 0.0
    assert paired_bootstrap(b, a, n_resamples=2000, seed=1).delta_ci == (-hi, -lo)
    assert paired_bootstrap(a, b, n_resamples=2000, seed=1) == cmp  # deterministic

    with pytest.raises(ValueError, match="one result only: u19"):
        paired_bootstrap(a, score({k: refs[k] for k in refs if k != "u19"},
                                  {k: hyp_b[k] for k in refs if k != "u19"}, bootstrap=0))  # fmt: skip
    with pytest.raises(ValueError, match="different normalisers"):
        paired_bootstrap(a, score(refs, hyp_b, normalizer="none", bootstrap=0))

    for name, hyp in (("a", hyp_a), ("b", hyp_b)):
        (tmp_path / name).write_text("".join(f"{k} {v}\n" for k, v in hyp.items()))
    (tmp_path / "ref").write_text("".join(f"{k} {v}\n" for k, v in refs.items()))
    out = tmp_path / "cmp.json"
    argv = ["compare", "--ref", str(tmp_path / "ref"), "--hyp-a", str(tmp_path / "a"),
            "--hyp-b", str(tmp_path / "b"), "--out", str(out), "--seed", "1",
            "--bootstrap", "2000"]  # fmt: skip
    assert main(argv) == 0
    body = json.loads(out.read_text())
    assert body["delta"] == pytest.approx(0.04) and body["delta_ci"] == pytest.approx(
        [lo, hi], abs=1e-4
    )


def test_paired_bootstrap_of_several_runs(tmp_path):
    """A system given as several runs (seeds) is compared on its per-utterance mean errors; one
    run of each side is the two-system comparison; a run of other utterances is refused."""
    from speechdistill.scoring import paired_bootstrap

    refs = {f"u{i}": "the cat sat on mats" for i in range(10)}
    bad = "the cat sat on hats"  # one substitution
    run1 = {**refs, "u0": bad, "u1": bad}  # 2 errors
    run2 = {**refs, "u0": bad, "u1": bad, "u2": bad, "u3": bad}  # 4 errors
    base = dict(refs)  # 0 errors
    s1, s2, s0 = (score(refs, h, bootstrap=0) for h in (run1, run2, base))
    cmp = paired_bootstrap(s0, [s1, s2], n_resamples=500, seed=0)
    assert cmp.wer_a == 0.0 and cmp.wer_b == pytest.approx(3 / 50)  # mean of 2 and 4 errors
    assert paired_bootstrap([s0], [s1], n_resamples=500) == paired_bootstrap(
        s0, s1, n_resamples=500
    )
    lo, hi = cmp.delta_ci
    assert 0.0 <= lo < 3 / 50 < hi
    with pytest.raises(ValueError, match="one result only"):
        paired_bootstrap(s0, [s1, score({"u0": refs["u0"]}, {"u0": bad}, bootstrap=0)])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], s1)

    for name, hyp in (("r1", run1), ("r2", run2), ("b", base)):
        (tmp_path / name).write_text("".join(f"{k} {v}\n" for k, v in hyp.items()))
    (tmp_path / "ref").write_text("".join(f"{k} {v}\n" for k, v in refs.items()))
    out = tmp_path / "cmp.json"
    argv = ["compare", "--ref", str(tmp_path / "ref"), "--hyp-a", str(tmp_path / "b"),
            "--hyp-b", str(tmp_path / "r1"), str(tmp_path / "r2"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    body = json.loads(out.read_text())
    assert body["wer_b"] == pytest.approx(0.06) and len(body["b"]) == 2
