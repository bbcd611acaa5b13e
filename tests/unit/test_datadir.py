"""Kaldi data-dir validation (port of validate_data_dir.sh); helpers shared by test_datadir_*."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechdistill.datadir import DataDirError, DataDirValidationError, validate

# Three utterances of two speakers, wav.scp keyed by utterance (one entry a pipe).
PLAIN: dict[str, list[str]] = {
    "wav.scp": [
        "spkA-u1 /data/a1.wav",
        "spkA-u2 sox /data/a2.flac -t wav - |",
        "spkB-u1 /data/b1.wav",
    ],
    "utt2spk": ["spkA-u1 spkA", "spkA-u2 spkA", "spkB-u1 spkB"],
    "spk2utt": ["spkA spkA-u1 spkA-u2", "spkB spkB-u1"],
    "text": ["spkA-u1 hello world", "spkA-u2 good morning", "spkB-u1 são paulo"],
    "utt2dur": ["spkA-u1 1.5", "spkA-u2 2.0", "spkB-u1 3.25"],
    "spk2gender": ["spkA f", "spkB m"],
}

# Segments of two recordings (one a pipe), with reco2dur.
SEG: dict[str, list[str]] = {
    "wav.scp": ["rec1 /data/rec1.wav", "rec2 flac -c -d -s /data/rec2.flac |"],
    "segments": [
        "spkA-rec1-0000 rec1 0.00 1.50",
        "spkA-rec1-0001 rec1 1.50 3.00",
        "spkB-rec2-0000 rec2 0.50 2.00",
    ],
    "reco2dur": ["rec1 3.0", "rec2 2.2"],
    "utt2spk": ["spkA-rec1-0000 spkA", "spkA-rec1-0001 spkA", "spkB-rec2-0000 spkB"],
    "spk2utt": ["spkA spkA-rec1-0000 spkA-rec1-0001", "spkB spkB-rec2-0000"],
    "text": ["spkA-rec1-0000 one", "spkA-rec1-0001 two", "spkB-rec2-0000 three"],
    "utt2dur": ["spkA-rec1-0000 1.5", "spkA-rec1-0001 1.5", "spkB-rec2-0000 1.5"],
}


def write_dir(path: Path, files: dict[str, list[str] | str | bytes | None]) -> Path:
    """Write a data dir: lists are lines (each ended by a newline), str/bytes are raw content."""
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if content is None:
            continue
        if isinstance(content, list):
            content = "".join(line + "\n" for line in content)
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (path / name).write_bytes(data)
    return path


def make(tmp_path: Path, base: dict, name: str = "d", **changes) -> Path:
    """``base`` with some files replaced (``file_name=content``) or removed (``=None``)."""
    files = {**base}
    for key, content in changes.items():
        files[key.replace("__", ".")] = content
    return write_dir(tmp_path / name, files)


def errors_of(path: Path, **options) -> list[str]:
    with pytest.raises(DataDirValidationError) as info:
        validate(path, **options)
    assert info.value.errors, "raised without errors"
    return info.value.errors


# -- valid dirs ---------------------------------------------------------------------------------


def test_valid_plain_dir_with_pipe_is_accepted(tmp_path):
    assert validate(make(tmp_path, PLAIN)) == []


def test_valid_segments_dir_is_accepted(tmp_path):
    assert validate(make(tmp_path, SEG)) == []


def test_segment_may_overshoot_recording_by_tolerance(tmp_path):
    seg = [*SEG["segments"][:2], "spkB-rec2-0000 rec2 0.50 2.60"]  # reco2dur 2.2 + 0.4 s
    assert validate(make(tmp_path, SEG, segments=seg)) == []


def test_one_speaker_is_a_warning(tmp_path):
    d = make(
        tmp_path,
        PLAIN,
        wav__scp=PLAIN["wav.scp"][:2],
        utt2spk=PLAIN["utt2spk"][:2],
        spk2utt=PLAIN["spk2utt"][:1],
        text=PLAIN["text"][:2],
        utt2dur=PLAIN["utt2dur"][:2],
        spk2gender=PLAIN["spk2gender"][:1],
    )
    warnings = validate(d)
    assert len(warnings) == 1 and "only one speaker" in warnings[0]
    assert "utt2spk" in warnings[0]


def test_extra_file_missing_utterances_is_a_warning_unknown_one_an_error(tmp_path):
    d = make(tmp_path, PLAIN, text__teacher=["spkA-u1 hello word", "spkB-u1 sao paulo"])
    warnings = validate(d)
    assert any("text.teacher" in w and "1 utterance(s) of utt2spk missing" in w for w in warnings)
    d2 = make(tmp_path, PLAIN, "d2", utt2avg_logprob=["spkA-u1 -0.2", "spkZ-u9 -0.1"])
    (err,) = errors_of(d2)
    assert "utt2avg_logprob:2:" in err and "'spkZ-u9'" in err


def test_not_a_directory(tmp_path):
    with pytest.raises(DataDirError, match="no such directory"):
        validate(tmp_path / "missing")


# -- invalid dirs: one problem each, the message names file (and line) ------------------------

NBSP, ZWSP = "\u00a0", "\u200b"
UNPREFIXED = {  # utterance ids not starting with their speaker: sorted by utt, not by speaker
    "utt2spk": ["spkA-u1 zed", "spkA-u2 zed", "spkB-u1 amy"],
    "spk2utt": ["amy spkB-u1", "zed spkA-u1 spkA-u2"],
    "spk2gender": ["amy f", "zed m"],
}
INVALID = [
    # (id, base, changes, file, line, fragment)
    ("missing utt2spk", PLAIN, {"utt2spk": None}, "utt2spk", None, "no such file"),
    ("missing spk2utt", PLAIN, {"spk2utt": None}, "spk2utt", None, "no such file"),
    ("empty text", PLAIN, {"text": ""}, "text", None, "empty file"),
    ("empty utt2spk", PLAIN, {"utt2spk": ""}, "utt2spk", None, "empty file"),
    (
        "unsorted text",
        PLAIN,
        {"text": [PLAIN["text"][1], PLAIN["text"][0], PLAIN["text"][2]]},
        "text",
        2,
        "not sorted",
    ),
    (
        "duplicate utt2dur key",
        PLAIN,
        {"utt2dur": [*PLAIN["utt2dur"][:2], "spkA-u2 2.0"]},
        "utt2dur",
        3,
        "duplicate key 'spkA-u2'",
    ),
    (
        "utt2spk three fields",
        PLAIN,
        {"utt2spk": ["spkA-u1 spkA x", *PLAIN["utt2spk"][1:]]},
        "utt2spk",
        1,
        "got 3 fields",
    ),
    ("not speaker-prefixed", PLAIN, UNPREFIXED, "utt2spk", 3, "prefixes of utterance ids"),
    (
        "spk2utt disagrees",
        PLAIN,
        {"spk2utt": ["spkA spkA-u1", "spkB spkA-u2 spkB-u1"]},
        "spk2utt",
        2,
        "utt2spk says 'spkA'",
    ),
    ("missing text", PLAIN, {"text": None}, "text", None, "--no-text"),
    ("missing wav.scp", PLAIN, {"wav.scp": None}, "wav.scp", None, "--no-wav"),
    (
        "non-printable",
        PLAIN,
        {"text": [PLAIN["text"][0], f"spkA-u2 good{ZWSP} morning", PLAIN["text"][2]]},
        "text",
        2,
        "non-printable",
    ),
    (
        "unicode whitespace",
        PLAIN,
        {"text": [f"spkA-u1 hello{NBSP}world", *PLAIN["text"][1:]]},
        "text",
        1,
        "whitespace U+00A0",
    ),
    ("CRLF", PLAIN, {"text": "\r\n".join(PLAIN["text"]) + "\r\n"}, "text", 1, "carriage return"),
    ("no final newline", PLAIN, {"text": "\n".join(PLAIN["text"])}, "text", 3, "newline"),
    (
        "blank line",
        PLAIN,
        {"text": [PLAIN["text"][0], "", *PLAIN["text"][1:]]},
        "text",
        2,
        "empty line",
    ),
    (
        "invalid utf-8",
        PLAIN,
        {"text": b"spkA-u1 a\nspkA-u2 \xff\xfe\nspkB-u1 c\n"},
        "text",
        2,
        "UTF-8",
    ),
    (
        "reserved symbol",
        PLAIN,
        {"text": ["spkA-u1 <s> hello", *PLAIN["text"][1:]]},
        "text",
        1,
        "'<s>'",
    ),
    (
        "text extra utterance",
        PLAIN,
        {"text": [*PLAIN["text"], "spkC-u1 who"]},
        "text",
        4,
        "'spkC-u1' is not in utt2spk",
    ),
    (
        "text missing utterance",
        PLAIN,
        {"text": PLAIN["text"][:2]},
        "text",
        None,
        "1 utterance(s) of utt2spk missing",
    ),
    (
        "wav.scp keys differ",
        PLAIN,
        {"wav.scp": PLAIN["wav.scp"][:2]},
        "wav.scp",
        None,
        "missing (e.g. 'spkB-u1')",
    ),
    (
        "tilde path",
        PLAIN,
        {"wav.scp": ["spkA-u1 ~/a1.wav", *PLAIN["wav.scp"][1:]]},
        "wav.scp",
        1,
        "'~'",
    ),
    (
        "empty wav entry",
        PLAIN,
        {"wav.scp": ["spkA-u1", *PLAIN["wav.scp"][1:]]},
        "wav.scp",
        1,
        "no path or command",
    ),
    (
        "utt2dur zero",
        PLAIN,
        {"utt2dur": ["spkA-u1 1.5", "spkA-u2 0", "spkB-u1 3.25"]},
        "utt2dur",
        2,
        "positive",
    ),
    (
        "utt2dur nan",
        PLAIN,
        {"utt2dur": ["spkA-u1 1.5", "spkA-u2 nan", "spkB-u1 3.25"]},
        "utt2dur",
        2,
        "positive and finite",
    ),
    (
        "utt2dur not a number",
        PLAIN,
        {"utt2dur": ["spkA-u1 1.5 s", *PLAIN["utt2dur"][1:]]},
        "utt2dur",
        1,
        "expected one number",
    ),
    (
        "spk2gender value",
        PLAIN,
        {"spk2gender": ["spkA female", "spkB m"]},
        "spk2gender",
        1,
        "'m' or 'f'",
    ),
    (
        "spk2gender speakers",
        PLAIN,
        {"spk2gender": ["spkA f"]},
        "spk2gender",
        None,
        "speaker(s) of utt2spk missing",
    ),
    (
        "end before start",
        SEG,
        {"segments": [SEG["segments"][0], "spkA-rec1-0001 rec1 3.00 1.50", SEG["segments"][2]]},
        "segments",
        2,
        "not after",
    ),
    (
        "negative start",
        SEG,
        {"segments": ["spkA-rec1-0000 rec1 -0.10 1.50", *SEG["segments"][1:]]},
        "segments",
        1,
        "negative start",
    ),
    (
        "segment fields",
        SEG,
        {"segments": ["spkA-rec1-0000 rec1 0.00", *SEG["segments"][1:]]},
        "segments",
        1,
        "expected 'utt reco start end'",
    ),
    (
        "unknown recording",
        SEG,
        {"segments": [*SEG["segments"][:2], "spkB-rec2-0000 rec3 0.5 2"]},
        "segments",
        3,
        "recording 'rec3'",
    ),
    (
        "unused recording",
        SEG,
        {"wav.scp": [*SEG["wav.scp"], "rec9 /data/rec9.wav"]},
        "wav.scp",
        3,
        "used by no segment",
    ),
    (
        "segment past end",
        SEG,
        {"segments": [*SEG["segments"][:2], "spkB-rec2-0000 rec2 0.5 2.8"]},
        "segments",
        3,
        "past the end of recording 'rec2'",
    ),
    (
        "segments utterances",
        SEG,
        {"segments": SEG["segments"][:2]},
        "segments",
        None,
        "missing (e.g. 'spkB-rec2-0000')",
    ),
    ("reco2dur keys", SEG, {"reco2dur": ["rec1 3.0"]}, "reco2dur", None, "recording(s)"),
    ("segments without wav.scp", SEG, {"wav.scp": None}, "wav.scp", None, "segments needs it"),
]


@pytest.mark.parametrize(
    ("base", "changes", "name", "line", "fragment"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_dir_is_rejected_naming_file_and_line(
    tmp_path, base, changes, name, line, fragment
):
    d = make(tmp_path, base, **{k.replace(".", "__"): v for k, v in changes.items()})
    options = {"no_wav": True} if changes == {"wav.scp": None} and base is SEG else {}
    errors = errors_of(d, **options)
    where = f"{d / name}:{line}: " if line is not None else f"{d / name}: "
    matching = [e for e in errors if e.startswith(where) and fragment in e]
    assert matching, f"no error starting {where!r} containing {fragment!r} in {errors}"


def test_all_errors_are_collected_in_one_exception(tmp_path):
    d = make(
        tmp_path,
        PLAIN,
        text=[PLAIN["text"][1], PLAIN["text"][0], PLAIN["text"][2]],
        utt2dur=["spkA-u1 1.5", "spkA-u2 -1", "spkB-u1 3.25"],
        spk2gender=["spkA x", "spkB m"],
    )
    with pytest.raises(DataDirValidationError) as info:
        validate(d)
    errors = info.value.errors
    assert len(errors) == 3
    assert [Path(e.split(":")[0]).name for e in errors] == ["text", "utt2dur", "spk2gender"]
    assert str(info.value).startswith(f"{d}: invalid data dir (3 errors)")


def test_errors_per_file_are_capped(tmp_path):
    n = 30
    utts = [f"spk{i:02d}-u" for i in range(n)]
    d = write_dir(
        tmp_path / "d",
        {
            "utt2spk": [f"{u} spk{i:02d}" for i, u in enumerate(utts)],
            "spk2utt": [f"spk{i:02d} {u}" for i, u in enumerate(utts)],
            "text": [f"{u} a{ZWSP}b" for u in utts],
        },
    )
    errors = errors_of(d, no_wav=True)
    assert len(errors) == 11 and errors[-1].endswith("and 20 more errors")


# -- options ------------------------------------------------------------------------------------


def test_no_text_allows_missing_text_but_still_checks_present_text(tmp_path):
    assert validate(make(tmp_path, PLAIN, text=None), no_text=True) == []
    bad = make(tmp_path, PLAIN, "bad", text=[*PLAIN["text"][:2], "spkB-u1 <s>"])
    assert any(":3: reserved symbol" in e for e in errors_of(bad, no_text=True))


def test_no_wav_allows_missing_wav_scp_but_checks_present_one(tmp_path):
    assert validate(make(tmp_path, PLAIN, wav__scp=None), no_wav=True) == []
    bad = make(tmp_path, PLAIN, "bad", wav__scp=PLAIN["wav.scp"][:2])
    assert any("wav.scp" in e for e in errors_of(bad, no_wav=True))


def test_no_spk_sort_accepts_ids_not_prefixed_by_speaker(tmp_path):
    d = make(tmp_path, PLAIN, **UNPREFIXED)
    assert any("--no-spk-sort" in e for e in errors_of(d))
    assert validate(d, no_spk_sort=True) == []


def test_non_print_allows_non_printable_but_not_odd_whitespace(tmp_path):
    d = make(tmp_path, PLAIN, text=[f"spkA-u1 hello{ZWSP}", "spkA-u2 \ufeffbom", PLAIN["text"][2]])
    assert len(errors_of(d)) == 2
    assert validate(d, non_print=True) == []
    ws = make(tmp_path, PLAIN, "ws", text=[f"spkA-u1 hello{NBSP}world", *PLAIN["text"][1:]])
    assert any("whitespace" in e for e in errors_of(ws, non_print=True))


def test_transcript_checks_apply_to_extra_text_files(tmp_path):
    d = make(tmp_path, PLAIN, text__teacher=["spkA-u1 ok", f"spkA-u2 bad{ZWSP}", "spkB-u1 ok"])
    (err,) = errors_of(d)
    assert err.startswith(f"{d / 'text.teacher'}:2: non-printable")
