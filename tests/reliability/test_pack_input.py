"""Reliability of ``speechdistill data pack``: long utterances, overlapping segments, segments
past their recording, utterances without a recording, a foreign output dir."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechdistill.datadir import DataDirError
from speechdistill.pack import pack_data_dir, window_utts

REPO = Path(__file__).resolve().parents[2]
SR = 16000


def recording_dir(root: Path, segments: dict[str, tuple[float, float]], seconds: float = 20.0):
    """One recording ``r1`` of ``seconds`` of tone cut by ``segments`` (utt -> start, end)."""
    root.mkdir(parents=True)
    t = np.arange(round(seconds * SR)) / SR
    sf.write(root / "r1.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), SR)
    utts = sorted(segments)
    files = {
        "wav.scp": f"r1 {root / 'r1.wav'}\n",
        "segments": "".join(f"{u} r1 {segments[u][0]} {segments[u][1]}\n" for u in utts),
        "utt2spk": "".join(f"{u} spk1\n" for u in utts),
        "spk2utt": "spk1 " + " ".join(utts) + "\n",
        "text": "".join(f"{u} hello\n" for u in utts),
    }
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speechdistill", "data", "pack", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_utterance_longer_than_the_window_is_kept_alone_and_counted(tmp_path: Path, caplog):
    src = recording_dir(
        tmp_path / "in", {"spk1-a": (0, 4), "spk1-b": (4.5, 16), "spk1-c": (16.5, 19)}
    )
    with caplog.at_level(logging.WARNING):
        pack_data_dir(src, tmp_path / "out", max_duration=10)
    assert window_utts(tmp_path / "out")["spk1-b"] == ["spk1-b"]
    assert json.loads((tmp_path / "out" / "pack.json").read_text())["too_long"] == ["spk1-b"]
    assert "1 utterance(s) too long kept alone, e.g. spk1-b" in caplog.text


def test_overlapping_segments_are_kept_alone_and_counted(tmp_path: Path, caplog):
    segs = {
        "spk1-a": (0, 3),
        "spk1-b": (3.2, 6),
        "spk1-c": (5.5, 8),
        "spk1-d": (8.2, 10),
        "spk1-e": (10.1, 12),
    }
    src = recording_dir(tmp_path / "in", segs)
    with caplog.at_level(logging.WARNING):
        pack_data_dir(src, tmp_path / "out")
    assert window_utts(tmp_path / "out") == {
        "spk1-a": ["spk1-a"],
        "spk1-b": ["spk1-b"],  # overlaps c
        "spk1-c": ["spk1-c"],
        "spk1-d": ["spk1-d", "spk1-e"],
    }
    info = json.loads((tmp_path / "out" / "pack.json").read_text())
    assert info["overlapping"] == ["spk1-b", "spk1-c"] and info["alone"] == 3
    assert "2 utterance(s) overlapping kept alone" in caplog.text


def test_segment_past_the_end_of_its_recording_is_an_error_naming_it(tmp_path: Path):
    src = recording_dir(tmp_path / "in", {"spk1-a": (0, 4), "spk1-b": (5, 25)})
    proc = cli(str(src), str(tmp_path / "out"))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'spk1-b' ends at 25 s, after its recording 'r1'" in lines[0]


def test_utterance_without_a_segment_is_an_error_naming_it(tmp_path: Path):
    src = recording_dir(tmp_path / "in", {"spk1-a": (0, 4)})
    (src / "utt2spk").write_text("spk1-a spk1\nspk1-b spk1\n")
    (src / "spk2utt").write_text("spk1 spk1-a spk1-b\n")
    (src / "text").write_text("spk1-a hello\nspk1-b hello\n")
    with pytest.raises(DataDirError, match="spk1-b"):
        pack_data_dir(src, tmp_path / "out")
    assert not (tmp_path / "out" / "wav.scp").exists()


def test_utterance_missing_from_utt2reco_is_an_error_naming_it(tmp_path: Path):
    root = tmp_path / "in"
    root.mkdir()
    for u in ("s1-a", "s1-b"):
        sf.write(root / f"{u}.wav", np.full(SR, 0.1, dtype=np.float32), SR)
    (root / "wav.scp").write_text(f"s1-a {root}/s1-a.wav\ns1-b {root}/s1-b.wav\n")
    (root / "utt2spk").write_text("s1-a s1\ns1-b s1\n")
    (root / "spk2utt").write_text("s1 s1-a s1-b\n")
    (root / "utt2reco").write_text("s1-a rec\n")
    proc = cli(str(root), str(tmp_path / "out"))
    assert proc.returncode != 0 and "utterance 's1-b' has no recording" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_output_dir_of_the_user_is_refused_and_kept(tmp_path: Path):
    src = recording_dir(tmp_path / "in", {"spk1-a": (0, 4)})
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = cli(str(src), str(out))
    assert proc.returncode != 0 and "not written by `speechdistill data pack`" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
