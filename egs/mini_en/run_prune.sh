#!/usr/bin/env bash
# mini_en with DPHuBERT-style structured pruning: the imported Whisper tiny.en encoder is the
# teacher and the student's starting point. Its attention heads and FFN neurons are pruned while it
# is distilled (target: half of its parameters), then it is distilled again without gates, then
# fine-tuned with CTC on the characters of the transcripts (as run_hubert.sh's DistilHuBERT
# student). Runs on 2 CPU cores in minutes, offline. Shares data/, dump/ and exp/teacher with
# run.sh and run_hubert.sh. Other sparsities:
#   ./run_prune.sh --expdir exp/prune75 --prune_opts "--target-sparsity 0.75"
# Any option of ../../recipes/distil_hubert.sh can be given here, e.g. --stage ctc_finetune.
set -euo pipefail
cd "$(dirname "$0")"

../../recipes/distil_hubert.sh \
  --method prune \
  --train_set train \
  --valid_set dev \
  --test_sets "dev test" \
  --teacher tiny.en \
  --teacher_dir exp/teacher \
  --expdir exp/prune50 \
  --prune_config conf/prune.yaml \
  --final_config conf/final_distill.yaml \
  --ctc_config conf/ctc.yaml \
  --normalizer english \
  --decode_batch_size 8 \
  "$@"
