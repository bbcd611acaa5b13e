"""Stage ``teacher``: the models students learn from.

- :mod:`~speechdistill.teachers.whisper`: load a Whisper teacher, prepare ``exp/teacher/``;
- :mod:`~speechdistill.teachers.hubert`: HuBERT / wav2vec2 / WavLM teachers (or a Whisper
  encoder) for DistilHuBERT students;
- :mod:`~speechdistill.teachers.embedded`: teachers shipped in packages (tiny.en, base);
- :mod:`~speechdistill.teachers.source`: where a teacher comes from (embedded, directory, Hub);
- :mod:`~speechdistill.teachers.identity`: the one definition of "the same teacher".
"""
