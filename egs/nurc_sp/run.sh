#!/usr/bin/env bash
# nurc_sp: Distil-Whisper on the NURC-SP Audio Corpus (spontaneous São Paulo Portuguese, ~239 h;
# Hub dataset nilc-nlp/CORAA-NURC-SP-Audio-Corpus, CC BY-NC-ND 4.0): whisper-large-v3 (32+32
# layers) -> a 32-2 student, as in Lima et al. (BRACIS 2024). See README.md.
#
#   ./run.sh --local_data_opts "--download true"          # fetch the corpus into downloads/nurc_sp
#   ./run.sh --local_data_opts "--corpus_dir /data/nurc"  # or use a downloaded copy
#   ./run.sh --filter supervised                          # WER filter (20 %) instead of label-free
#   ./run.sh --mini true                                  # mini_pt (synthetic, offline, CPU, minutes)
# Any option of ../../recipes/distil_whisper.sh can be given; it wins over the settings below.
#
# --mini true runs every stage on mini_pt, a synthetic Brazilian Portuguese corpus in NURC-SP's
# own layout (data_prep/mini_pt), read by the same data_prep/nurc_sp.py: the embedded
# multilingual Whisper base as teacher (6+6 layers -> 6-2), on CPU, conf/mini.yaml. The values
# of --local_data_opts are added to --mini's. Figures: RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")"

mini=false
local_data_opts=
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --mini | --local_data_opts | --local-data-opts)
      [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 1; }
      name=${1#--}; name=${name//-/_}
      printf -v "${name}" '%s' "$2"
      shift 2 ;;
    --mini=* | --local_data_opts=* | --local-data-opts=*)
      name=${1%%=*}; name=${name#--}; name=${name//-/_}
      printf -v "${name}" '%s' "${1#*=}"
      shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case ${mini} in
  true)
    # segments packed into <= 30 s windows, as NURC-SP's recipe labels them; the teacher loops
    # on espeak Portuguese, so labels are capped; the label-free filter weights the labels by
    # teacher confidence instead of dropping any (the best of the conditions over three seeds,
    # better than all labels: RESULTS.md, "Does filtering pay off on mini_pt?")
    settings=(--teacher base --ngpu 0 --decode_dtype "" --pl_batch_size 8 --decode_batch_size 8
      --pack true --pl_cache true --pl_max_new_tokens 192 --decode_max_new_tokens 128
      --filter label_free --filter_mode weight
      --speed_max_utts 16
      --train_config conf/mini.yaml --local_data_opts "--mini true ${local_data_opts}") ;;
  false) settings=(--local_data_opts "${local_data_opts}") ;;
  *) echo "$0: --mini must be true or false, not '${mini}'" >&2; exit 1 ;;
esac

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
  "${settings[@]}" \
  ${args[@]+"${args[@]}"}
