"""Language identification with the real multilingual Whisper base: a Portuguese set (espeak-ng
``pt-br``) with English clips mixed in, pseudo-labelled with ``--language pt``. The English
clips get the lowest ``utt2lang_prob`` (the filter's ``lang_id``), and ``--min-lang-prob``
drops exactly them; the ct2 backend gives the same probabilities.

Measured (base, ``pt-br+klatt`` at 130 wpm, ``en-us`` at 150 wpm): P(<|pt|>) 0.011–0.43 on the
Portuguese clips (the teacher hears espeak's Portuguese as Italian, Spanish or Thai on five of
eight), 0.0002–0.0005 on the English ones: a factor of 23 between the classes; the ct2 backend
agrees to 1e-5 relative.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechdistill.cli import main
from speechdistill.datadir import DataDir, read_floats, read_kv
from speechdistill.filter.diagnostics import roc_auc

PORTUGUESE = [
    "eu moro em São Paulo há mais de vinte anos com a minha família",
    "a gente sempre ia à feira no domingo de manhã comprar frutas",
    "o ônibus demorava muito para chegar e a fila era enorme",
    "minha avó fazia um bolo de fubá que todo mundo adorava",
    "no trabalho nós conversamos sobre o preço das coisas no mercado",
    "quando eu era criança brincava na rua até a noite",
    "o meu irmão estudou engenharia e hoje trabalha numa fábrica",
    "a escola ficava perto de casa então eu ia a pé todos os dias",
]
ENGLISH = [
    "the weather was cold and the children stayed inside all afternoon",
    "he bought a new bicycle and rode it to work every morning",
    "please put the books back on the shelf when you are done",
]
#: Between the classes measured (English ≤ 0.0005, Portuguese ≥ 0.011), a factor ≥ 4 from each.
THRESHOLD = 0.002
#: The language probability needs no full label: short decodes keep the test quick.
MAX_NEW_TOKENS = 8


def _speak(text: str, voice: str, wpm: int) -> np.ndarray:
    from data_prep.mini_en.synthesis import parse_espeak_wav

    cmd = ["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout"]
    out = subprocess.run(cmd, input=text.encode(), capture_output=True, check=True).stdout
    audio, rate = parse_espeak_wav(out)
    return soxr.resample(audio, rate, 16000)


@pytest.fixture(scope="module")
def mixed_set(tmp_path_factory):
    """A data dir of 8 Portuguese and 3 English clips (``pt-*``, ``en-*``), with their text."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it)")
    root = tmp_path_factory.mktemp("mixed") / "data"
    (root / "wav").mkdir(parents=True)
    d = DataDir(root)
    wav, text, spk = {}, {}, {}
    clips = [(f"pt-{i:02d}", t, "pt-br+klatt", 130) for i, t in enumerate(PORTUGUESE)]
    clips += [(f"en-{i:02d}", t, "en-us", 150) for i, t in enumerate(ENGLISH)]
    for utt, t, voice, wpm in clips:
        path = root / "wav" / f"{utt}.wav"
        sf.write(path, _speak(t, voice, wpm), 16000, subtype="PCM_16")
        wav[utt], text[utt], spk[utt] = str(path), t, utt[:2]
    d.write("wav.scp", wav)
    d.write("text", text)
    d.write_utt2spk(spk)
    return root


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, mixed_set, base_teacher):
    out = tmp_path_factory.mktemp("pl") / "pl"
    argv = ["pseudo-label", "--teacher", str(base_teacher), "--data", str(mixed_set),
            "--out", str(out), "--language", "pt", "--max-new-tokens", str(MAX_NEW_TOKENS)]  # fmt: skip
    assert main(argv) == 0
    return out


def test_lang_id_flags_the_english_clips(labelled, tmp_path):
    probs = read_floats(labelled / "utt2lang_prob")
    english = {u for u in probs if u.startswith("en-")}
    assert len(probs) == 11 and len(english) == 3
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert max(probs[u] for u in english) * 4 < THRESHOLD
    assert min(p for u, p in probs.items() if u not in english) > THRESHOLD * 4
    assert roc_auc(probs, {u: u in english for u in probs}) == 1.0
    langs = read_kv(labelled / "utt2lang")
    assert all(langs[u] == "en" for u in english)  # the teacher knows English when it hears it

    out = tmp_path / "kept"
    argv = ["filter", "--data", str(labelled), "--out", str(out), "--no-plots",
            "--min-lang-prob", str(THRESHOLD)]  # fmt: skip
    assert main(argv) == 0
    assert set(DataDir(out).utt_ids()) == set(probs) - english
    import json

    report = json.loads((out / "filter" / "report.json").read_text())
    assert "lang_id" in report["diagnostics"]["auc"]  # a default score: the teacher is multilingual


def test_ct2_backend_gives_the_same_language_probabilities(
    labelled, mixed_set, base_teacher, tmp_path
):
    pytest.importorskip("ctranslate2")
    out = tmp_path / "pl_ct2"
    argv = ["pseudo-label", "--teacher", str(base_teacher), "--data", str(mixed_set),
            "--out", str(out), "--language", "pt", "--max-new-tokens", str(MAX_NEW_TOKENS),
            "--backend", "ct2", "--dtype", "float32"]  # fmt: skip
    assert main(argv) == 0
    hf, ct2 = read_floats(labelled / "utt2lang_prob"), read_floats(out / "utt2lang_prob")
    assert ct2.keys() == hf.keys()
    for u in hf:
        assert ct2[u] == pytest.approx(hf[u], rel=1e-3), u
    assert read_kv(out / "utt2lang") == read_kv(labelled / "utt2lang")
