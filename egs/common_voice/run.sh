#!/usr/bin/env bash
# common_voice: Distil-Whisper on Mozilla Common Voice, any language: whisper-large-v3 (32+32
# layers) -> a 32-2 student. See README.md.
#
#   ./run.sh --local_data_opts "--corpus_dir /data/cv-corpus-17.0-2024-03-15"    # Portuguese
#   ./run.sh --language fr --local_data_opts "--corpus_dir /data/cv-corpus-17.0-2024-03-15"
#
# --language is the Common Voice locale (the language folder: pt, fr, es, zh-CN, sv-SE, ...);
# the teacher is prompted with its first part (zh-CN -> zh). It also picks the normaliser
# (pt -> pt_br, en -> english, others -> basic) unless --normalizer is given. Any other option
# of ../../recipes/distil_whisper.sh can be given and wins over the settings below; the values
# of --local_data_opts are added to the ones set here.
set -euo pipefail
cd "$(dirname "$0")"

language=pt
normalizer=
local_data_opts=
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --language | --normalizer | --local_data_opts | --local-data-opts)
      [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 1; }
      name=${1#--}; name=${name//-/_}
      printf -v "${name}" '%s' "$2"
      shift 2 ;;
    --language=* | --normalizer=* | --local_data_opts=* | --local-data-opts=*)
      name=${1%%=*}; name=${name#--}; name=${name//-/_}
      printf -v "${name}" '%s' "${1#*=}"
      shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -z "${normalizer}" ]; then
  case ${language} in
    pt | pt-*) normalizer=pt_br ;;
    en | en-*) normalizer=english ;;
    *) normalizer=basic ;;
  esac
fi

../../recipes/distil_whisper.sh \
  --train_set train \
  --valid_set dev \
  --test_sets "dev test" \
  --teacher openai/whisper-large-v3 \
  --language "${language%%-*}" \
  --normalizer "${normalizer}" \
  --ngpu 1 \
  --decode_dtype bfloat16 \
  --pl_batch_size 32 \
  --decode_batch_size 32 \
  --pl_timestamps true \
  --filter_max_wer 0.2 \
  --student_decoder_layers 2 \
  --train_config conf/train.yaml \
  --local_data_opts "--lang ${language} ${local_data_opts}" \
  ${args[@]+"${args[@]}"}
