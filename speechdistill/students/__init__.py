"""Students: models initialised from a teacher before distillation (stage 6).

- :mod:`speechdistill.students.whisper`: Distil-Whisper students (fewer encoder and/or decoder
  layers, copied from maximally spaced teacher layers).
"""

from __future__ import annotations

from speechdistill.students.whisper import (
    STUDENT_JSON,
    StudentInfo,
    init_student,
    layer_map,
    read_student_info,
    remap_alignment_heads,
    spaced_layers,
)

__all__ = [
    "STUDENT_JSON",
    "StudentInfo",
    "init_student",
    "layer_map",
    "read_student_info",
    "remap_alignment_heads",
    "spaced_layers",
]
