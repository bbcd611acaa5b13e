#!/usr/bin/env bash
# librispeech: Distil-Whisper on LibriSpeech (read English audiobooks, openslr.org/12):
# whisper-large-v3 (32+32 layers) -> a 32-2 student, trained on train-clean-100 by default,
# selected on dev-clean, scored on dev/test clean/other. See README.md.
#
#   ./run.sh --local_data_opts "--corpus_dir /data/LibriSpeech"
#   ./run.sh --local_data_opts "--corpus_dir /data --parts train-clean-100,train-clean-360,train-other-500,dev-clean,dev-other,test-clean,test-other --combine train_960=train-clean-100,train-clean-360,train-other-500" --train_set train_960
# Any option of ../../recipes/distil_whisper.sh can be given; it wins over the settings below.
set -euo pipefail
cd "$(dirname "$0")"

../../recipes/distil_whisper.sh \
  --train_set train_clean_100 \
  --valid_set dev_clean \
  --test_sets "dev_clean dev_other test_clean test_other" \
  --teacher openai/whisper-large-v3 \
  --language en \
  --normalizer english \
  --ngpu 1 \
  --decode_dtype bfloat16 \
  --pl_batch_size 32 \
  --decode_batch_size 32 \
  --pl_timestamps true \
  --student_decoder_layers 2 \
  --train_config conf/train.yaml \
  "$@"
