# shellcheck shell=bash disable=SC2154 # stage, stop_stage, ...: the recipe's options
# stage.sh: logging, stage selection, .done markers and saved configs for recipe scripts.
#
# Source it after parse_options.sh. It reads (when the script declares them) the options
#   stage        first stage to run: number or registered name      (default 1)
#   stop_stage   last stage to run: number or registered name       (default: no limit)
#   skip_stages  stages not to run: numbers and/or names, separated by spaces or commas
#   force        true: ignore .done markers, rerun every selected stage (default false)
#
# Functions:
#   log MESSAGE...              "2026-11-29T12:00:00 (run.sh:42:main) MESSAGE" on stderr
#   die MESSAGE...              log "ERROR: MESSAGE" and exit 1
#   register_stages 1:prepare 2:format ...
#                               name the stages, so --stage/--stop_stage accept names; also
#                               checks stage, stop_stage and skip_stages against the table:
#                               a stage that does not exist, or stage after stop_stage, is an
#                               error before any work (stop_stage may run past the last stage)
#   check_counts MIN NAME...    each option NAME is an integer >= MIN, else an error naming it
#   stage_enabled NUM [NAME]    0 when NUM is within [stage, stop_stage] and neither NUM nor
#                               NAME is in skip_stages
#   stage_done DIR NAME         0 when DIR/.NAME.done exists (and force is not true)
#   mark_done DIR NAME          write DIR/.NAME.done (date, command line)
#   stage_start NUM NAME [DIR]  stage_enabled and (with DIR) not stage_done; logs the decision
#   save_config FILE            write every declared option as name=value (shell-quoted), so
#                               that `--config FILE` reproduces the run
#
#   if stage_start 3 teacher exp/teacher; then
#     ...
#     mark_done exp/teacher teacher
#   fi

_sd_stage_table=" "   # " 1:prepare 2:format ... "

# _sd_log_at DEPTH MESSAGE...: log with the file/line/function of the caller DEPTH frames up.
_sd_log_at() {
  local d=$1 ts
  shift
  printf -v ts '%(%Y-%m-%dT%H:%M:%S)T' -1
  printf '%s (%s:%s:%s) %s\n' "$ts" "${BASH_SOURCE[d + 1]##*/}" "${BASH_LINENO[d]}" \
    "${FUNCNAME[d + 1]:-main}" "$*" >&2
}

log() { _sd_log_at 1 "$@"; }

die() {
  _sd_log_at 1 "ERROR: $*"
  exit 1
}

_sd_is_int() { [[ $1 =~ ^-?[0-9]+$ ]]; }

# _sd_stage_number VALUE OPTION: set _sd_num to the stage number VALUE stands for, or die.
_sd_stage_number() {
  local tok
  if _sd_is_int "$1"; then
    _sd_num=$1
    return 0
  fi
  for tok in $_sd_stage_table; do
    if [ "${tok#*:}" = "$1" ]; then
      _sd_num=${tok%%:*}
      return 0
    fi
  done
  if [ "$_sd_stage_table" = " " ]; then
    _sd_log_at 2 "ERROR: --$2 '$1' is not a number (stage names need register_stages)"
  else
    _sd_log_at 2 "ERROR: --$2 '$1': no such stage (stages:$_sd_stage_table)"
  fi
  exit 1
}

register_stages() {
  local spec tok num name skip
  for spec in "$@"; do
    for tok in ${spec//,/ }; do
      num=${tok%%:*}
      name=${tok#*:}
      if [ "$num" = "$tok" ] || ! _sd_is_int "$num" || ! [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        _sd_log_at 1 "ERROR: register_stages: '$tok' is not NUM:NAME"
        exit 1
      fi
      _sd_stage_table+="$num:$name "
    done
  done
  # Check the options now, so that a typo fails before any work is done.
  local first last lo='' hi=''
  for tok in $_sd_stage_table; do
    num=${tok%%:*}
    if [ -z "$lo" ] || [ "$num" -lt "$lo" ]; then lo=$num; fi
    if [ -z "$hi" ] || [ "$num" -gt "$hi" ]; then hi=$num; fi
  done
  _sd_stage_number "${stage:-1}" stage
  first=$_sd_num
  if [ "$first" -lt "$lo" ] || [ "$first" -gt "$hi" ]; then
    _sd_log_at 1 "ERROR: --stage ${stage:-1}: no such stage (stages $lo to $hi:$_sd_stage_table)"
    exit 1
  fi
  if [ -n "${stop_stage-}" ]; then
    _sd_stage_number "$stop_stage" stop_stage
    last=$_sd_num
    if [ "$last" -lt "$first" ]; then
      _sd_log_at 1 "ERROR: --stop_stage $stop_stage is before --stage ${stage:-1}: no stage to run"
      exit 1
    fi
  fi
  skip=${skip_stages-}
  for tok in ${skip//,/ }; do
    _sd_stage_number "$tok" skip_stages
    case $_sd_stage_table in
      *" $_sd_num:"*) ;;
      *)
        _sd_log_at 1 "ERROR: --skip_stages $tok: no such stage (stages:$_sd_stage_table)"
        exit 1
        ;;
    esac
  done
}

check_counts() {
  local min=${1-} n v
  shift
  for n in "$@"; do
    v=${!n-}
    if ! [[ $v =~ ^[0-9]+$ ]] || [ "$((10#$v))" -lt "$min" ]; then
      _sd_log_at 1 "ERROR: --$n '$v': expected an integer >= $min"
      exit 1
    fi
  done
}

stage_enabled() {
  local num=$1 name=${2-} first last tok skip
  _sd_is_int "$num" || {
    _sd_log_at 1 "ERROR: stage_enabled: '$num' is not a stage number"
    exit 1
  }
  _sd_stage_number "${stage:-1}" stage
  first=$_sd_num
  if [ -n "${stop_stage-}" ]; then
    _sd_stage_number "$stop_stage" stop_stage
    last=$_sd_num
  else
    last=$num
  fi
  [ "$num" -ge "$first" ] && [ "$num" -le "$last" ] || return 1
  skip=${skip_stages-}
  for tok in ${skip//,/ }; do
    if [ "$tok" = "$num" ] || { [ -n "$name" ] && [ "$tok" = "$name" ]; }; then
      return 1
    fi
  done
  return 0
}

_sd_marker() {  # DIR NAME -> _sd_mark
  if [ -z "$1" ] || ! [[ $2 =~ ^[A-Za-z0-9_.+-]+$ ]]; then
    _sd_log_at 2 "ERROR: ${FUNCNAME[1]}: need DIR and NAME (letters, digits, _ . + -), got '$1' '$2'"
    exit 1
  fi
  _sd_mark=$1/.$2.done
}

stage_done() {
  _sd_marker "${1-}" "${2-}"
  [ "${force:-false}" != true ] && [ -f "$_sd_mark" ]
}

mark_done() {
  _sd_marker "${1-}" "${2-}"
  mkdir -p "$1" || exit 1
  {
    printf 'done %s\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')"
    printf 'command %s\n' "${opt_cmdline:-$0}"
  } >"$_sd_mark.tmp" && mv -f "$_sd_mark.tmp" "$_sd_mark" || exit 1
  _sd_log_at 1 "$2: done ($_sd_mark)"
}

stage_start() {
  local num=$1 name=${2-} dir=${3-}
  stage_enabled "$num" "$name" || return 1
  if [ -n "$dir" ] && stage_done "$dir" "$name"; then
    _sd_log_at 1 "Stage $num ($name): already done, skipping (remove $_sd_mark or use --force true to rerun)"
    return 1
  fi
  _sd_log_at 1 "Stage $num${name:+ ($name)}: start"
  return 0
}

save_config() {
  local file=${1-} n dir
  [ -n "$file" ] || die "save_config: need a file name"
  dir=$(dirname "$file")
  mkdir -p "$dir" || exit 1
  {
    printf '# Options of %s, resolved %s.\n' "${0##*/}" "$(date '+%Y-%m-%dT%H:%M:%S%z')"
    printf '# Command line: %s\n' "${opt_cmdline:-$0}"
    printf '# Rerun with the same options: %s --config %s\n' "${0##*/}" "$file"
    for n in ${opt_names[@]+"${opt_names[@]}"}; do
      printf '%s=%q\n' "$n" "${!n-}"
    done
  } >"$file.tmp" && mv -f "$file.tmp" "$file" || exit 1
}
