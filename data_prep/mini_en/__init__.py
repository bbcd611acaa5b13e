"""mini_en: a small English corpus synthesised with espeak-ng, with known text.

Usage::

    python -m data_prep.mini_en OUT_DIR [--num-train 300] [--num-dev 50] [--num-test 100]
                                        [--seed 0] [--nj 2] [--text FILE_OR_DIR ...]
                                        [--train-text bundled|FILE_OR_DIR ...]

or, from Python, :func:`prepare_mini_en` with the same options. The corpus is made of
recordings: one voice says several sentences in a row with pauses of 0.2-1.5 s between them. It
writes Kaldi data dirs ``OUT_DIR/{train,dev,test}`` (``wav.scp`` mapping recording ids to
absolute paths of 16 kHz mono 16-bit WAVs under ``OUT_DIR/wav/<split>/``, ``segments`` cutting
them into the utterances at the times known from synthesis, ``reco2dur``, ``text``, ``utt2spk``,
``spk2utt``, ``utt2dur``; ``test`` also has ``utt2voiceset``: ``seen`` or ``unseen``),
``OUT_DIR/test_long`` (the test recordings whole, one utterance each, for long-form scoring) and
``OUT_DIR/local/`` (the speakers and their espeak-ng settings, the synthesis parameters of every
utterance, the recordings and their pauses, the text source, the configuration). The recipe is
``egs/mini_en``.

Modules:

* :mod:`~data_prep.mini_en.text`: the sentences. Hand-written natural English sentences shipped
  as package data in ``sentences/`` (see its README for the source and licence), or any sentence
  files given with ``--text``. Sentences are de-duplicated on a normalised key (case, punctuation
  and spacing ignored); the dev and test sentences are drawn first and never occur in train,
  whatever ``--num-train`` is.
  Train-only text: ``--train-text`` adds sentences that only train may use (``bundled``, the
  package's ``sentences_train/``, has 1,199 more), so that a larger train set holds more distinct
  sentences instead of repeating them. They come after train's own sentences, so dev, test and
  the first clips of train are those of the corpus without them; a train-only sentence that
  repeats a main one is dropped with a count.
* :mod:`~data_prep.mini_en.voices`: the speakers. An espeak-ng English accent (``en-us``,
  ``en-gb-x-rp`` …) × a voice variant (``m3``, ``f2``, ``klatt`` …) with its own base speed (words
  per minute), pitch, amplitude and word gap. Speaker ids are ``<accent code>_<variant>``
  (``rp_m3``). The default accents and variants are those on which Whisper tiny.en, the teacher,
  is usable (capped WER about 0.26 on the default test set); espeak-ng's Scottish, West Midlands
  and Caribbean English and a few variants are left out (teacher WER 0.5-0.7), see ``--accents``.
  Unseen voices: one accent and a few variants are held out of training (chosen by the seed).
* :mod:`~data_prep.mini_en.plan`: every recording and utterance, before any audio. Each
  utterance jitters speed and pitch a little around its speaker's base; utterance ids are
  ``<spk>-<split><n>`` (``rp_m3-train00012``), recording ids ``<spk>-<split>_r<k>``. Train and
  dev recordings hold 2-8 sentences, test ones 12-25 (about 45-120 s; fewer when a voice set of
  test has fewer than 12 sentences: then it is one recording). Half of the test utterances come
  from speakers built with a held-out accent and/or variant, the other half (and all of dev)
  from the training speakers.
* :mod:`~data_prep.mini_en.synthesis`: espeak-ng, its WAV stream, the 16 kHz WAVs (one a
  recording: its sentences with digital silence between them).
* :mod:`~data_prep.mini_en.prepare`: :func:`prepare_mini_en`, the data dirs and ``local/``.
* :mod:`~data_prep.mini_en.cli`: the command line.

Determinism: every random choice comes from ``random.Random`` streams seeded with
``"<seed>:<purpose>"`` (:mod:`~data_prep.mini_en.seeds`); espeak-ng is deterministic for a given
command line and soxr's resampling is too, so one seed gives byte-identical WAVs. Dev and test do
not depend on ``--num-train`` (once it reaches ``--num-speakers``), and the train utterances for
N are a prefix of those for M > N; so are the train recordings, but for each speaker's last one,
which may hold fewer sentences (and so be a shorter WAV).
"""

from data_prep.mini_en.cli import build_parser, main
from data_prep.mini_en.plan import (
    PAUSE_RANGE,
    RECORDING_SENTENCES,
    SPLITS,
    CorpusPlan,
    Recording,
    Utterance,
    plan_corpus,
)
from data_prep.mini_en.prepare import LONG_TEST, prepare_mini_en
from data_prep.mini_en.synthesis import (
    SAMPLE_RATE,
    espeak_version,
    find_espeak,
    parse_espeak_wav,
    synthesize,
    synthesize_all,
    synthesize_recording,
    write_wav16,
)
from data_prep.mini_en.text import (
    BUNDLED,
    TEXT_DIR,
    TRAIN_TEXT_DIR,
    load_sentences,
    resolve_train_text,
    sentence_key,
    split_sentences,
    text_fingerprint,
)
from data_prep.mini_en.voices import (
    ACCENT_CODES,
    ACCENTS,
    AMPLITUDE_RANGE,
    HARD_ACCENTS,
    PITCH_JITTER,
    PITCH_RANGE,
    SPEED_JITTER,
    SPEED_RANGE,
    VARIANTS,
    WORD_GAPS,
    Speaker,
    choose_speakers,
    installed_voices,
    speaker_id,
)

__all__ = [
    "ACCENTS",
    "ACCENT_CODES",
    "AMPLITUDE_RANGE",
    "BUNDLED",
    "HARD_ACCENTS",
    "LONG_TEST",
    "PAUSE_RANGE",
    "PITCH_JITTER",
    "PITCH_RANGE",
    "RECORDING_SENTENCES",
    "SAMPLE_RATE",
    "SPEED_JITTER",
    "SPEED_RANGE",
    "SPLITS",
    "TEXT_DIR",
    "TRAIN_TEXT_DIR",
    "VARIANTS",
    "WORD_GAPS",
    "CorpusPlan",
    "Recording",
    "Speaker",
    "Utterance",
    "build_parser",
    "choose_speakers",
    "espeak_version",
    "find_espeak",
    "installed_voices",
    "load_sentences",
    "main",
    "parse_espeak_wav",
    "plan_corpus",
    "prepare_mini_en",
    "resolve_train_text",
    "sentence_key",
    "speaker_id",
    "split_sentences",
    "synthesize",
    "synthesize_all",
    "synthesize_recording",
    "text_fingerprint",
    "write_wav16",
]
