"""Kaldi data directories (see :mod:`speechdistill.datadir.core`)."""

from speechdistill.datadir.core import (
    DataDir,
    DataDirError,
    Segment,
    c_sorted,
    is_utt_file,
    parse_line,
    read_floats,
    read_kv,
    read_segments,
    spk2utt_to_utt2spk,
    utt2spk_to_spk2utt,
    write_kv,
    write_segments,
)

__all__ = [
    "DataDir",
    "DataDirError",
    "Segment",
    "c_sorted",
    "is_utt_file",
    "parse_line",
    "read_floats",
    "read_kv",
    "read_segments",
    "spk2utt_to_utt2spk",
    "utt2spk_to_spk2utt",
    "write_kv",
    "write_segments",
]
