#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# run_local.sh: run a job, or an array of jobs, on this machine (the interface of Kaldi's run.pl).
#
#   run_local.sh [options] [JOB=A:B] LOG COMMAND [ARG...]
#
# With JOB=A:B (any upper-case variable name may stand for JOB), jobs A..B run in parallel, at
# most --max-jobs-run at a time; every occurrence of JOB in LOG and in the command is replaced
# by the job's number. Without it, one job runs. The command is run by `bash -o pipefail -c`:
# a single COMMAND argument is taken as a whole command line ("a JOB | b"); several are joined
# by spaces, an argument without whitespace as it is (so `\|`, '>' and '&&' act as shell
# syntax, as with run.pl) and one with whitespace quoted as one word.
# Each log gets a header (the command, start time, host), the job's stdout and stderr, and a
# footer with the exit code and the elapsed time. When any job fails, the failed jobs and their
# logs are listed on stderr and the exit status is 1.
#
# Options (before LOG):
#   --max-jobs-run N     jobs running at once (default: the number of CPUs)
#   --gpu N, --mem M, --time T, --num-threads N, --partition P, --config F
#                        accepted for compatibility with slurm.sh; ignored here
#
# Examples:
#   run_local.sh JOB=1:4 exp/log/decode.JOB.log speechdistill decode --job JOB --nj 4 data/test
#   run_local.sh exp/log/sort.log sort data/x \> data/y
#   run_local.sh JOB=1:2 log/n.JOB.log "wc -l < data/split2/JOB/text"
set -u

# shellcheck source=runner_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/runner_lib.sh"

usage() { sed -n '3,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; }

max_jobs_run=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
runner_var=
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --max-jobs-run | --max_jobs_run)
      [ $# -ge 2 ] || runner_err "option $1 needs a value"
      max_jobs_run=$2
      shift 2
      ;;
    --max-jobs-run=* | --max_jobs_run=*)
      max_jobs_run=${1#*=}
      shift
      ;;
    --gpu | --mem | --time | --num-threads | --num_threads | --partition | --config)
      [ $# -ge 2 ] || runner_err "option $1 needs a value"
      shift 2
      ;;
    --gpu=* | --mem=* | --time=* | --num-threads=* | --num_threads=* | --partition=* | --config=*)
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
[[ $max_jobs_run =~ ^[1-9][0-9]*$ ]] ||
  runner_err "--max-jobs-run takes a positive integer, got '$max_jobs_run'"

log=$1
shift
runner_join "$@"
cmd=$runner_cmd
if [ -n "$runner_var" ]; then
  runner_check_log_name "$log"
else
  # A single job: nothing is replaced (the empty pattern matches nothing).
  runner_first=1
  runner_last=1
fi

# now: microseconds since the epoch in _now (whole seconds before bash 5).
now() {
  if [ -n "${EPOCHREALTIME-}" ]; then
    _now=${EPOCHREALTIME//[.,]/}
  else
    _now=$((SECONDS * 1000000))
  fi
}

run_one() {
  local i=$1 c lf t0 rc child us
  c=${cmd//"$runner_var"/$i}
  lf=${log//"$runner_var"/$i}
  mkdir -p "$(dirname "$lf")" || return 1
  {
    printf '# %s\n' "$c"
    printf '# Started at %s on %s\n' "$(date)" "${HOSTNAME:-$(uname -n)}"
  } >"$lf" || return 1
  now
  t0=$_now
  bash -o pipefail -c "$c" </dev/null >>"$lf" 2>&1 &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null' TERM INT
  wait "$child"
  rc=$?
  # A signal interrupts `wait`; wait again for the command's own exit status.
  if [ $rc -gt 128 ] && kill -0 "$child" 2>/dev/null; then
    wait "$child"
    rc=$?
  fi
  now
  us=$((_now - t0))
  printf '# Ended (code %d) at %s, elapsed time %d.%02d seconds\n' "$rc" "$(date)" \
    $((us / 1000000)) $((us % 1000000 / 10000)) >>"$lf"
  return "$rc"
}

pids=()
# shellcheck disable=SC2317 # called by the trap
on_signal() {
  trap - TERM INT
  [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null
  wait
  runner_err "interrupted; the running jobs were killed"
}
trap on_signal TERM INT

running=0
for ((i = runner_first; i <= runner_last; i++)); do
  if [ "$running" -ge "$max_jobs_run" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_one "$i" &
  pids+=($!)
  running=$((running + 1))
done
wait

runner_report "$log" || exit 1
exit 0
