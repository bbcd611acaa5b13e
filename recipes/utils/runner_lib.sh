# shellcheck shell=bash
# runner_lib.sh: what run_local.sh and slurm.sh share (sourced by them, not by recipes).
#
# The contract between a runner and its job logs: the first line of a log is `# COMMAND`, the
# last line, written when the command has finished, is
#   # Ended (code RC) at DATE, elapsed time S.SS seconds
# A log without that last line belongs to a job that did not finish (killed, never started).

# runner_err MESSAGE: print "RUNNER: MESSAGE" on stderr and exit 1.
runner_err() {
  printf '%s: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# runner_join ARG...: the command line for `bash -c`, in $runner_cmd. A single argument is a
# command line already: it is taken whole. Otherwise an argument without whitespace is taken as
# it is (so `\|` or '>' act as shell syntax, as with Kaldi's run.pl), and one with whitespace, or
# an empty one, is quoted as one word.
runner_join() {
  local arg
  runner_cmd=
  if [ $# -eq 1 ]; then
    runner_cmd=$1
    return 0
  fi
  for arg in "$@"; do
    if [[ $arg =~ ^[^[:space:]]+$ ]]; then
      runner_cmd+="$arg "
    else
      runner_cmd+="$(printf '%q' "$arg") "
    fi
  done
  runner_cmd=${runner_cmd% }
}

# runner_parse_range SPEC: for VAR=A:B (or VAR=A) set runner_var, runner_first, runner_last;
# returns 1 when SPEC is not a job range.
runner_parse_range() {
  [[ $1 =~ ^([A-Z][A-Z0-9_]*)=([0-9]+)(:([0-9]+))?$ ]] || return 1
  runner_var=${BASH_REMATCH[1]}
  runner_first=$((10#${BASH_REMATCH[2]}))
  runner_last=$((10#${BASH_REMATCH[4]:-${BASH_REMATCH[2]}}))
  [ "$runner_first" -le "$runner_last" ] ||
    runner_err "empty job range '$1'"
}

# runner_check_log_name LOG: an array job needs its variable in the log name.
runner_check_log_name() {
  if [ "$runner_first" -ne "$runner_last" ] && [[ $1 != *"$runner_var"* ]]; then
    runner_err "$((runner_last - runner_first + 1)) jobs would share the log '$1': put $runner_var in its name"
  fi
}

# runner_report LOG_TEMPLATE [HINT]: read the footer of every job's log (runner_var empty: a
# single job whose log is LOG_TEMPLATE itself); when any job failed or did not finish, list
# them with their logs on stderr and return 1.
runner_report() {
  local template=$1 hint=${2-} i lf footer label failed=()
  for ((i = runner_first; i <= runner_last; i++)); do
    lf=${template//"$runner_var"/$i}
    label=${runner_var:+$runner_var=$i}
    footer=$(tail -n 1 "$lf" 2>/dev/null)
    if [[ $footer =~ ^#\ Ended\ \(code\ ([0-9]+)\) ]]; then
      [ "${BASH_REMATCH[1]}" = 0 ] && continue
      failed+=("${label:-the job} (exit code ${BASH_REMATCH[1]}): $lf")
    else
      failed+=("${label:-the job} (did not finish): $lf")
    fi
  done
  [ ${#failed[@]} -eq 0 ] && return 0
  {
    printf '%s: %d / %d jobs failed; see the logs:\n' "${0##*/}" ${#failed[@]} \
      $((runner_last - runner_first + 1))
    printf '  %s\n' "${failed[@]}"
    [ -z "$hint" ] || printf '%s\n' "$hint"
  } >&2
  return 1
}
