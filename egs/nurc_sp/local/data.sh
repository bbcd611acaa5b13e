#!/usr/bin/env bash
# Stage 1 of nurc_sp: the NURC-SP Audio Corpus -> data/{train,dev,test} (data_prep/nurc_sp.py).
# With --mini true, first synthesise mini_pt (data_prep/mini_pt: espeak-ng Brazilian Portuguese in
# the corpus' own layout) into --mini_dir, then read it with the same data_prep/nurc_sp.py.
set -euo pipefail

# begin options
corpus_dir=downloads/nurc_sp  # the Hub dataset's files (metadata CSVs + <split>.tar.gz)
hub_config=filtered           # original (every segment) or filtered (empty transcriptions removed)
download=false                # first fetch the CSVs and archives from the Hub into corpus_dir
extract_dir=                  # where the archives are extracted (empty: corpus_dir/extracted)
speaker=diarized              # diarized (recording + WhisperX speaker_id) or recording
splits=train,dev,test         # splits to prepare (comma-separated)
mini=false                    # true: synthesise mini_pt into mini_dir and prepare it instead
mini_dir=downloads/mini_pt    # where mini_pt is written (replaces corpus_dir when mini=true)
mini_num_train=300            # mini_pt train segments with text
mini_num_dev=50               # mini_pt dev segments
mini_num_test=100             # mini_pt test segments
mini_seed=0                   # same seed, same mini_pt
nj=2                          # parallel espeak-ng processes (mini_pt)
# end options
help_message="Usage: $0 [options]   (run from egs/nurc_sp)"
. utils/parse_options.sh

if [ "${mini}" = true ]; then
  [ "${download}" = true ] && { echo "$0: --mini true and --download true exclude each other" >&2; exit 1; }
  python -m data_prep.mini_pt "${mini_dir}" --num-train "${mini_num_train}" \
    --num-dev "${mini_num_dev}" --num-test "${mini_num_test}" --seed "${mini_seed}" --nj "${nj}"
  corpus_dir=${mini_dir}
fi
IFS=, read -ra split_list <<< "${splits}"
args=(--config "${hub_config}" --speaker "${speaker}" --splits "${split_list[@]}")
[ -n "${extract_dir}" ] && args+=(--extract-dir "${extract_dir}")
[ "${download}" = true ] && args+=(--download)
python -m data_prep.nurc_sp "${corpus_dir}" data "${args[@]}"
