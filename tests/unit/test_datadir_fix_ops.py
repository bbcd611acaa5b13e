"""fix (fix_data_dir.sh), subset, copy, combine, split and merge_split on small data dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_datadir import PLAIN, SEG, make, write_dir

from speechdistill.datadir import (
    DataDir,
    DataDirError,
    combine,
    copy,
    fix,
    merge_split,
    split,
    subset,
    validate,
)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def big_dir(path: Path, n_spk: int = 4, per_spk: tuple[int, ...] = (5, 1, 3, 2)) -> Path:
    """Speakers s0..s{n-1} with per_spk[i] utterances each (11 by default)."""
    utt2spk, text, wav = [], [], []
    for i in range(n_spk):
        for j in range(per_spk[i]):
            u = f"s{i}-u{j:02d}"
            utt2spk.append(f"{u} s{i}")
            text.append(f"{u} words {i} {j}")
            wav.append(f"{u} /data/{u}.wav")
    spk2utt = [
        f"s{i} " + " ".join(f"s{i}-u{j:02d}" for j in range(per_spk[i])) for i in range(n_spk)
    ]
    return write_dir(path, {"utt2spk": utt2spk, "spk2utt": spk2utt, "text": text, "wav.scp": wav})


# -- fix ----------------------------------------------------------------------------------------


def test_fix_sorts_and_merges_identical_duplicates(tmp_path):
    d = make(
        tmp_path,
        PLAIN,
        text=[PLAIN["text"][2], PLAIN["text"][0], PLAIN["text"][1], PLAIN["text"][0]],
        utt2dur="spkA-u2 2.0\r\n\nspkA-u1 1.5\r\nspkB-u1 3.25\r\n",
    )
    report = fix(d)
    assert (report.kept, report.total) == (3, 3)
    assert lines(d / "text") == PLAIN["text"]
    assert lines(d / "utt2dur") == PLAIN["utt2dur"]
    assert set(report.written) == {"text", "utt2dur"}  # the rest was already right
    assert validate(d) == []


def test_fix_keeps_only_utterances_present_everywhere(tmp_path):
    d = make(
        tmp_path,
        PLAIN,
        text=[PLAIN["text"][0], PLAIN["text"][2]],  # spkA-u2 has no transcript
        utt2dur=["spkA-u1 1.5", "spkA-u2 2.0", "spkB-u1 0"],  # spkB-u1 has no duration
    )
    report = fix(d)
    assert (report.kept, report.total, report.removed) == (1, 3, 2)
    assert report.summary() == "fix: kept 1 utterances out of 3"
    assert lines(d / "utt2spk") == ["spkA-u1 spkA"]
    assert lines(d / "spk2utt") == ["spkA spkA-u1"]
    assert lines(d / "wav.scp") == ["spkA-u1 /data/a1.wav"]
    assert lines(d / "spk2gender") == ["spkA f"]  # speaker spkB is gone
    assert lines(d / "text") == [PLAIN["text"][0]]
    (warning,) = validate(d)
    assert "only one speaker" in warning


def test_fix_drops_speakers_missing_from_spk2gender_like_kaldi(tmp_path):
    d = make(tmp_path, PLAIN, spk2gender=["spkB m"])
    report = fix(d)
    assert report.kept == 1
    assert lines(d / "utt2spk") == ["spkB-u1 spkB"]


def test_fix_with_segments_drops_unused_recordings(tmp_path):
    d = make(
        tmp_path,
        SEG,
        text=SEG["text"][:2],  # drop the only utterance of rec2
        wav__scp=[*SEG["wav.scp"], "rec9 /data/rec9.wav"],
        reco2dur=[*SEG["reco2dur"], "rec9 1.0"],
    )
    report = fix(d)
    assert report.kept == 2
    assert lines(d / "wav.scp") == ["rec1 /data/rec1.wav"]
    assert lines(d / "reco2dur") == ["rec1 3.0"]
    assert lines(d / "segments") == SEG["segments"][:2]


def test_fix_drops_segments_whose_recording_is_not_in_wav_scp(tmp_path):
    d = make(tmp_path, SEG, wav__scp=SEG["wav.scp"][:1], reco2dur=SEG["reco2dur"][:1])
    assert fix(d).kept == 2
    assert DataDir(d).utt_ids() == ["spkA-rec1-0000", "spkA-rec1-0001"]


def test_fix_utt_extra_files_decide_only_when_named(tmp_path):
    teacher = ["spkA-u1 hello", "spkB-u1 sao paulo", "spkZ-u1 stray"]
    d = make(tmp_path, PLAIN, text__teacher=teacher)
    assert fix(d).kept == 3  # not named: only filtered to the kept utterances
    assert lines(d / "text.teacher") == teacher[:2]
    assert fix(d, utt_extra_files=["text.teacher"]).kept == 2
    assert "spkA-u2" not in DataDir(d).utt_ids()
    assert validate(d) == []


def test_fix_spk_extra_files(tmp_path):
    d = make(tmp_path, PLAIN, spk2age=["spkA 30"])
    assert fix(d).kept == 3
    assert fix(d, spk_extra_files=["spk2age"]).kept == 2


def test_fix_removes_a_file_left_without_entries(tmp_path):
    d = make(tmp_path, PLAIN, utt2score=["spkA-u2 0.5"], text=[PLAIN["text"][0], PLAIN["text"][2]])
    report = fix(d)
    assert report.removed_files == ("utt2score",)
    assert not (d / "utt2score").exists()
    assert (d / ".backup" / "utt2score").is_file()


def test_fix_conflicting_duplicate_is_an_error_and_changes_nothing(tmp_path):
    d = make(tmp_path, PLAIN, text=[PLAIN["text"][1], "spkA-u1 other", *PLAIN["text"]])
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(DataDirError, match=r"text:3: duplicate key 'spkA-u1' .* line 2"):
        fix(d)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_fix_refuses_when_nothing_would_remain(tmp_path):
    d = make(tmp_path, PLAIN, text=["spkZ-u1 nobody"])
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(DataDirError, match="no utterances remained out of 3"):
        fix(d)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_fix_backup(tmp_path):
    d = make(tmp_path, PLAIN, text=PLAIN["text"][:2])
    report = fix(d)
    assert report.backup == d / ".backup"
    assert lines(d / ".backup" / "text") == PLAIN["text"][:2]
    assert lines(d / ".backup" / "utt2spk") == PLAIN["utt2spk"]
    e = make(tmp_path, PLAIN, "e", text=PLAIN["text"][:2])
    assert fix(e, backup=False).backup is None
    assert not (e / ".backup").exists()


def test_fix_requires_utt2spk_and_wav_with_segments(tmp_path):
    with pytest.raises(DataDirError, match="no utt2spk"):
        fix(make(tmp_path, PLAIN, utt2spk=None))
    with pytest.raises(DataDirError, match=r"segments exists but wav\.scp does not"):
        fix(make(tmp_path, SEG, "s", wav__scp=None))


# -- subset -------------------------------------------------------------------------------------


def test_subset_first_last(tmp_path):
    src = big_dir(tmp_path / "src")
    all_utts = DataDir(src).utt_ids()
    assert DataDir(subset(src, tmp_path / "f", first=6)).utt_ids() == all_utts[:6]
    assert DataDir(subset(src, tmp_path / "l", last=4)).utt_ids() == all_utts[-4:]
    for name in ("f", "l"):
        assert validate(tmp_path / name) == []


def test_subset_random_is_deterministic_per_seed(tmp_path):
    src = big_dir(tmp_path / "src")
    a = DataDir(subset(src, tmp_path / "a", random=5, seed=1)).utt_ids()
    b = DataDir(subset(src, tmp_path / "b", random=5, seed=1)).utt_ids()
    c = DataDir(subset(src, tmp_path / "c", random=5, seed=2)).utt_ids()
    assert a == b and len(a) == 5 and a != c
    assert set(a) <= set(DataDir(src).utt_ids())
    assert lines(tmp_path / "a" / "text") == [
        line for line in lines(src / "text") if line.split()[0] in a
    ]


def test_subset_by_lists(tmp_path):
    src = big_dir(tmp_path / "src")
    (tmp_path / "utts").write_text("s2-u01 x\ns0-u00\nnot-there\n")
    d = subset(src, tmp_path / "u", utt_list=tmp_path / "utts")
    assert DataDir(d).utt_ids() == ["s0-u00", "s2-u01"]
    assert lines(d / "spk2utt") == ["s0 s0-u00", "s2 s2-u01"]
    d = subset(src, tmp_path / "s", spk_list=["s1", "s3"])
    assert DataDir(d).utt_ids() == ["s1-u00", "s3-u00", "s3-u01"]
    validate(d)


def test_subset_with_segments_keeps_only_used_recordings(tmp_path):
    src = make(tmp_path, SEG)
    d = subset(src, tmp_path / "sub", utt_list=["spkB-rec2-0000"])
    assert lines(d / "wav.scp") == [SEG["wav.scp"][1]]
    assert lines(d / "reco2dur") == ["rec2 2.2"]
    assert lines(d / "segments") == [SEG["segments"][2]]
    assert "only one speaker" in validate(d)[0]


def test_subset_removes_stale_files_of_an_earlier_run(tmp_path):
    src = big_dir(tmp_path / "src")
    dst = make(tmp_path, SEG, "dst")
    subset(src, dst, first=2)
    assert not (dst / "segments").exists() and not (dst / "reco2dur").exists()
    validate(dst)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "exactly one"),
        ({"first": 1, "last": 1}, ValueError, "exactly one"),
        ({"first": 12}, DataDirError, "cannot take 12 utterances: the data dir has 11"),
        ({"random": 0}, DataDirError, "cannot take 0"),
        ({"utt_list": ["nope"]}, DataDirError, "no utterances selected"),
    ],
)
def test_subset_bad_requests(tmp_path, kwargs, error, match):
    src = big_dir(tmp_path / "src")
    with pytest.raises(error, match=match):
        subset(src, tmp_path / "dst", **kwargs)
    assert not (tmp_path / "dst").exists()


def test_subset_into_itself_is_refused(tmp_path):
    src = big_dir(tmp_path / "src")
    with pytest.raises(DataDirError, match="same directory"):
        subset(src, src / ".." / "src", first=1)
    assert len(DataDir(src)) == 11


# -- copy ---------------------------------------------------------------------------------------


def test_copy_with_prefixes_renames_utterances_and_speakers(tmp_path):
    d = copy(make(tmp_path, PLAIN), tmp_path / "c", utt_prefix="x-", spk_prefix="x-")
    assert lines(d / "utt2spk") == ["x-spkA-u1 x-spkA", "x-spkA-u2 x-spkA", "x-spkB-u1 x-spkB"]
    assert lines(d / "wav.scp")[0] == "x-spkA-u1 /data/a1.wav"
    assert lines(d / "spk2gender") == ["x-spkA f", "x-spkB m"]
    assert validate(d) == []
    s = copy(make(tmp_path, SEG, "seg"), tmp_path / "cs", utt_suffix="-sp", spk_suffix="")
    assert lines(s / "wav.scp") == SEG["wav.scp"]  # recordings keep their ids
    assert lines(s / "segments")[0] == "spkA-rec1-0000-sp rec1 0.00 1.50"
    assert validate(s) == []


# -- combine ------------------------------------------------------------------------------------


def test_combine_union_is_valid(tmp_path):
    a = make(tmp_path, PLAIN, "a")
    b = copy(a, tmp_path / "b", utt_prefix="b-", spk_prefix="b-")
    dst = combine(tmp_path / "ab", [a, b])
    assert len(DataDir(dst)) == 6
    assert lines(dst / "spk2gender") == ["b-spkA f", "b-spkB m", "spkA f", "spkB m"]
    assert validate(dst) == []


def test_combine_overlap_with_same_content_is_merged(tmp_path):
    a = make(tmp_path, PLAIN, "a")
    dst = combine(tmp_path / "aa", [a, a])
    assert lines(dst / "text") == PLAIN["text"]


def test_combine_collision_names_both_dirs(tmp_path):
    a = make(tmp_path, PLAIN, "a")
    b = make(tmp_path, PLAIN, "b", text=[*PLAIN["text"][:2], "spkB-u1 sao paulo"])
    with pytest.raises(DataDirError) as info:
        combine(tmp_path / "ab", [a, b])
    message = str(info.value)
    assert "'spkB-u1'" in message and "text" in message
    assert str(a) in message and str(b) in message
    assert not (tmp_path / "ab").exists()


def test_combine_skips_files_not_everywhere(tmp_path, caplog):
    a = make(tmp_path, PLAIN, "a", text__teacher=PLAIN["text"])
    b = copy(make(tmp_path, PLAIN, "b0"), tmp_path / "b", utt_prefix="b-", spk_prefix="b-")
    dst = combine(tmp_path / "ab", [a, b])
    assert not (dst / "text.teacher").exists()
    assert "not combining text.teacher" in caplog.text


def test_combine_mixed_segments_uses_identity_segments(tmp_path):
    plain = make(tmp_path, PLAIN, "plain")
    seg = make(tmp_path, SEG, "seg")
    dst = combine(tmp_path / "mix", [plain, seg])
    assert len(DataDir(dst)) == 6
    segments = lines(dst / "segments")
    assert "spkA-u1 spkA-u1 0 1.5" in segments and SEG["segments"][0] in segments
    assert "spkA-u2 sox /data/a2.flac -t wav - |" in lines(dst / "wav.scp")
    assert "spkB-u1 3.25" in lines(dst / "reco2dur")
    assert validate(dst) == []


def test_combine_mixed_segments_without_durations_is_an_error(tmp_path):
    plain = make(tmp_path, PLAIN, "plain", utt2dur=None)
    seg = make(tmp_path, SEG, "seg")
    with pytest.raises(DataDirError, match=r"plain: has no segments .* utt2dur or reco2dur"):
        combine(tmp_path / "mix", [plain, seg])


def test_combine_refuses_dst_among_sources(tmp_path):
    a = make(tmp_path, PLAIN, "a")
    with pytest.raises(DataDirError, match="same directory"):
        combine(a, [a])


# -- split --------------------------------------------------------------------------------------


def test_split_per_utterance_is_contiguous_and_balanced(tmp_path):
    src = big_dir(tmp_path / "src")
    parts = split(src, 3)
    assert parts == [src / "split3" / str(i) for i in (1, 2, 3)]
    chunks = [DataDir(p).utt_ids() for p in parts]
    assert [len(c) for c in chunks] == [4, 4, 3]
    assert [u for c in chunks for u in c] == DataDir(src).utt_ids()
    for part, chunk in zip(parts, chunks, strict=True):
        validate(part)
        assert lines(part / "text") == [x for x in lines(src / "text") if x.split()[0] in chunk]


def test_split_by_speaker_keeps_speakers_whole(tmp_path):
    src = big_dir(tmp_path / "src")  # speakers with 5, 1, 3, 2 utterances
    parts = split(src, 2, by_speaker=True)
    assert parts[0].parent.name == "split2spk"
    speakers = [set(DataDir(p).utt2spk().values()) for p in parts]
    assert speakers == [{"s0"}, {"s1", "s2", "s3"}]  # 5 | 6 is the most even cut
    assert not speakers[0] & speakers[1]
    three = [len(DataDir(p)) for p in split(src, 3, by_speaker=True)]
    assert three == [5, 4, 2] and sum(three) == 11


def test_split_with_segments_restricts_recordings(tmp_path):
    src = make(tmp_path, SEG)
    p1, p2 = split(src, 2)
    assert lines(p1 / "wav.scp") == [SEG["wav.scp"][0]]
    assert lines(p2 / "wav.scp") == [SEG["wav.scp"][1]]
    assert lines(p2 / "reco2dur") == ["rec2 2.2"]


def test_split_is_reused_until_the_source_changes(tmp_path):
    src = big_dir(tmp_path / "src")
    parts = split(src, 2)
    marker = parts[0] / "marker"
    marker.write_text("x")
    assert split(src, 2) == parts and marker.exists()  # reused
    (src / "text").write_text("".join(f"{line} changed\n" for line in lines(src / "text")))
    split(src, 2)
    assert not marker.exists()
    assert lines(parts[0] / "text")[0].endswith("changed")


def test_split_too_many_parts(tmp_path):
    src = big_dir(tmp_path / "src")
    with pytest.raises(DataDirError, match="cannot split 11 utterances into 12 parts"):
        split(src, 12)
    with pytest.raises(DataDirError, match="cannot split 4 speakers into 5 parts"):
        split(src, 5, by_speaker=True)
    with pytest.raises(ValueError, match="positive"):
        split(src, 0)


# -- merge_split --------------------------------------------------------------------------------


def test_merge_split_merges_in_c_order(tmp_path):
    write_dir(tmp_path, {"o2": ["b 2", "a 1"], "o1": ["c 3"]})
    n = merge_split([tmp_path / "o1", tmp_path / "o2"], tmp_path / "out", expected=["a", "b", "c"])
    assert n == 3 and lines(tmp_path / "out") == ["a 1", "b 2", "c 3"]


def test_merge_split_duplicate_key_names_both_files(tmp_path):
    write_dir(tmp_path, {"o1": ["a 1", "b 2"], "o2": ["b 2"]})
    with pytest.raises(DataDirError, match=r"o2: key 'b' also in .*o1"):
        merge_split([tmp_path / "o1", tmp_path / "o2"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("expected", "match"),
    [
        (["a", "b", "c"], "1 keys missing \\(e.g. 'c'\\)"),
        (["a"], "1 unexpected keys \\(e.g. 'b'\\)"),
    ],
)
def test_merge_split_checks_expected_keys(tmp_path, expected, match):
    write_dir(tmp_path, {"o1": ["a 1"], "o2": ["b 2"]})
    with pytest.raises(DataDirError, match=match):
        merge_split([tmp_path / "o1", tmp_path / "o2"], tmp_path / "out", expected=expected)
    assert not (tmp_path / "out").exists()


def test_split_then_merge_round_trip(tmp_path):
    src = big_dir(tmp_path / "src")
    parts = split(src, 3)
    outs = []
    for p in parts:  # a "job": uppercase the transcripts
        out = p / "text.upper"
        out.write_text("".join(f"{k} {v.upper()}\n" for k, v in DataDir(p).text().items()))
        outs.append(out)
    merge_split(outs, src / "text.upper", expected=DataDir(src).utt_ids())
    assert lines(src / "text.upper") == [
        f"{x.split(' ', 1)[0]} {x.split(' ', 1)[1].upper()}" for x in lines(src / "text")
    ]
