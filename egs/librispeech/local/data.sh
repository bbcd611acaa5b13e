#!/usr/bin/env bash
# Stage 1 of librispeech: LibriSpeech/<part>/ -> data/<part with _> (data_prep/librispeech.py).
set -euo pipefail

# begin options
corpus_dir=downloads/librispeech  # the LibriSpeech folder, or the folder holding it
parts=train-clean-100,dev-clean,dev-other,test-clean,test-other  # parts to prepare (comma-separated)
speaker=reader                    # reader (the reader id) or chapter (<reader>-<chapter>, as Kaldi)
combine=                          # NAME=PART,PART: also write data/NAME, e.g. train_960=train-clean-100,train-clean-360,train-other-500
# end options
help_message="Usage: $0 [options]   (run from egs/librispeech)"
. utils/parse_options.sh

IFS=, read -ra part_list <<< "${parts}"
args=(--parts "${part_list[@]}" --speaker "${speaker}")
[ -n "${combine}" ] && args+=(--combine "${combine}")
python -m data_prep.librispeech "${corpus_dir}" data "${args[@]}"
