"""speechdistill.datadir.core: reading and writing the Kaldi files of a data dir."""

from __future__ import annotations

import re

import pytest

from speechdistill.datadir import (
    DataDir,
    DataDirError,
    Segment,
    parse_line,
    read_floats,
    read_kv,
    read_segments,
    spk2utt_to_utt2spk,
    write_kv,
)
from speechdistill.datadir.core import format_line

PIPE = "sox /data/a b.flac -t wav -r 16000 - remix 1 |"


def test_wav_scp_with_paths_and_pipes_round_trips_in_c_order(tmp_path):
    wav = {"b-1": "/data/b1.wav", "B-1": PIPE, "a_1": "/x/é.wav", "a-1": "cat /d/a.wav |"}
    path = tmp_path / "wav.scp"
    write_kv(path, wav)
    # LC_ALL=C: upper case before lower case, '-' (0x2d) before '_' (0x5f)
    assert path.read_text(encoding="utf-8") == (
        f"B-1 {PIPE}\na-1 cat /d/a.wav |\na_1 /x/é.wav\nb-1 /data/b1.wav\n"
    )
    back = read_kv(path)
    assert back == wav and list(back) == ["B-1", "a-1", "a_1", "b-1"]


def test_parse_line_keeps_the_value_verbatim():
    assert parse_line("u1\t  two  spaces\tand tab \r\n") == ("u1", "two  spaces\tand tab")
    assert parse_line("u2") == ("u2", "")
    assert parse_line("   ") == ("", "")


def test_text_with_line_separator_and_empty_transcript(tmp_path):
    path = tmp_path / "text"
    path.write_text("u1 a\u2028b\u0085c\nu2\n", encoding="utf-8")
    assert read_kv(path) == {"u1": "a\u2028b\u0085c", "u2": ""}
    write_kv(path, read_kv(path))
    assert path.read_text(encoding="utf-8") == "u1 a\u2028b\u0085c\nu2\n"


def test_data_dir_standard_and_extra_files(tmp_path):
    d = DataDir(tmp_path / "d")
    d.write("wav.scp", {"rec1": "/data/rec1.wav", "rec2": "flac -c -d -s /data/r2.flac |"})
    d.write_segments(
        {"s1-rec1-0": Segment("rec1", 0.0, 1.25), "s2-rec2-0": Segment("rec2", 0.5, 2.0004)}
    )
    d.write_utt2spk({"s2-rec2-0": "s2", "s1-rec1-0": "s1"})
    d.write("text", {"s1-rec1-0": "hello world", "s2-rec2-0": "são paulo"})
    d.write("utt2dur", {"s1-rec1-0": 1.25, "s2-rec2-0": 1.5})
    d.write("reco2dur", {"rec1": 3.0, "rec2": 2.2})
    d.write("text.teacher", {"s1-rec1-0": "hello word"})
    d.write("utt2avg_logprob", {"s1-rec1-0": -0.123456789, "s2-rec2-0": -1})

    assert d.file("segments").read_text() == (
        "s1-rec1-0 rec1 0.000 1.250\ns2-rec2-0 rec2 0.500 2.000\n"
    )
    assert d.segments() == {
        "s1-rec1-0": Segment("rec1", 0.0, 1.25),
        "s2-rec2-0": Segment("rec2", 0.5, 2.0),
    }
    assert d.has_segments and d.wav_scp()["rec2"].endswith("|")
    assert d.utt2spk() == {"s1-rec1-0": "s1", "s2-rec2-0": "s2"}
    assert d.spk2utt() == {"s1": ["s1-rec1-0"], "s2": ["s2-rec2-0"]}
    assert spk2utt_to_utt2spk(d.spk2utt()) == d.utt2spk()
    assert d.text()["s2-rec2-0"] == "são paulo"
    assert d.utt2dur() == {"s1-rec1-0": 1.25, "s2-rec2-0": 1.5}
    assert d.read_floats("reco2dur") == {"rec1": 3.0, "rec2": 2.2}
    assert d.text("text.teacher") == {"s1-rec1-0": "hello word"}
    assert d.read("utt2avg_logprob") == {"s1-rec1-0": "-0.123457", "s2-rec2-0": "-1"}
    assert d.utt_ids() == ["s1-rec1-0", "s2-rec2-0"] and len(d) == 2
    # with segments, wav.scp and reco2dur are keyed by recording, not utterance
    utt_files = ["segments", "text", "text.teacher", "utt2avg_logprob", "utt2dur", "utt2spk"]
    assert d.utt_files() == utt_files
    d.file("segments").unlink()
    assert d.utt_files()[-1] == "wav.scp"


def test_spk2utt_lists_utterances_in_c_order(tmp_path):
    d = DataDir(tmp_path)
    d.write_utt2spk({"spkA-u2": "spkA", "spkB-u1": "spkB", "spkA-u10": "spkA", "spkA-U3": "spkA"})
    assert d.file("spk2utt").read_text() == "spkA spkA-U3 spkA-u10 spkA-u2\nspkB spkB-u1\n"


@pytest.mark.parametrize(
    ("content", "reader", "line", "fragment"),
    [
        (b"u1 a\nu2 b\nu1 c\n", read_kv, 3, "duplicate key 'u1'"),
        (b"u1 a\n\nu2 b\n", read_kv, 2, "empty line"),
        (b"u1 a\nu2 \xff\n", read_kv, 2, "invalid UTF-8"),
        (b"u1 r1 0 1\nu2 r1 1\n", read_segments, 2, "expected 'utt reco start end'"),
        (b"u1 r1 0 x\n", read_segments, 1, "non-numeric start/end"),
        (b"u1 1.5\nu2 1,5\n", read_floats, 2, "non-numeric value '1,5'"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, content, reader, line, fragment):
    path = tmp_path / "f"
    path.write_bytes(content)
    with pytest.raises(DataDirError) as info:
        reader(path)
    assert str(info.value).startswith(f"{path}:{line}: ") and fragment in str(info.value)
    assert (info.value.path, info.value.line) == (path, line)


def test_missing_file_and_not_a_data_dir(tmp_path):
    with pytest.raises(DataDirError, match="^" + re.escape(f"{tmp_path / 'nope'}: file not found")):
        read_kv(tmp_path / "nope")
    with pytest.raises(DataDirError, match="not a data dir"):
        DataDir(tmp_path).utt_ids()


def test_unwritable_keys_and_values_are_refused(tmp_path):
    assert format_line("u1", "") == "u1\n"
    for key in ("", "a b", "a\tb"):
        with pytest.raises(ValueError, match="invalid Kaldi key"):
            format_line(key, "x")
    with pytest.raises(ValueError, match="newline"):
        write_kv(tmp_path / "text", {"u1": "a\nb"})
    assert not (tmp_path / "text").exists()  # atomic: nothing half-written
