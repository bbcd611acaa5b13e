"""mini_pt: a small Brazilian Portuguese corpus synthesised with espeak-ng, in NURC-SP's layout.

Usage::

    python -m data_prep.mini_pt CORPUS_DIR [--num-train 300] [--num-dev 50] [--num-test 100]
                                           [--seed 0] [--nj 2] [--text FILE_OR_DIR ...]
                                           [--variants m3,f3,...]

then ``python -m data_prep.nurc_sp CORPUS_DIR OUT`` (``egs/nurc_sp/local/data.sh --mini true``
does both). ``CORPUS_DIR`` is laid out exactly as the NURC-SP Hub dataset
(``nilc-nlp/CORAA-NURC-SP-Audio-Corpus``, see :mod:`data_prep.nurc_sp`): ``{split}.tar.gz`` of
one WAV per segment, ``original/`` and ``filtered/`` metadata CSVs with every column.
Recordings (``audio_name``) are NURC-SP's kinds (EF: one speaker; DID, D2: two, ``speaker_id``
0/1, each an espeak-ng voice), cut into consecutive segments with real ``start_time`` and
``end_time`` and pauses of 0.2-1.5 s between them; ``text`` carries NURC transcription marks that
the ``pt_br`` normaliser removes, so the normalised reference is the normalised sentence spoken.

Modules:

* :mod:`~data_prep.mini_pt.text`: the sentences (``sentences/``: 1,200+ written for this project
  in the style of NURC-SP's interviews and dialogues; see its README), split pools.
* :mod:`~data_prep.mini_pt.conventions`: the NURC marks put into the reference text.
* :mod:`~data_prep.mini_pt.voices`: espeak-ng ``pt-br`` (and some ``pt``) voices and variants;
  variants held out of training for dev and test.
* :mod:`~data_prep.mini_pt.plan`: recordings, speakers, segments and pauses, before any audio.
* :mod:`~data_prep.mini_pt.prepare`: synthesis, the archives, the CSVs and ``local/``.
* :mod:`~data_prep.mini_pt.cli`: the command line.

Determinism: every random choice comes from a stream seeded with ``"<seed>:<purpose>"``
(:mod:`data_prep.mini_en.seeds`), espeak-ng is deterministic for a command line, and the archives
have fixed member order, times and owners (gzip time 0): one seed gives byte-identical archives
and CSVs. Dev and test do not depend on ``--num-train``.
"""

from data_prep.mini_pt.cli import build_parser, main
from data_prep.mini_pt.conventions import annotate
from data_prep.mini_pt.plan import KINDS, SPLITS, Recording, Segment, plan_corpus
from data_prep.mini_pt.prepare import COLUMNS, OWNER, prepare_mini_pt
from data_prep.mini_pt.text import TEXT_DIR, load_sentences, sentence_key
from data_prep.mini_pt.voices import VARIANTS, Voice

__all__ = [
    "COLUMNS",
    "KINDS",
    "OWNER",
    "SPLITS",
    "TEXT_DIR",
    "VARIANTS",
    "Recording",
    "Segment",
    "Voice",
    "annotate",
    "build_parser",
    "load_sentences",
    "main",
    "plan_corpus",
    "prepare_mini_pt",
    "sentence_key",
]
