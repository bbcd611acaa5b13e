#!/usr/bin/env bash
# distil_hubert.sh: the shared pipeline of SSL-style students: DistilHuBERT (layer-wise distillation
# into a small encoder) or, with --method prune, DPHuBERT (the teacher's own encoder pruned while
# distilling, then distilled again), then CTC fine-tuning for ASR. Run from egs/<corpus>/ (every
# path is relative to it) through that recipe's run_hubert.sh / run_prune.sh.
# It sources egs/<corpus>/path.sh and cmd.sh (recipes/utils/corpus_env.sh): a site sets its job
# commands there.
#
#   1 prepare       local/data.sh -> data/<set>/ (Kaldi data dirs)
#   2 format        pipes/segments -> 16 kHz mono WAVs; duration limits on train/dev only,
#                   unreadable train audio skipped -> dump/<set>/
#   3 teacher       HuBERT/wav2vec2/WavLM (Hub id or dir) or a Whisper encoder -> <teacher_dir>
#   4 train         distil: DistilHuBERT student + heads, best on the dev loss -> <expdir>/student/
#                   prune: the teacher's encoder pruned while distilled -> <expdir>/prune/, then
#                   distilled again without gates (final distillation) -> <expdir>/student/
#   5 ctc_finetune  CTC fine-tuning on the train set's text (+ the random-init baseline with
#                   --ctc_scratch true) -> <expdir>/ctc/ (<expdir>/ctc_scratch/)
#   6 decode        greedy CTC decoding of every test set -> <expdir>/<model>/decode_<set>/
#   7 score         WER/CER, sclite-style reports -> <expdir>/RESULTS.md
#
# Stages 1-2 are distil_whisper.sh's (recipes/utils/data_stages.sh): both recipes share data/
# and dump/.
# shellcheck source-path=SCRIPTDIR
# shellcheck disable=SC2034,SC2154 # options are read by sourced helpers; cmd.sh sets *_cmd
set -euo pipefail

# begin options
# General
stage=1                 # first stage to run (number or name)
stop_stage=7            # last stage to run (number or name)
skip_stages=            # stages not to run, e.g. "5 6" or "decode,score"
force=false             # rerun stages that have a .done marker
nj=1                    # parallel jobs for decoding (split data dirs)
ngpu=0                  # GPUs per job (0: CPU)
expdir=exp/hubert       # this recipe's outputs
# Data
local_data_opts=        # options for local/data.sh
train_set=train         # distillation needs audio only; CTC fine-tuning needs its text
valid_set=dev           # dev set: model selection only
test_sets="dev test"    # sets to decode and score
min_duration=0.1        # format: drop shorter train/dev utterances (seconds)
max_duration=30.0       # format: drop longer train/dev utterances (seconds; Whisper's window)
format_opts=            # more options for speechdistill format (all sets)
normalizer=english      # text normaliser for scoring: english, basic, pt_br, none
# Teacher
teacher=facebook/hubert-base-ls960@refs/pr/2  # HuBERT/wav2vec2/WavLM Hub id[@revision] or dir, or Whisper (tiny.en); that PR branch holds its safetensors
teacher_dir=            # where stage 3 puts it (empty: <expdir>/teacher)
# Distillation
method=distil           # distil (DistilHuBERT) or prune (DPHuBERT: structured pruning)
train_config=conf/distil_hubert.yaml  # options of speechdistill train --student hubert (YAML)
train_opts=             # more options, e.g. "--max-steps 2000 --target-layers 4,8,12"
prune_config=conf/prune.yaml  # --method prune: options of speechdistill prune (YAML)
prune_opts=             # more options, e.g. "--target-sparsity 0.75"
final_config=conf/final_distill.yaml  # --method prune: options of speechdistill final-distill
final_opts=             # more options of final-distill
# CTC fine-tuning
ctc_config=conf/ctc.yaml  # options of speechdistill ctc-finetune (YAML)
ctc_opts=               # more options, e.g. "--max-steps 5000"
ctc_scratch=false       # also fine-tune the same architecture from random weights (baseline)
# Decoding
decode_batch_size=16    # utterances per batch
# end options
help_message="Usage: $0 [options]   (run from egs/<corpus>/, usually through its run_hubert.sh)"

recipes=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "${recipes}/utils/parse_options.sh"
. "${recipes}/utils/stage.sh"
# ./path.sh and ./cmd.sh of egs/<corpus>/ (recipes/'s own when it has none): a site's overrides
# of the job commands, and gpu_cmd/dec_cmd for --ngpu.
. "${recipes}/utils/corpus_env.sh"
. "${recipes}/utils/data_stages.sh"

register_stages 1:prepare 2:format 3:teacher 4:train 5:ctc_finetune 6:decode 7:score
check_counts 1 nj decode_batch_size
check_counts 0 ngpu
case ${method} in
  distil | prune) ;;
  *) die "--method must be distil or prune, not '${method}'" ;;
esac

[ $# -eq 0 ] || die "unexpected arguments: $* (see --help)"
[ -n "${teacher_dir}" ] || teacher_dir=${expdir}/teacher
mkdir -p "${expdir}"
save_config "${expdir}/config.sh"

device=cpu
[ "${ngpu}" -gt 0 ] && device=cuda

# Every set this recipe touches, once each, in order.
# shellcheck disable=SC2086 # test_sets is a list
all_sets=$(printf '%s\n' "${train_set}" "${valid_set}" ${test_sets} | awk 'NF && !seen[$0]++')

if stage_start 1 prepare data; then
  prepare_data
  mark_done data prepare
fi

if stage_start 2 format dump; then
  format_data
  mark_done dump format
fi

if stage_start 3 teacher "${teacher_dir}"; then
  speechdistill hubert-teacher "${teacher}" "${teacher_dir}"
  mark_done "${teacher_dir}" teacher
fi

# accelerate's launcher runs one process per GPU when a job has several.
sd_multi=(speechdistill)
[ "${ngpu}" -gt 1 ] && sd_multi=(accelerate launch --num_processes "${ngpu}" -m speechdistill)

student=${expdir}/student
data_args=(--teacher "${teacher_dir}" --train "dump/${train_set}" --dev "dump/${valid_set}")
if [ "${method}" = distil ] && stage_start 4 train "${student}"; then
  args=(--student hubert "${data_args[@]}" --out "${student}")
  [ -f "${train_config}" ] && args+=(--config "${train_config}")
  # shellcheck disable=SC2206 # train_opts is a list of options
  args+=(${train_opts})
  ${gpu_cmd} "${student}/log/train.log" "${sd_multi[@]}" train "${args[@]}"
  mark_done "${student}" train
fi
if [ "${method}" = prune ]; then
  pruned=${expdir}/prune
  if stage_start 4 train "${pruned}"; then
    args=("${data_args[@]}" --out "${pruned}")
    [ -f "${prune_config}" ] && args+=(--config "${prune_config}")
    # shellcheck disable=SC2206 # prune_opts is a list of options
    args+=(${prune_opts})
    ${gpu_cmd} "${pruned}/log/prune.log" "${sd_multi[@]}" prune "${args[@]}"
    mark_done "${pruned}" train
  fi
  if stage_start 4 train "${student}"; then
    [ -f "${pruned}/model.safetensors" ] || die "no pruned model in ${pruned}"
    args=(--student "${pruned}" "${data_args[@]}" --out "${student}")
    [ -f "${final_config}" ] && args+=(--config "${final_config}")
    # shellcheck disable=SC2206 # final_opts is a list of options
    args+=(${final_opts})
    ${gpu_cmd} "${student}/log/final_distill.log" "${sd_multi[@]}" final-distill "${args[@]}"
    mark_done "${student}" train
  fi
fi

# The CTC models: the distilled student's, and the random-init baseline's when asked for.
models="ctc"
[ "${ctc_scratch}" = true ] && models+=" ctc_scratch"

if stage_enabled 5 ctc_finetune; then
  [ -f "dump/${train_set}/text" ] || die "CTC fine-tuning needs transcripts: no dump/${train_set}/text"
  for m in ${models}; do
    stage_start 5 ctc_finetune "${expdir}/${m}" || continue
    [ -f "${student}/model.safetensors" ] || die "no student in ${student} (run stage 4)"
    args=(--model "${student}" --train "dump/${train_set}" --dev "dump/${valid_set}"
      --out "${expdir}/${m}")
    [ -f "${ctc_config}" ] && args+=(--config "${ctc_config}")
    [ "${m}" = ctc_scratch ] && args+=(--from-scratch true)
    # shellcheck disable=SC2206 # ctc_opts is a list of options
    args+=(${ctc_opts})
    ${gpu_cmd} "${expdir}/${m}/log/ctc_finetune.log" "${sd_multi[@]}" ctc-finetune "${args[@]}"
    mark_done "${expdir}/${m}" ctc_finetune
  done
fi

if stage_enabled 6 decode; then
  for m in ${models}; do
    [ -f "${expdir}/${m}/model.safetensors" ] || die "no CTC model in ${expdir}/${m} (run stage 5)"
    for s in ${test_sets}; do
      dir=${expdir}/${m}/decode_${s}
      stage_start 6 decode "${dir}" || continue
      dec=(--model "${expdir}/${m}" --batch-size "${decode_batch_size}" --device "${device}")
      if [ "${nj}" -le 1 ]; then
        ${dec_cmd} "${dir}/log/decode.log" \
          speechdistill ctc-decode "${dec[@]}" --data "dump/${s}" --out "${dir}"
      else
        speechdistill data split "dump/${s}" "${nj}" >/dev/null
        ${dec_cmd} JOB=1:"${nj}" "${dir}/log/decode.JOB.log" \
          speechdistill ctc-decode "${dec[@]}" --data "dump/${s}/split${nj}/JOB" \
          --out "${dir}/split${nj}/JOB"
        speechdistill decode --out "${dir}" --merge $(seq -f "${dir}/split${nj}/%g" 1 "${nj}")
      fi
      mark_done "${dir}" decode
    done
  done
fi

if stage_start 7 score; then
  family=distilhubert
  [ "${method}" = prune ] && family=dphubert
  results=()
  for m in ${models}; do
    name=${family}_${m}
    for s in ${test_sets}; do
      dir=${expdir}/${m}/decode_${s}
      [ -f "${dir}/text" ] || die "no hypotheses in ${dir} (run stage 6)"
      if [ -f "dump/${s}/text" ]; then
        speechdistill score --ref "dump/${s}/text" --hyp "${dir}/text" --out "${dir}/score_wer" \
          --utt2spk "dump/${s}/utt2spk" --normalizer "${normalizer}" --model "${name}" --name "${s}"
        results+=("${dir}/score_wer/results.json")
      else
        log "dump/${s} has no reference text: ${m} on ${s} not scored"
      fi
    done
  done
  if [ ${#results[@]} -gt 0 ]; then
    title="DistilHuBERT + CTC"
    [ "${method}" = prune ] && title="DPHuBERT (structured pruning) + CTC"
    speechdistill results --out "${expdir}/RESULTS.md" --title "${title}" "${results[@]}"
    cat "${expdir}/RESULTS.md"
  fi
fi

log "Finished."
