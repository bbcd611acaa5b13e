#!/usr/bin/env bash
# Stage 1 of mini_en: synthesise the corpus into data/{train,dev,test}.
set -euo pipefail

# begin options
num_train=300     # training clips
num_dev=50        # dev clips
num_test=100      # test clips (seen and unseen voices)
seed=0            # same seed, same corpus
nj=2              # parallel espeak-ng processes
train_text=       # train-only sentences: a file or dir, or "bundled" (data_prep/mini_en/sentences_train)
# end options
help_message="Usage: $0 [options]"
. utils/parse_options.sh

extra=()
if [ -n "${train_text}" ]; then
  extra=(--train-text "${train_text}")  # python -m data_prep.mini_en resolves "bundled"
fi
python -m data_prep.mini_en data \
  --num-train "${num_train}" --num-dev "${num_dev}" --num-test "${num_test}" \
  --seed "${seed}" --nj "${nj}" "${extra[@]}"
