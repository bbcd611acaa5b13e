"""`speechdistill data …` through ``speechdistill.cli.main``."""

from __future__ import annotations

import logging

import pytest
from test_datadir import PLAIN, SEG, make, write_dir

from speechdistill.cli import main
from speechdistill.datadir import DataDir


@pytest.fixture(autouse=True)
def _capture_errors(caplog):
    caplog.set_level(logging.INFO)


def test_validate_ok(tmp_path, capsys):
    d = make(tmp_path, PLAIN)
    assert main(["data", "validate", str(d)]) == 0
    assert capsys.readouterr().out == f"validate: {d} is a valid data dir\n"


def test_validate_reports_every_error_with_file_and_line(tmp_path, caplog):
    d = make(
        tmp_path,
        PLAIN,
        text=[PLAIN["text"][0], "spkA-u2 a <s>", PLAIN["text"][2]],
        utt2dur=["spkA-u1 1.5", "spkA-u2 -2", "spkB-u1 3.25"],
    )
    assert main(["data", "validate", str(d)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].startswith(f"{d / 'text'}:2: reserved symbol")
    assert errors[1].startswith(f"{d / 'utt2dur'}:2: duration")
    assert errors[2] == f"{d}: 2 errors: not a valid data dir"


@pytest.mark.parametrize(
    ("flag", "changes"),
    [
        ("--no-text", {"text": None}),
        ("--no-wav", {"wav__scp": None}),
        (
            "--no-spk-sort",
            {
                "utt2spk": ["spkA-u1 b", "spkA-u2 b", "spkB-u1 a"],
                "spk2utt": ["a spkB-u1", "b spkA-u1 spkA-u2"],
                "spk2gender": None,
            },
        ),
        ("--non-print", {"text": ["spkA-u1 \u200bhi", *PLAIN["text"][1:]]}),
    ],
)
def test_validate_options(tmp_path, flag, changes):
    d = make(tmp_path, PLAIN, **changes)
    assert main(["data", "validate", str(d)]) == 1
    assert main(["data", "validate", flag, str(d)]) == 0


def test_fix_prints_kept_count(tmp_path, capsys):
    d = make(tmp_path, PLAIN, text__teacher=PLAIN["text"][:2])
    assert main(["data", "fix", str(d)]) == 0
    assert capsys.readouterr().out == "fix: kept 3 utterances out of 3\n"
    assert main(["data", "fix", "--utt-extra-files", "text.teacher utt2missing", str(d)]) == 0
    assert capsys.readouterr().out == "fix: kept 2 utterances out of 3\n"
    assert (d / ".backup" / "text").is_file()


def test_fix_error_is_one_line(tmp_path, caplog):
    d = make(tmp_path, PLAIN, text=[*PLAIN["text"], "spkB-u1 different"])
    assert main(["data", "fix", "--no-backup", str(d)]) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert error.startswith(f"{d / 'text'}:4: duplicate key 'spkB-u1'") and "\n" not in error
    assert not (d / ".backup").exists()


def test_subset_and_its_selectors(tmp_path, capsys):
    src = make(tmp_path, PLAIN, "src")
    assert main(["data", "subset", "--last", "2", str(src), str(tmp_path / "l")]) == 0
    assert capsys.readouterr().out == f"subset: 2 of 3 utterances in {tmp_path / 'l'}\n"
    assert DataDir(tmp_path / "l").utt_ids() == ["spkA-u2", "spkB-u1"]
    (tmp_path / "list").write_text("spkB-u1\n")
    assert (
        main(
            ["data", "subset", "--utt-list", str(tmp_path / "list"), str(src), str(tmp_path / "u")]
        )
        == 0
    )
    assert DataDir(tmp_path / "u").utt_ids() == ["spkB-u1"]
    assert (
        main(["data", "subset", "--random", "2", "--seed", "3", str(src), str(tmp_path / "r")]) == 0
    )
    assert len(DataDir(tmp_path / "r")) == 2
    with pytest.raises(SystemExit) as info:  # selectors are mutually exclusive
        main(["data", "subset", "--first", "1", "--last", "1", str(src), str(tmp_path / "x")])
    assert info.value.code == 2


def test_subset_too_many_is_an_error(tmp_path, caplog):
    src = make(tmp_path, PLAIN, "src")
    assert main(["data", "subset", "--first", "9", str(src), str(tmp_path / "x")]) == 1
    assert "cannot take 9 utterances" in caplog.text


def test_copy_combine_split_merge(tmp_path, capsys):
    a = make(tmp_path, PLAIN, "a")
    b = tmp_path / "b"
    assert main(["data", "copy", "--utt-prefix", "b-", "--spk-prefix", "b-", str(a), str(b)]) == 0
    ab = tmp_path / "ab"
    assert main(["data", "combine", str(ab), str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"combine: 6 utterances from 2 dirs in {ab}"
    assert main(["data", "validate", str(ab)]) == 0
    capsys.readouterr()
    assert main(["data", "split", str(ab), "2"]) == 0
    parts = capsys.readouterr().out.split()
    assert parts == [str(ab / "split2" / "1"), str(ab / "split2" / "2")]
    for i, part in enumerate(parts):
        (tmp_path / f"o{i}").write_text("".join(f"{u} {i}\n" for u in DataDir(part).utt_ids()))
    merged = tmp_path / "merged"
    outs = [str(tmp_path / "o0"), str(tmp_path / "o1")]
    assert main(["data", "merge", "--expected", str(ab / "utt2spk"), str(merged), *outs]) == 0
    assert [line.split()[0] for line in merged.read_text().splitlines()] == DataDir(ab).utt_ids()


def test_merge_lost_key_is_an_error(tmp_path, caplog):
    d = make(tmp_path, PLAIN)
    write_dir(tmp_path, {"o1": ["spkA-u1 x"]})
    args = [
        "data",
        "merge",
        "--expected",
        str(d / "utt2spk"),
        str(tmp_path / "m"),
        str(tmp_path / "o1"),
    ]
    assert main(args) == 1
    assert "2 keys missing" in caplog.text


def test_combine_collision_exit_status(tmp_path, caplog):
    a = make(tmp_path, SEG, "a")
    b = make(tmp_path, SEG, "b", wav__scp=["rec1 /other/rec1.wav", SEG["wav.scp"][1]])
    assert main(["data", "combine", str(tmp_path / "ab"), str(a), str(b)]) == 1
    assert "key 'rec1' of wav.scp differs between" in caplog.text


def test_split_by_speaker_flag(tmp_path, capsys):
    d = make(tmp_path, PLAIN)
    assert main(["data", "split", "--by-speaker", str(d), "2"]) == 0
    assert capsys.readouterr().out.split() == [
        str(d / "split2spk" / "1"),
        str(d / "split2spk" / "2"),
    ]
