"""Kaldi data directories (see :mod:`speechdistill.datadir.core`)."""

from speechdistill.datadir.core import (
    DataDir,
    DataDirError,
    Segment,
    c_sorted,
    check_id,
    is_utt_file,
    parse_line,
    read_floats,
    read_kv,
    read_segments,
    spk2utt_to_utt2spk,
    unsafe_id_reason,
    utt2spk_to_spk2utt,
    write_kv,
    write_segments,
)
from speechdistill.datadir.fix import FixReport, fix
from speechdistill.datadir.ops import combine, copy, merge_split, split, subset
from speechdistill.datadir.validate import DataDirValidationError, check_stage_input, validate

__all__ = [
    "DataDir",
    "DataDirError",
    "DataDirValidationError",
    "FixReport",
    "Segment",
    "c_sorted",
    "check_id",
    "check_stage_input",
    "combine",
    "copy",
    "fix",
    "is_utt_file",
    "merge_split",
    "parse_line",
    "read_floats",
    "read_kv",
    "read_segments",
    "spk2utt_to_utt2spk",
    "split",
    "subset",
    "unsafe_id_reason",
    "utt2spk_to_spk2utt",
    "validate",
    "write_kv",
    "write_segments",
]
