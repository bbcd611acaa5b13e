#!/usr/bin/env bash
# nurc_sp: Distil-Whisper on the NURC-SP Audio Corpus (spontaneous São Paulo Portuguese, ~239 h;
# Hub dataset nilc-nlp/CORAA-NURC-SP-Audio-Corpus, CC BY-NC-ND 4.0): whisper-large-v3 (32+32
# layers) -> a 32-2 student, as in Lima et al. (BRACIS 2024). See README.md.
#
#   ./run.sh --local_data_opts "--download true"          # fetch the corpus into downloads/nurc_sp
#   ./run.sh --local_data_opts "--corpus_dir /data/nurc"  # or use a downloaded copy
#   ./run.sh --filter supervised                          # WER filter (20 %) instead of label-free
# Any option of ../../recipes/distil_whisper.sh can be given; it wins over the settings below.
set -euo pipefail
cd "$(dirname "$0")"

../../recipes/distil_whisper.sh \
  --train_set train \
  --valid_set dev \
  --test_sets "dev test" \
  --teacher openai/whisper-large-v3 \
  --language pt \
  --normalizer pt_br \
  --ngpu 1 \
  --decode_dtype bfloat16 \
  --pl_batch_size 32 \
  --decode_batch_size 32 \
  --pl_timestamps true \
  --filter_max_wer 0.2 \
  --student_decoder_layers 2 \
  --train_config conf/train.yaml \
  "$@"
