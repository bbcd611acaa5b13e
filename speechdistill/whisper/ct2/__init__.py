"""Whisper in CTranslate2: conversion both ways and the runtime pseudo-labelling uses.

- :mod:`~speechdistill.whisper.ct2.binary`: ``model.bin`` read without ctranslate2, and the errors;
- :mod:`~speechdistill.whisper.ct2.processor`: vocabulary, language tokens, tokenizer and feature
  extractor of a CTranslate2 directory;
- :mod:`~speechdistill.whisper.ct2.importer`: :func:`import_ct2` (CTranslate2 → transformers);
- :mod:`~speechdistill.whisper.ct2.export`: :func:`export_ct2` (transformers → CTranslate2, with
  ctranslate2's converter);
- :mod:`~speechdistill.whisper.ct2.runtime`: the ``ctranslate2`` package, compute types, devices
  and the converted-once copy of a transformers teacher.
"""
