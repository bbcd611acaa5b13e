# shellcheck shell=bash
# corpus_env.sh: the environment and job commands of the corpus a pipeline is run from, as
# ESPnet's asr.sh does with `. ./path.sh; . ./cmd.sh` (sourced by distil_whisper.sh and
# distil_hubert.sh from egs/<corpus>/, after parse_options.sh and stage.sh, so that cmd.sh
# sees the parsed --ngpu).
#
#   ./path.sh   sourced when the current directory has one, else recipes/path.sh
#   ./cmd.sh    likewise, else recipes/cmd.sh; a line on stderr says which one was used when
#               the corpus has none
#
# egs/<corpus>/cmd.sh is usually a symbolic link to recipes/cmd.sh; a site makes it a file that
# sources recipes/cmd.sh and then overrides what it needs:
#   . ../../recipes/cmd.sh
#   cuda_cmd="slurm.sh --gpu 1 --mem 64G"
# Afterwards train_cmd, decode_cmd and cuda_cmd must be set (an error otherwise). gpu_cmd and
# dec_cmd are derived from them and --ngpu, as recipes/cmd.sh derives them,
#   gpu_cmd  = "${cuda_cmd} --gpu ${ngpu}"
#   dec_cmd  = ${decode_cmd} with --ngpu 0, else "${cuda_cmd} --gpu 1"
# from the final cuda_cmd and decode_cmd, so they follow an override of those; a cmd.sh that
# sets gpu_cmd or dec_cmd itself (to anything but what recipes/cmd.sh derived) keeps its value.
# Values in the calling environment are not used: the five commands are unset first.
# shellcheck source-path=SCRIPTDIR
# shellcheck disable=SC2154 # ngpu is the pipeline's option; cmd.sh sets the *_cmd variables

_sd_recipes=$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# log and die: stage.sh's (sourced here when the caller has not).
if ! declare -F log >/dev/null || ! declare -F die >/dev/null; then
  # shellcheck source=stage.sh
  . "${_sd_recipes}/utils/stage.sh"
fi

if [ -f ./path.sh ]; then
  # shellcheck source=/dev/null # the corpus's own
  . ./path.sh
else
  log "no path.sh in $(pwd): using ${_sd_recipes}/path.sh"
  # shellcheck source=../path.sh
  . "${_sd_recipes}/path.sh"
fi

unset train_cmd decode_cmd cuda_cmd gpu_cmd dec_cmd _sd_derived_gpu_cmd _sd_derived_dec_cmd
if [ -f ./cmd.sh ]; then
  _sd_cmd_sh=./cmd.sh
  # shellcheck source=/dev/null # the corpus's own
  . ./cmd.sh
else
  _sd_cmd_sh=${_sd_recipes}/cmd.sh
  log "no cmd.sh in $(pwd): using ${_sd_cmd_sh}" \
    "(backend ${cmd_backend:-${SPEECHDISTILL_CMD_BACKEND:-local}})"
  # shellcheck source=../cmd.sh
  . "${_sd_cmd_sh}"
fi

for _sd_v in train_cmd decode_cmd cuda_cmd; do
  if [ -z "${!_sd_v-}" ]; then
    die "${_sd_cmd_sh} does not set ${_sd_v} (source ${_sd_recipes}/cmd.sh in it first)"
  fi
done

# gpu_cmd and dec_cmd: derived again from the final commands unless cmd.sh set them itself.
ngpu=${ngpu:-0}
if [ -z "${gpu_cmd-}" ] || [ "${gpu_cmd}" = "${_sd_derived_gpu_cmd-}" ]; then
  gpu_cmd="${cuda_cmd} --gpu ${ngpu}"
fi
if [ -z "${dec_cmd-}" ] || [ "${dec_cmd}" = "${_sd_derived_dec_cmd-}" ]; then
  if [ "${ngpu}" -gt 0 ]; then dec_cmd="${cuda_cmd} --gpu 1"; else dec_cmd=${decode_cmd}; fi
fi
export train_cmd decode_cmd cuda_cmd gpu_cmd dec_cmd
log "job commands (${_sd_cmd_sh}): gpu_cmd='${gpu_cmd}' dec_cmd='${dec_cmd}'"
unset _sd_v _sd_cmd_sh _sd_recipes _sd_derived_gpu_cmd _sd_derived_dec_cmd
