#!/usr/bin/env bash
# distil_whisper.sh: the shared Distil-Whisper pipeline (like ESPnet's TEMPLATE/asr1/asr.sh).
# Run from egs/<corpus>/ (every path is relative to it) through that recipe's run.sh.
# It sources egs/<corpus>/path.sh and cmd.sh (recipes/utils/corpus_env.sh): a site sets its job
# commands there.
#
#   1 prepare       local/data.sh -> data/<set>/ (Kaldi data dirs)
#   2 format        pipes/segments -> 16 kHz mono WAVs; duration limits on train/dev only -> dump/<set>/
#                   (--pack true: the train set first packed into <= 30 s windows -> data/<train>_packed/,
#                   and every later stage uses <train>_packed, labelled with timestamps)
#   3 teacher       import or fetch the teacher -> exp/teacher/
#   4 pseudo_label  teacher transcripts + statistics (+ caches) -> dump/<train>_pl/
#   5 filter        label-free or supervised selection -> dump/<train>_pl_<filter>/
#   6 init_student  student from the teacher (maximally spaced decoder layers) -> exp/student_init/
#   7 train         KD training, best checkpoint on dev -> exp/student/
#   8 decode        every model on every test set -> exp/<model>/decode_<set>/; long-form (whole
#                   recordings) on every long test set -> exp/<model>/decode_long_<set>/
#   9 score         WER/CER, sclite-style reports, speed -> exp/RESULTS.md (long-form rows:
#                   long_<set>, scored against the recording-level reference dump/<set>/reco_text)
#  10 publish       Hub folder + model card (+ CT2 export); upload unless dry run -> exp/student/hub/
# shellcheck source-path=SCRIPTDIR
# shellcheck disable=SC2034,SC2154 # options are read by sourced helpers; cmd.sh sets *_cmd
set -euo pipefail

# begin options
# General
stage=1                 # first stage to run (number or name)
stop_stage=10           # last stage to run (number or name)
skip_stages=            # stages not to run, e.g. "5 7" or "filter,publish"
force=false             # rerun stages that have a .done marker
nj=1                    # parallel jobs for decoding (split data dirs)
ngpu=0                  # GPUs per job (0: CPU)
# Data
local_data_opts=        # options for local/data.sh
train_set=train         # training set (pseudo-labelled, never needs text)
valid_set=dev           # dev set: model selection only
test_sets="dev test"    # sets to decode and score
long_test_sets=         # sets decoded long-form (whole recordings of any length) and scored by recording
long_decode_opts=       # more options of decode --long-form, e.g. "--condition-on-prev-tokens false"
min_duration=0.1        # format: drop shorter train/dev utterances (seconds)
max_duration=30.0       # format: drop longer train/dev utterances (seconds; Whisper's window)
format_opts=            # more options for speechdistill format (all sets)
pack=false              # stage 2: join consecutive train utterances (a recording's, else a speaker's) into <= 30 s windows; implies pl_timestamps=true
pack_opts=              # more options for speechdistill data pack, e.g. "--max-gap 2 --gap 0.3"
normalizer=english      # text normaliser for scoring: english, basic, pt_br, none
# Teacher
teacher=tiny.en         # tiny.en or base (embedded), a Hub id (openai/whisper-large-v3) or a directory
language=               # language for multilingual models (e.g. pt); empty: detect
task=transcribe         # transcribe or translate
# Pseudo-labelling
pl_batch_size=16        # utterances per batch
pl_num_beams=1          # 1: greedy (distil-whisper's choice)
pl_backend=hf           # hf (transformers) or ct2 (CTranslate2, fast on CPU)
pl_timestamps=false     # also label timestamps (text.teacher_ts)
pl_max_new_tokens=      # cap on generated tokens (empty: the model's)
pl_cache=false          # cache encoder states and RS-KD samples for fast training
pl_rskd_k=32            # RS-KD samples per position when pl_cache=true
pl_opts=                # more options for speechdistill pseudo-label
# Filtering
filter=label_free       # label_free (no transcripts needed), supervised (WER vs text), or none
filter_keep="empty>=1 compression_ratio>=-2.4 ngram_repeat>=-3 top:80%:confidence"  # label_free rules
filter_max_wer=0.1      # supervised: keep labels with WER below this (distil-whisper: 10 %)
filter_min_lang_prob=   # drop clips whose P(language) under a multilingual teacher is below this (e.g. 0.01; empty: keep)
filter_mode=drop        # drop: train on the selection; weight: keep every label the thresholds pass, weighted by the quota's score rank (utt2weight)
filter_opts=            # more options for speechdistill filter (e.g. --proxy DIR, --keep auto)
# Student and training
student_decoder_layers=2  # decoder layers of the student (a count, or a list like 0,31)
student_encoder_layers=   # encoder layers (empty: the teacher's whole encoder, frozen and shared)
student_encoder=          # a pruned encoder of the teacher (run_prune.sh's exp/prune50/student) instead of the teacher's
train_config=conf/train.yaml  # training options (YAML; see speechdistill train --help)
train_opts=             # more options for speechdistill train, e.g. "--max-steps 2000"
# Decoding
decode_batch_size=16    # utterances per batch
decode_num_beams=1      # 1: greedy
decode_temperature_fallback=false  # Whisper's fallback (resample a looping decode); train's dev too
decode_dtype=           # float32, float16, bfloat16 (empty: float32 on CPU)
decode_max_new_tokens=  # cap on tokens per utterance in short-form decoding (empty: the model's)
speed_max_utts=32       # score: utterances timed for latency/RTFx/speculative decoding (0: skip)
# Publishing
hub_repo_id=            # Hub repository of the student, USER/NAME (needed to upload)
publish_dry_run=true    # build and check exp/student/hub only; false: also upload (needs a token)
publish_opts=           # more options for speechdistill publish, e.g. "--ct2 --license mit"
# end options
help_message="Usage: $0 [options]   (run from egs/<corpus>/, usually through its run.sh)"

recipes=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "${recipes}/utils/parse_options.sh"
. "${recipes}/utils/stage.sh"
# ./path.sh and ./cmd.sh of egs/<corpus>/ (recipes/'s own when it has none): a site's overrides
# of the job commands, and gpu_cmd/dec_cmd for --ngpu.
. "${recipes}/utils/corpus_env.sh"
. "${recipes}/utils/data_stages.sh"

register_stages 1:prepare 2:format 3:teacher 4:pseudo_label 5:filter 6:init_student \
  7:train 8:decode 9:score 10:publish
check_counts 1 nj pl_batch_size pl_num_beams decode_batch_size decode_num_beams
check_counts 0 ngpu pl_rskd_k speed_max_utts

[ $# -eq 0 ] || die "unexpected arguments: $* (see --help)"
mkdir -p exp
save_config exp/config.sh

device=cpu
[ "${ngpu}" -gt 0 ] && device=cuda
gen_opts=(--batch-size "${decode_batch_size}" --num-beams "${decode_num_beams}" --device "${device}")
[ -n "${language}" ] && gen_opts+=(--language "${language}")
[ -n "${task}" ] && gen_opts+=(--task "${task}")
[ -n "${decode_dtype}" ] && gen_opts+=(--dtype "${decode_dtype}")
[ "${decode_temperature_fallback}" = true ] && gen_opts+=(--temperature-fallback)
short_opts=("${gen_opts[@]}")  # short-form decoding only
[ -n "${decode_max_new_tokens}" ] && short_opts+=(--max-new-tokens "${decode_max_new_tokens}")

# Every set this recipe touches, once each, in order.
list_sets() {
  # shellcheck disable=SC2086 # test_sets is a list
  printf '%s\n' "${train_set}" "${valid_set}" ${test_sets} ${long_test_sets} | awk 'NF && !seen[$0]++'
}
all_sets=$(list_sets)

# The data dir a long-form set is decoded from: the prepared one when it has segments (its
# recordings whole, as wav.scp gives them), else the formatted one (each utterance a recording).
long_data() {
  if [ -f "data/$1/segments" ]; then echo "data/$1"; else echo "dump/$1"; fi
}

if stage_start 1 prepare data; then
  prepare_data
  mark_done data prepare
fi

# --pack true: from stage 2 on, the train set is its windows (data/<train>_packed, made in stage 2
# and formatted instead of data/<train>), labelled with timestamps. Stage 2's marker is then in
# dump/<train>_packed, so switching --pack reruns stage 2 (reusing the formatted WAVs).
format_mark=dump
if [ "${pack}" = true ]; then
  unpacked_train=${train_set}
  train_set=${train_set}_packed
  all_sets=$(list_sets)
  pl_timestamps=true
  format_mark=dump/${train_set}
fi

if stage_start 2 format "${format_mark}"; then
  if [ "${pack}" = true ]; then
    # shellcheck disable=SC2086 # pack_opts is a list of options
    speechdistill data pack "data/${unpacked_train}" "data/${train_set}" ${pack_opts}
  fi
  format_data
  mark_done "${format_mark}" format
fi

if stage_start 3 teacher exp/teacher; then
  speechdistill teacher prepare "${teacher}" exp/teacher
  mark_done exp/teacher teacher
fi

# accelerate's launcher runs one process per GPU when a job has several.
sd_multi=(speechdistill)
[ "${ngpu}" -gt 1 ] && sd_multi=(accelerate launch --num_processes "${ngpu}" -m speechdistill)

pl_dir=dump/${train_set}_pl
if stage_start 4 pseudo_label "${pl_dir}"; then
  pl_args=(--teacher exp/teacher --data "dump/${train_set}" --out "${pl_dir}" --device "${device}"
    --batch-size "${pl_batch_size}" --num-beams "${pl_num_beams}" --backend "${pl_backend}")
  [ -n "${language}" ] && pl_args+=(--language "${language}")
  [ -n "${task}" ] && pl_args+=(--task "${task}")
  [ -n "${decode_dtype}" ] && pl_args+=(--dtype "${decode_dtype}")
  [ "${pl_timestamps}" = true ] && pl_args+=(--timestamps)
  [ -n "${pl_max_new_tokens}" ] && pl_args+=(--max-new-tokens "${pl_max_new_tokens}")
  [ "${pl_cache}" = true ] && pl_args+=(--cache-encoder --rskd-k "${pl_rskd_k}")
  # shellcheck disable=SC2206 # pl_opts is a list of options
  pl_args+=(${pl_opts})
  if [ "${nj}" -le 1 ]; then
    ${gpu_cmd} exp/pseudo_label/log/pseudo_label.log "${sd_multi[@]}" pseudo-label "${pl_args[@]}"
  else
    ${gpu_cmd} JOB=1:"${nj}" exp/pseudo_label/log/pseudo_label.JOB.log \
      "${sd_multi[@]}" pseudo-label "${pl_args[@]}" --num-jobs "${nj}" --job JOB
    speechdistill pseudo-label "${pl_args[@]}" --finalize
  fi
  speechdistill data validate --no-text "${pl_dir}"
  mark_done "${pl_dir}" pseudo_label
fi

train_data=${pl_dir}
[ "${filter}" != none ] && train_data=${pl_dir}_${filter}
if [ "${filter}" != none ] && stage_start 5 filter "${train_data}"; then
  case ${filter} in
    label_free) keep=(); for rule in ${filter_keep}; do keep+=(--keep "${rule}"); done ;;
    supervised) keep=(--keep "supervised_wer>-${filter_max_wer}") ;;
    *) die "unknown --filter ${filter} (label_free, supervised or none)" ;;
  esac
  # shellcheck disable=SC2086 # filter_opts is a list of options
  speechdistill filter --data "${pl_dir}" --out "${train_data}" --exp-dir "exp/filter_${filter}" \
    --normalizer "${normalizer}" --mode "${filter_mode}" "${keep[@]}" ${language:+--language "${language}"} \
    ${filter_min_lang_prob:+--min-lang-prob "${filter_min_lang_prob}"} ${filter_opts}
  speechdistill data validate --no-text "${train_data}"
  mark_done "${train_data}" filter
fi
if stage_start 6 init_student exp/student_init; then
  init_args=(--teacher exp/teacher --out exp/student_init --decoder-layers "${student_decoder_layers}")
  [ -n "${student_encoder_layers}" ] && init_args+=(--encoder-layers "${student_encoder_layers}")
  [ -n "${student_encoder}" ] && init_args+=(--encoder "${student_encoder}")
  speechdistill init-student "${init_args[@]}" --overwrite
  mark_done exp/student_init init_student
fi

if stage_start 7 train exp/student; then
  if [ ! -d "${train_data}" ]; then
    log "no ${train_data} (filter stage not run): training on all of ${pl_dir}"
    train_data=${pl_dir}
  fi
  [ -f "${train_data}/text.teacher" ] || [ -f "${train_data}/text" ] || die "no labels in ${train_data}"
  train_args=(--student exp/student_init --teacher exp/teacher --train "${train_data}"
    --dev "dump/${valid_set}" --out exp/student --eval-normalizer "${normalizer}")
  [ -f "${train_config}" ] && train_args+=(--config "${train_config}")
  [ -f "${pl_dir}/cache/index.json" ] && train_args+=(--cache-dir "${pl_dir}/cache")
  [ -n "${language}" ] && train_args+=(--language "${language}")
  # the checkpoint is chosen with the decoding that test gets
  [ "${decode_temperature_fallback}" = true ] && train_args+=(--eval-temperature-fallback true)
  # shellcheck disable=SC2206 # train_opts is a list of options
  train_args+=(${train_opts})
  ${gpu_cmd} exp/student/log/train.log "${sd_multi[@]}" train "${train_args[@]}"
  mark_done exp/student train
fi

# The models to evaluate: the teacher, and the student once one has been trained.
models="teacher"
[ -f exp/student/model.safetensors ] && models+=" student"

if stage_enabled 8 decode; then
  for m in ${models}; do
    for s in ${test_sets}; do
      dir=exp/${m}/decode_${s}
      stage_start 8 decode "${dir}" || continue
      if [ "${nj}" -le 1 ]; then
        ${dec_cmd} "${dir}/log/decode.log" \
          speechdistill decode --model "exp/${m}" --data "dump/${s}" --out "${dir}" "${short_opts[@]}"
      else
        speechdistill data split "dump/${s}" "${nj}" >/dev/null
        ${dec_cmd} JOB=1:"${nj}" "${dir}/log/decode.JOB.log" \
          speechdistill decode --model "exp/${m}" --data "dump/${s}/split${nj}/JOB" \
          --out "${dir}/split${nj}/JOB" "${short_opts[@]}"
        speechdistill decode --out "${dir}" \
          --merge $(seq -f "${dir}/split${nj}/%g" 1 "${nj}")
      fi
      mark_done "${dir}" decode
    done
    # long-form: one job per set (recordings are few and long; --nj does not split them)
    for s in ${long_test_sets}; do
      dir=exp/${m}/decode_long_${s}
      stage_start 8 decode "${dir}" || continue
      # shellcheck disable=SC2086 # long_decode_opts is a list of options
      ${dec_cmd} "${dir}/log/decode.log" speechdistill decode --long-form --model "exp/${m}" \
        --data "$(long_data "${s}")" --out "${dir}" "${gen_opts[@]}" ${long_decode_opts}
      mark_done "${dir}" decode
    done
  done
fi

if stage_start 9 score; then
  results=()
  for m in ${models}; do
    for s in ${test_sets}; do
      dir=exp/${m}/decode_${s}
      [ -f "${dir}/text" ] || die "no hypotheses in ${dir} (run stage 8)"
      if [ -f "dump/${s}/text" ]; then
        speechdistill score --ref "dump/${s}/text" --hyp "${dir}/text" --out "${dir}/score_wer" \
          --utt2spk "dump/${s}/utt2spk" --normalizer "${normalizer}" --model "${m}" --name "${s}"
        results+=("${dir}/score_wer/results.json")
      else
        log "dump/${s} has no reference text: ${m} on ${s} not scored"
      fi
    done
    for s in ${long_test_sets}; do
      dir=exp/${m}/decode_long_${s}
      [ -f "${dir}/text" ] || die "no hypotheses in ${dir} (run stage 8)"
      src=$(long_data "${s}")
      if [ -f "${src}/text" ]; then
        speechdistill data reco-text "${src}" "dump/${s}/reco_text"
        speechdistill score --ref "dump/${s}/reco_text" --hyp "${dir}/text" \
          --out "${dir}/score_wer" --normalizer "${normalizer}" --model "${m}" --name "long_${s}"
        results+=("${dir}/score_wer/results.json")
      else
        log "${src} has no reference text: ${m} on ${s} (long-form) not scored"
      fi
    done
    if [ -f "exp/${m}/decode_${test_sets%% *}/score_wer/results.json" ]; then
      speechdistill results --out "exp/${m}/RESULTS.md" --title "${m}" \
        exp/"${m}"/decode_*/score_wer/results.json
    fi
  done
  speed=()
  if [ "${speed_max_utts}" -gt 0 ]; then
    for m in ${models}; do
      spec=()  # the teacher, sped up by the student's decoder as its assistant
      [ "${m}" = teacher ] && [ -f exp/student/model.safetensors ] && spec=(--assistant exp/student)
      ${dec_cmd} "exp/${m}/log/speed.log" speechdistill speed --model "exp/${m}" \
        --data "dump/${test_sets##* }" --device "${device}" --max-utts "${speed_max_utts}" \
        --out "exp/${m}/speed.json" "${spec[@]}" ${language:+--language "${language}"}
      speed+=("exp/${m}/speed.json")
    done
  fi
  filter_report=()
  [ "${filter}" != none ] && [ -f "exp/filter_${filter}/report.json" ] &&
    filter_report=(--filter-report "exp/filter_${filter}/report.json")
  if [ ${#results[@]} -gt 0 ]; then
    speechdistill results --out exp/RESULTS.md "${results[@]}" ${speed[@]:+--speed "${speed[@]}"} \
      ${filter_report[@]:+"${filter_report[@]}"}
  fi
  [ -f exp/RESULTS.md ] && cat exp/RESULTS.md
fi

if stage_start 10 publish; then
  if [ ! -f exp/student/model.safetensors ]; then
    log "no trained student (exp/student/model.safetensors): nothing to publish"
  else
    pub_args=(--model exp/student --teacher exp/teacher --out exp/student/hub
      --selection-set "${valid_set}")
    scored=0
    for s in ${test_sets}; do
      f=exp/student/decode_${s}/score_wer/results.json
      [ -f "${f}" ] && pub_args+=(--results "${f}") && scored=$((scored + 1))
      f=exp/teacher/decode_${s}/score_wer/results.json
      [ -f "${f}" ] && pub_args+=(--teacher-results "${f}")
    done
    [ "${scored}" -gt 0 ] || die "no scored test set for exp/student (run stage 9)"
    [ -f exp/RESULTS.md ] && pub_args+=(--results-md exp/RESULTS.md)
    # A Hub id (owner/name, not a local directory) is the card's base_model.
    [[ ${teacher} =~ ^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$ ]] && [ ! -e "${teacher}" ] &&
      pub_args+=(--base-model "${teacher}")
    [ -n "${language}" ] && pub_args+=(--language "${language}")
    [ -n "${hub_repo_id}" ] && pub_args+=(--repo-id "${hub_repo_id}")
    if [ "${publish_dry_run}" = true ]; then
      pub_args+=(--dry-run)
    else
      [ -n "${hub_repo_id}" ] || die "--hub_repo_id USER/NAME is needed to upload (or --publish_dry_run true)"
    fi
    # shellcheck disable=SC2206 # publish_opts is a list of options
    pub_args+=(${publish_opts})
    speechdistill publish "${pub_args[@]}"
  fi
fi

log "Finished."
