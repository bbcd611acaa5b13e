#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# slurm.sh: run a job, or an array of jobs, on a Slurm cluster; the interface of run_local.sh.
#
#   slurm.sh [options] [JOB=A:B] LOG COMMAND [ARG...]
#
# Writes a batch script LOGDIR/q/NAME.sh (an `sbatch --array=A-B` job for JOB=A:B), submits it
# with `sbatch --wait` and waits. Inside, JOB in LOG and in the command becomes the task's
# $SLURM_ARRAY_TASK_ID; each log gets the same header and footer as with run_local.sh, and
# Slurm's own output goes to LOGDIR/q/NAME.TASK.out. When any job fails or does not finish
# (time or memory limit), the jobs and their logs are listed and the exit status is 1.
# The command is joined and quoted as by run_local.sh. The working directory and the
# environment (PATH from path.sh included) are those of the submitting shell.
#
# Options (before LOG; they override the config file):
#   --config FILE        resources (default: $SPEECHDISTILL_SLURM_CONF, else ./conf/slurm.conf,
#                        else recipes/conf/slurm.conf; see that file for the keys)
#   --partition P        partition
#   --gpu N              GPUs per job (N > 0 also selects gpu_partition)
#   --num-threads N      CPUs per job
#   --mem M              memory per job, e.g. 8G
#   --time T             wall-clock limit per job, e.g. 4:00:00
#   --max-jobs-run N     array tasks running at once
#   --dry-run            print the batch script and the sbatch command; submit nothing
# Environment: SPEECHDISTILL_SBATCH, the sbatch program (default: sbatch).
set -u

utils_dir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=runner_lib.sh
. "$utils_dir/runner_lib.sh"

usage() { sed -n '3,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; }

conf_keys=" partition gpu_partition gpu gpu_option num_threads mem time max_jobs_run sbatch_args gpu_sbatch_args "
config=
dry_run=false
runner_var=
overrides=() # key=value from the command line, applied after the config file
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --dry-run | --dry_run)
      dry_run=true
      shift
      ;;
    --config | --partition | --gpu | --num-threads | --num_threads | --mem | --time | \
      --max-jobs-run | --max_jobs_run)
      [ $# -ge 2 ] || runner_err "option $1 needs a value"
      set -- "$1=$2" "${@:3}"
      ;;
    --config=*)
      config=${1#*=}
      shift
      ;;
    --partition=* | --gpu=* | --num-threads=* | --num_threads=* | --mem=* | --time=* | \
      --max-jobs-run=* | --max_jobs_run=*)
      key=${1%%=*}
      key=${key#--}
      overrides+=("${key//-/_}=${1#*=}")
      shift
      ;;
    --) shift && break ;;
    --*) runner_err "unknown option '$1' (see --help)" ;;
    *)
      if [ -z "$runner_var" ] && runner_parse_range "$1"; then
        shift
      else
        break
      fi
      ;;
  esac
done
if [ $# -lt 2 ]; then
  usage >&2
  exit 1
fi
log=$1
shift
runner_join "$@"
cmd=$runner_cmd
if [ -n "$runner_var" ]; then
  runner_check_log_name "$log"
else
  runner_first=1
  runner_last=1
fi

# ---- resources: config file, then the command line --------------------------------------------
if [ -z "$config" ]; then
  for config in "${SPEECHDISTILL_SLURM_CONF-}" conf/slurm.conf "$utils_dir/../conf/slurm.conf"; do
    [ -n "$config" ] && [ -f "$config" ] && break
  done
fi
if ! [ -f "$config" ] || ! [ -r "$config" ]; then runner_err "cannot read the config file '$config'"; fi
partition=
gpu_partition=
gpu=0
gpu_option='--gres=gpu:{n}'
num_threads=1
mem=
time=
max_jobs_run=
sbatch_args=
gpu_sbatch_args=
n=0
while IFS= read -r line || [ -n "$line" ]; do
  n=$((n + 1))
  line=${line%%#*}
  [[ $line =~ ^[[:space:]]*$ ]] && continue
  [[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*[^[:space:]])?[[:space:]]*$ ]] ||
    runner_err "$config:$n: expected 'key = value', got '$line'"
  [[ $conf_keys == *" ${BASH_REMATCH[1]} "* ]] ||
    runner_err "$config:$n: unknown key '${BASH_REMATCH[1]}' (keys:$conf_keys)"
  printf -v "${BASH_REMATCH[1]}" '%s' "${BASH_REMATCH[2]}"
done <"$config"
for kv in ${overrides[@]+"${overrides[@]}"}; do
  printf -v "${kv%%=*}" '%s' "${kv#*=}"
done
[[ $gpu =~ ^[0-9]+$ ]] || runner_err "--gpu takes a number, got '$gpu'"
[[ $num_threads =~ ^[1-9][0-9]*$ ]] || runner_err "--num-threads takes a positive number, got '$num_threads'"
[[ -z $max_jobs_run || $max_jobs_run =~ ^[1-9][0-9]*$ ]] ||
  runner_err "--max-jobs-run takes a positive number, got '$max_jobs_run'"

# ---- the batch script ------------------------------------------------------------------------
abs() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
squote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

logdir=$(dirname "$log")
[ -z "$runner_var" ] || logdir=${logdir//"$runner_var"/all}
qdir=$(abs "$logdir/q")
name=${log##*/}
name=${name%.log}
if [ -n "$runner_var" ]; then
  name=${name//."$runner_var"/}
  name=${name//"$runner_var"/}
fi
[ -n "$name" ] || name=job
script=$qdir/$name.sh

directives=("--job-name=$name" "--chdir=$PWD")
if [ -n "$runner_var" ]; then
  directives+=("--array=$runner_first-$runner_last${max_jobs_run:+%$max_jobs_run}"
    "--output=$qdir/$name.%a.out")
else
  directives+=("--output=$qdir/$name.out")
fi
if [ "$gpu" -gt 0 ]; then
  [ -z "${gpu_partition:-$partition}" ] || directives+=("--partition=${gpu_partition:-$partition}")
  directives+=("${gpu_option//\{n\}/$gpu}")
else
  [ -z "$partition" ] || directives+=("--partition=$partition")
fi
directives+=("--cpus-per-task=$num_threads")
[ -z "$mem" ] || directives+=("--mem=$mem")
[ -z "$time" ] || directives+=("--time=$time")
# shellcheck disable=SC2206 # extra options are whitespace-separated words
directives+=($sbatch_args)
if [ "$gpu" -gt 0 ]; then
  # shellcheck disable=SC2206
  directives+=($gpu_sbatch_args)
fi

if [ -n "$runner_var" ]; then
  # shellcheck disable=SC2016 # expanded by the batch script
  task='${SLURM_ARRAY_TASK_ID:?not running as a Slurm array task}'
else
  task=1
fi

# shellcheck disable=SC2016 # the batch script's own expansions
script_text=$(
  printf '#!/usr/bin/env bash\n'
  printf '# Written by slurm.sh at %s.\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')"
  printf '#SBATCH %s\n' "${directives[@]}"
  printf '\n'
  printf 'job_cmd=%s\n' "$(squote "$cmd")"
  printf 'job_log=%s\n' "$(squote "$log")"
  printf 'task=%s\n' "$task"
  if [ -n "$runner_var" ]; then
    printf '# %s -> the array task id\n' "$runner_var"
    printf 'cmd=${job_cmd//%s/$task}\n' "$runner_var"
    printf 'log=${job_log//%s/$task}\n' "$runner_var"
  else
    printf 'cmd=$job_cmd\n'
    printf 'log=$job_log\n'
  fi
  cat <<'EOF'
mkdir -p "$(dirname "$log")" || exit 1
{
  printf '# %s\n' "$cmd"
  printf '# Started at %s on %s (Slurm job %s)\n' "$(date)" "${HOSTNAME:-$(uname -n)}" \
    "${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID-}}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}"
} >"$log" || exit 1
t0=${EPOCHREALTIME:-$SECONDS.000000}
bash -o pipefail -c "$cmd" </dev/null >>"$log" 2>&1
rc=$?
t1=${EPOCHREALTIME:-$SECONDS.000000}
us=$(( ${t1//[.,]/} - ${t0//[.,]/} ))
printf '# Ended (code %d) at %s, elapsed time %d.%02d seconds\n' "$rc" "$(date)" \
  $((us / 1000000)) $((us % 1000000 / 10000)) >>"$log"
exit "$rc"
EOF
)

sbatch=${SPEECHDISTILL_SBATCH:-sbatch}
if $dry_run; then
  printf '%s\n' "$script_text"
  printf '\n# submit with:\n%s --wait %s\n' "$sbatch" "$script"
  exit 0
fi

mkdir -p "$qdir" || exit 1
printf '%s\n' "$script_text" >"$script" || exit 1
chmod +x "$script"
# Old logs would pass for this run's if a task never starts.
for ((i = runner_first; i <= runner_last; i++)); do
  rm -f "${log//"$runner_var"/$i}"
done
"$sbatch" --wait "$script" >"$qdir/$name.sbatch.out" 2>&1
sbatch_rc=$?
if ! runner_report "$log" "(Slurm's output: $qdir/$name*.out)"; then
  exit 1
fi
if [ $sbatch_rc -ne 0 ]; then
  runner_err "sbatch exited with $sbatch_rc although every job finished; see $qdir/$name.sbatch.out"
fi
exit 0
