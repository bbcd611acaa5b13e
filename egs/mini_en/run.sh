#!/usr/bin/env bash
# mini_en: English speech synthesised with espeak-ng (data_prep/mini_synth.py) and the embedded
# Whisper tiny.en teacher. Runs on 2 CPU cores in minutes, offline; `make demo` runs it.
# Any option of ../../recipes/distil_whisper.sh can be given here, e.g. --stage 8 --nj 2.
set -euo pipefail
cd "$(dirname "$0")"

../../recipes/distil_whisper.sh \
  --train_set train \
  --valid_set dev \
  --test_sets "dev test" \
  --teacher tiny.en \
  --normalizer english \
  --decode_batch_size 8 \
  --pl_batch_size 8 \
  --pl_cache true \
  "$@"
