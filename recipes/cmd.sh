# shellcheck shell=bash
# cmd.sh: how recipes run their jobs (sourced, after path.sh). Like ESPnet's cmd.sh it exports
#   train_cmd   CPU jobs (data preparation, filtering, scoring)
#   decode_cmd  decoding and pseudo-labelling jobs, split with --nj
#   cuda_cmd    jobs that need a GPU (training, GPU decoding)
# each used as `$decode_cmd JOB=1:$nj exp/x/log/decode.JOB.log COMMAND ...` (unquoted: the
# variables hold a runner and its options).
#
# The backend: $cmd_backend if the recipe sets it, else $SPEECHDISTILL_CMD_BACKEND, else local.
#   local   recipes/utils/run_local.sh: jobs run on this machine, at most as many as CPUs
#   slurm   recipes/utils/slurm.sh: sbatch job arrays; partitions, memory and time limits come
#           from conf/slurm.conf (the recipe's) or recipes/conf/slurm.conf
# The pipelines (distil_whisper.sh, distil_hubert.sh) source ./cmd.sh of the corpus directory
# they are run from (recipes/utils/corpus_env.sh): egs/<corpus>/cmd.sh, a symbolic link to this
# file, or, for a site-specific setup, a file that sources this one and then overrides what it
# needs, e.g. `cuda_cmd="slurm.sh --gpu 1 --mem 32G"` or
# `gpu_cmd="slurm.sh --gpu ${ngpu} --mem 200G"`.

cmd_backend=${cmd_backend:-${SPEECHDISTILL_CMD_BACKEND:-local}}
case $cmd_backend in
  local)
    train_cmd="run_local.sh"
    decode_cmd="run_local.sh"
    cuda_cmd="run_local.sh --gpu 1"
    ;;
  slurm)
    train_cmd="slurm.sh"
    decode_cmd="slurm.sh"
    cuda_cmd="slurm.sh --gpu 1"
    ;;
  *)
    echo "cmd.sh: unknown cmd_backend '$cmd_backend' (local or slurm)" >&2
    # shellcheck disable=SC2317 # exit when run rather than sourced
    return 1 2>/dev/null || exit 1
    ;;
esac
export cmd_backend train_cmd decode_cmd cuda_cmd

# For recipes with an --ngpu option (sourced after the options are parsed):
#   gpu_cmd   jobs that run under `accelerate launch` (training, pseudo-labelling): ngpu GPUs each
#   dec_cmd   decoding jobs: one GPU each
# both plain CPU jobs when ngpu is 0. The pipelines derive them again after the corpus's cmd.sh
# (the same rule, in utils/corpus_env.sh), so they follow a cuda_cmd or decode_cmd overridden
# there, unless it sets gpu_cmd or dec_cmd itself (to something other than the values below).
ngpu=${ngpu:-0}
gpu_cmd="${cuda_cmd} --gpu ${ngpu}"
if [ "${ngpu}" -gt 0 ]; then dec_cmd="${cuda_cmd} --gpu 1"; else dec_cmd=${decode_cmd}; fi
export gpu_cmd dec_cmd
_sd_derived_gpu_cmd=${gpu_cmd}
_sd_derived_dec_cmd=${dec_cmd}

# The runners are called by name: make sure recipes/utils is on PATH even without path.sh.
if ! command -v run_local.sh >/dev/null 2>&1; then
  __sd_src=${BASH_SOURCE[0]}
  while [ -L "$__sd_src" ]; do
    __sd_dir=$(cd -P "$(dirname "$__sd_src")" && pwd)
    __sd_src=$(readlink "$__sd_src")
    case $__sd_src in /*) ;; *) __sd_src=$__sd_dir/$__sd_src ;; esac
  done
  PATH=$(cd -P "$(dirname "$__sd_src")" && pwd)/utils:$PATH
  export PATH
  unset __sd_src __sd_dir
fi
