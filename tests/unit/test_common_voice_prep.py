"""data_prep.common_voice and egs/common_voice stage 1, on a tiny release in Common Voice's layout.

The fixture is an extracted release: ``cv-corpus-17.0-2024-03-15/<lang>/{train,dev,test}.tsv``
(tab-separated, unquoted, the release's columns), ``clip_durations.tsv`` and ``clips/*.mp3``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from recipe_helpers import REPO, copy_egs, run_recipe

from data_prep.common_voice import main, prepare_common_voice, speaker_ids
from speechdistill.audio import AudioReader
from speechdistill.datadir import DataDir, validate

RELEASE = "cv-corpus-17.0-2024-03-15"
# the header of recent releases (with sentence_id, sentence_domain) and of older ones
NEW_HEADER = [
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
    "age", "gender", "accents", "variant", "locale", "segment",
]  # fmt: skip
OLD_HEADER = [
    "client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents",
    "variant", "locale", "segment",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    "MP3" not in sf.available_formats(),
    reason="this libsndfile cannot write/read MP3 (needs libsndfile >= 1.1)",
)


def client(seed: str) -> str:
    """A 128-hex-digit client_id, like Common Voice's."""
    import hashlib

    return hashlib.sha512(seed.encode()).hexdigest()


A = client("anna")
B = A[:16] + client("bruno")[16:]  # shares A's first 16 characters
C = client("carla")
D = client("dora")
E = client("enzo")


def mp3(path: Path, seconds: float, sr: int = 48000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), sr, format="MP3")


def tsv(path: Path, header: list[str], rows: list[dict | str]) -> None:
    lines = ["\t".join(header)]
    for r in rows:
        if isinstance(r, str):  # a raw (malformed) line
            lines.append(r)
            continue
        full = {
            "up_votes": "2",
            "down_votes": "0",
            "age": "twenties",
            "gender": "female_feminine",
            "accents": "",
            "variant": "",
            "locale": path.parent.name,
            "segment": "",
            "sentence_id": "f00d",
            "sentence_domain": "",
            **r,
        }
        lines.append("\t".join(full[h] for h in header))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_release(root: Path, lang: str = "pt") -> Path:
    d = root / RELEASE / lang
    clips = d / "clips"
    for name, seconds in [
        ("common_voice_pt_100.mp3", 0.5),
        ("common_voice_pt_101.mp3", 0.75),
        ("common_voice_pt_102.mp3", 0.5),
        ("common_voice_pt_103.mp3", 0.5),
        ("common_voice_pt_106.mp3", 1.0),
        ("common_voice_pt_200.mp3", 0.5),
        ("common_voice_pt_201.mp3", 0.5),
        ("common_voice_pt_300.mp3", 0.5),
        ("common_voice_pt_301.mp3", 0.5),
    ]:
        mp3(clips / name, seconds)
    (clips / "common_voice_pt_105.mp3").write_bytes(b"")  # an empty clip
    (clips / "common_voice_pt_302.mp3").write_bytes(b"ID3 not really an mp3")
    tsv(
        d / "train.tsv",
        NEW_HEADER,
        [
            {"client_id": A, "path": "common_voice_pt_100.mp3", "sentence": "Olá, mundo!"},
            {"client_id": A, "path": "common_voice_pt_101.mp3", "sentence": 'Ele disse "sim".'},
            {"client_id": B, "path": "common_voice_pt_102.mp3", "sentence": "Bom\u200b dia  "},
            {"client_id": C, "path": "common_voice_pt_103.mp3", "sentence": " "},
            {"client_id": C, "path": "common_voice_pt_104.mp3", "sentence": "Faltando."},
            f"{C}\tcommon_voice_pt_107.mp3\tsó três campos",
            {"client_id": C, "path": "common_voice_pt_105.mp3", "sentence": "Vazio."},
            {"client_id": C, "path": "common_voice_pt_106.mp3", "sentence": "Sem duração."},
        ],
    )
    tsv(
        d / "dev.tsv",
        OLD_HEADER,
        [
            {"client_id": D, "path": "common_voice_pt_200.mp3", "sentence": "Primeira frase."},
            {"client_id": D, "path": "common_voice_pt_201.mp3", "sentence": "Segunda frase."},
        ],
    )
    tsv(
        d / "test.tsv",
        NEW_HEADER,
        [
            {"client_id": E, "path": "common_voice_pt_300.mp3", "sentence": "Teste um."},
            {"client_id": E, "path": "common_voice_pt_301.mp3", "sentence": "Teste dois."},
            {"client_id": E, "path": "common_voice_pt_302.mp3", "sentence": "Quebrado."},
        ],
    )
    durations = {
        "common_voice_pt_100.mp3": "504",
        "common_voice_pt_101.mp3": "756",
        "common_voice_pt_102.mp3": "504",
        "common_voice_pt_103.mp3": "504",
        "common_voice_pt_105.mp3": "1000",
        "common_voice_pt_200.mp3": "504",
        "common_voice_pt_201.mp3": "504",
        "common_voice_pt_300.mp3": "504",
        "common_voice_pt_301.mp3": "504",
    }
    (d / "clip_durations.tsv").write_text(
        "clip\tduration[ms]\n" + "".join(f"{k}\t{v}\n" for k, v in durations.items()),
        encoding="utf-8",
    )
    return d


@pytest.fixture
def release(tmp_path) -> Path:
    return build_release(tmp_path / "cv")


def test_prepare_official_splits(release, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    results = prepare_common_voice(release, tmp_path / "data")
    a, b = A[:17], B[:17]  # 16 characters would give A and B the same speaker
    assert a != b

    train = DataDir(tmp_path / "data" / "train")
    assert train.text() == {
        f"{a}-common_voice_pt_100": "Olá, mundo!",
        f"{a}-common_voice_pt_101": 'Ele disse "sim".',
        f"{b}-common_voice_pt_102": "Bom dia",
        f"{C[:17]}-common_voice_pt_106": "Sem duração.",
    }
    assert train.utt2spk() == {u: u.split("-")[0] for u in train.text()}
    assert train.spk2utt()[a] == [f"{a}-common_voice_pt_100", f"{a}-common_voice_pt_101"]
    assert train.wav_scp()[f"{a}-common_voice_pt_101"] == str(
        release / "clips" / "common_voice_pt_101.mp3"
    )
    durs = train.utt2dur()
    assert durs[f"{a}-common_voice_pt_100"] == 0.504  # clip_durations.tsv, exactly
    assert durs[f"{a}-common_voice_pt_101"] == 0.756
    assert durs[f"{C[:17]}-common_voice_pt_106"] == pytest.approx(1.0, abs=0.06)  # mp3 header
    assert results["train"].kept == 4 and results["train"].skipped.total == 4
    # the mp3 files decode through speechdistill.audio (libsndfile), at 16 kHz
    audio = AudioReader(train)(f"{a}-common_voice_pt_101")
    assert abs(len(audio) - 0.75 * 16000) < 0.06 * 16000 and np.abs(audio).max() > 0.1

    dev = DataDir(tmp_path / "data" / "dev")  # the older header, without sentence_id
    assert dev.text() == {
        f"{D[:17]}-common_voice_pt_200": "Primeira frase.",
        f"{D[:17]}-common_voice_pt_201": "Segunda frase.",
    }
    test = DataDir(tmp_path / "data" / "test")
    assert sorted(test.text()) == [f"{E[:17]}-common_voice_pt_300", f"{E[:17]}-common_voice_pt_301"]
    for split in ("train", "dev", "test"):
        validate(tmp_path / "data" / split)

    log = caplog.text
    assert "train: skipped 1 row(s) (empty sentence): common_voice_pt_103.mp3" in log
    assert "train: skipped 1 row(s) (missing audio): common_voice_pt_104.mp3" in log
    assert (
        "train: skipped 1 row(s) (malformed row (field count differs from the header)): row 6"
        in log
    )
    assert "train: skipped 1 row(s) (empty audio): common_voice_pt_105.mp3" in log
    assert "test: skipped 1 row(s) (unreadable audio" in log and "common_voice_pt_302.mp3" in log
    assert "speaker ids use 17 characters" in log


def test_speaker_ids_are_short_unique_and_deterministic():
    ids = speaker_ids([A, C, D, A])
    assert ids == {A: A[:16], C: C[:16], D: D[:16]}
    assert speaker_ids([A, B], 16) == {A: A[:17], B: B[:17]}
    assert speaker_ids([B, A], 16) == speaker_ids([A, B], 16)
    assert speaker_ids([A, C], 4) == {A: A[:4], C: C[:4]}


def test_language_folder_is_found_and_other_tsvs(release, tmp_path):
    root = release.parent.parent  # holds cv-corpus-*/pt
    shutil.copy(release / "dev.tsv", release / "validated.tsv")
    results = prepare_common_voice(root, tmp_path / "data", language="pt", splits=["validated"])
    assert results["validated"].kept == 2
    assert (tmp_path / "data" / "validated" / "text").is_file()
    with pytest.raises(FileNotFoundError, match="pass --language"):
        prepare_common_voice(root, tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=r"no_such\.tsv"):
        prepare_common_voice(release, tmp_path / "data", splits=["no_such"])


def test_without_clip_durations_every_duration_comes_from_the_audio(release, tmp_path, caplog):
    (release / "clip_durations.tsv").unlink()
    results = prepare_common_voice(release, tmp_path / "data", splits=["train"])
    durs = results["train"].data.utt2dur()
    assert durs[f"{A[:17]}-common_voice_pt_101"] == pytest.approx(0.75, abs=0.06)
    assert "skipped 1 row(s) (empty audio): common_voice_pt_105.mp3" in caplog.text


def test_command_line(release, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "data_prep.common_voice", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert "--speaker-chars" in out and "--language" in out
    assert main([str(release), str(tmp_path / "d"), "--splits", "dev,test"]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["dev", "test"]
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "d2")]) == 1


# ---- the recipe: egs/common_voice/run.sh --stage 1 --stop_stage 1 -----------------------------


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A copy of egs/common_voice whose ../../recipes resolves to this repository's recipes/."""
    return copy_egs("common_voice", tmp_path / "egs_root")


def test_recipe_prepare_stage(recipe, release, tmp_path):
    corpus = release.parent.parent  # the folder holding the release
    opts = f"--corpus_dir {corpus}"
    proc = run_recipe(recipe, "--stage", "1", "--stop_stage", "1", "--local_data_opts", opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = DataDir(recipe / "data" / "train")
    assert train.text()[f"{A[:17]}-common_voice_pt_100"] == "Olá, mundo!"
    for split, n in (("train", 4), ("dev", 2), ("test", 2)):
        validate(recipe / "data" / split)
        assert len(DataDir(recipe / "data" / split)) == n
    assert "skipped 1 row(s) (missing audio)" in proc.stderr
    config = (recipe / "exp" / "config.sh").read_text()
    assert "language=pt" in config and "normalizer=pt_br" in config
    assert "teacher=openai/whisper-large-v3" in config and "student_decoder_layers=2" in config

    # another language: the locale picks the folder, the teacher language and the normaliser
    shutil.copytree(release, corpus / RELEASE / "fr-FR")
    proc = run_recipe(
        recipe, "--stage", "1", "--stop_stage", "1", "--force", "true", "--language=fr-FR",
        "--train_set", "dev", "--test_sets", "dev",
        "--local_data_opts", f"--corpus_dir {corpus} --splits dev",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        DataDir(recipe / "data" / "dev")
        .wav_scp()[f"{D[:16]}-common_voice_pt_200"]
        .startswith(str(corpus / RELEASE / "fr-FR" / "clips"))
    )
    config = (recipe / "exp" / "config.sh").read_text()
    assert "language=fr\n" in config and "normalizer=basic" in config


def test_recipe_help_lists_the_pipeline_options(recipe):
    proc = run_recipe(recipe, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--teacher" in proc.stdout + proc.stderr
