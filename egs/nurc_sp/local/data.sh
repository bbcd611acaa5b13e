#!/usr/bin/env bash
# Stage 1 of nurc_sp: the NURC-SP Audio Corpus -> data/{train,dev,test} (data_prep/nurc_sp.py).
set -euo pipefail

# begin options
corpus_dir=downloads/nurc_sp  # the Hub dataset's files (metadata CSVs + <split>.tar.gz)
hub_config=filtered           # original (every segment) or filtered (empty transcriptions removed)
download=false                # first fetch the CSVs and archives from the Hub into corpus_dir
extract_dir=                  # where the archives are extracted (empty: corpus_dir/extracted)
speaker=diarized              # diarized (recording + WhisperX speaker_id) or recording
splits=train,dev,test         # splits to prepare (comma-separated)
# end options
help_message="Usage: $0 [options]   (run from egs/nurc_sp)"
. utils/parse_options.sh

IFS=, read -ra split_list <<< "${splits}"
args=(--config "${hub_config}" --speaker "${speaker}" --splits "${split_list[@]}")
[ -n "${extract_dir}" ] && args+=(--extract-dir "${extract_dir}")
[ "${download}" = true ] && args+=(--download)
python -m data_prep.nurc_sp "${corpus_dir}" data "${args[@]}"
