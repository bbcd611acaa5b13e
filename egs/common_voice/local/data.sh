#!/usr/bin/env bash
# Stage 1 of common_voice: a Common Voice language folder -> data/{train,dev,test}
# (data_prep/common_voice.py).
set -euo pipefail

# begin options
corpus_dir=downloads/common_voice  # a release folder (holding <lang>/), its parent, or <lang>/ itself
lang=pt                            # Common Voice locale: the language folder (run.sh sets it)
splits=train,dev,test              # TSV files to prepare (comma-separated)
speaker_chars=16                   # characters of client_id kept as speaker id (more if needed)
# end options
help_message="Usage: $0 [options]   (run from egs/common_voice)"
. utils/parse_options.sh

IFS=, read -ra split_list <<< "${splits}"
python -m data_prep.common_voice "${corpus_dir}" data --language "${lang}" \
  --splits "${split_list[@]}" --speaker-chars "${speaker_chars}"
