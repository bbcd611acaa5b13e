"""Whisper facts and runtimes that every stage shares.

- :mod:`~speechdistill.whisper.tokens`: the 30 s window, vocabulary layouts (English-only or
  multilingual), language and task tokens, and the check that refuses a language an English-only
  model cannot give.
- :mod:`~speechdistill.whisper.heuristics`: hallucination heuristics of a transcript
  (compression ratio, repeated n-grams, characters per second);
- :mod:`~speechdistill.whisper.ct2`: CTranslate2 ⇄ transformers conversion and the CTranslate2
  runtime.
"""
