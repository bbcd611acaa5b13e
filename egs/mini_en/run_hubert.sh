#!/usr/bin/env bash
# mini_en with DistilHuBERT: the imported Whisper tiny.en encoder as the teacher (no HuBERT weights
# are needed), a 2-layer HubertModel student, CTC fine-tuning on the characters of the transcripts.
# Runs on 2 CPU cores in minutes, offline. Shares data/, dump/ and exp/teacher with run.sh.
# Any option of ../../recipes/distil_hubert.sh can be given here, e.g. --stage ctc_finetune.
set -euo pipefail
cd "$(dirname "$0")"

../../recipes/distil_hubert.sh \
  --train_set train \
  --valid_set dev \
  --test_sets "dev test" \
  --teacher tiny.en \
  --teacher_dir exp/teacher \
  --expdir exp/hubert \
  --train_config conf/distil_hubert.yaml \
  --ctc_config conf/ctc.yaml \
  --normalizer english \
  --decode_batch_size 8 \
  "$@"
