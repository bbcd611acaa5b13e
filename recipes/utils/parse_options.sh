# shellcheck shell=bash
# parse_options.sh: command-line options for recipe scripts, Kaldi style.
#
# Source it (without arguments) after declaring the options with their defaults:
#
#   # begin options
#   # General
#   stage=1             # first stage to run (number or name)
#   stop_stage=100      # last stage to run
#   nj=4                # number of parallel jobs
#   use_gpu=false       # decode on the GPU
#   # end options
#   help_message="Usage: $0 [options] <data-dir> <exp-dir>"
#   . "${recipes_dir}/utils/parse_options.sh"
#   # "$@" now holds the positional arguments only
#
# Every `name=value` line between the `# begin options` and `# end options` markers of the
# sourcing file is an option (several blocks are allowed); the text after `#` on that line is
# its description for --help, and full-line comments inside a block are printed as section
# headings. Options that cannot live in the block can be declared by appending their names to
# the array `opt_names` before sourcing.
#
#   --foo-bar VALUE, --foo_bar VALUE, --foo-bar=VALUE   set foo_bar
#   --config FILE     source FILE (lines `foo_bar=value`) before the other options are applied,
#                     wherever it appears, so the command line wins; may be repeated
#   --help, -h        print $help_message and every option with its current value, exit 0
#   --                end of options
# Parsing stops at the first argument that does not start with `--`. An option that is not
# declared is an error (exit 1), and so is a value other than true/false for an option whose
# default is true or false.
#
# After parsing, `opt_names` (array) lists the declared options in order and `opt_cmdline` holds
# the original command line, shell-quoted (stage.sh's save_config and mark_done use both).
#
# Without any option block or opt_names entry the script falls back to Kaldi's rule: any variable
# that is set may be given as an option, and --help prints only $help_message.

opt_cmdline=$(printf '%q ' "$0" "$@")
opt_cmdline=${opt_cmdline% }

__po_err() {
  printf '%s: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# ---- collect the declared options -------------------------------------------------------------
__po_names=" "     # " a b c ": membership tests by pattern
__po_order=()      # names in declaration order
__po_layout=()     # help layout: "o<TAB>name<TAB>description" or "h<TAB>heading"
__po_tab=$'\t'

__po_add() {  # name [description]
  [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || __po_err "invalid option name '$1' in the option list"
  case $__po_names in *" $1 "*) return 0 ;; esac
  __po_names+="$1 "
  __po_order+=("$1")
  __po_layout+=("o${__po_tab}$1${__po_tab}${2-}")
}

# Names the script declared explicitly (array or whitespace-separated string).
# shellcheck disable=SC2048,SC2068
for __po_n in ${opt_names[*]-}; do __po_add "$__po_n"; done

__po_src=${BASH_SOURCE[1]-}
if [ -n "$__po_src" ] && [ -r "$__po_src" ]; then
  __po_in=false
  __po_line=
  while IFS= read -r __po_line || [ -n "$__po_line" ]; do
    if [[ $__po_line =~ ^[[:space:]]*#+[[:space:]]*begin[[:space:]]+options[[:space:]]*$ ]]; then
      __po_in=true
      continue
    fi
    if [[ $__po_line =~ ^[[:space:]]*#+[[:space:]]*end[[:space:]]+options[[:space:]]*$ ]]; then
      __po_in=false
      continue
    fi
    $__po_in || continue
    if [[ $__po_line =~ ^[[:space:]]*#+[[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]]; then
      # A full-line comment: a heading for --help (shellcheck directives excepted).
      [[ ${BASH_REMATCH[1]} == shellcheck* ]] || __po_layout+=("h${__po_tab}${BASH_REMATCH[1]}")
      continue
    fi
    [[ $__po_line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    __po_n=${BASH_REMATCH[1]}
    __po_rest=${BASH_REMATCH[2]}
    # Skip the value (quoted or not) so that a `#` inside quotes is not taken as the comment.
    if [[ $__po_rest =~ ^\"([^\"\\]|\\.)*\"(.*)$ ]]; then
      __po_rest=${BASH_REMATCH[2]}
    elif [[ $__po_rest =~ ^\'[^\']*\'(.*)$ ]]; then
      __po_rest=${BASH_REMATCH[1]}
    elif [[ $__po_rest =~ ^[^[:space:]]*(.*)$ ]]; then
      __po_rest=${BASH_REMATCH[1]}
    fi
    __po_d=
    if [[ $__po_rest =~ ^[[:space:]]*#+[[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]]; then
      __po_d=${BASH_REMATCH[1]}
    fi
    __po_add "$__po_n" "$__po_d"
  done <"$__po_src"
elif [ -n "$__po_src" ]; then
  printf '%s: warning: parse_options.sh cannot read %s to find its options\n' \
    "${0##*/}" "$__po_src" >&2
fi

if [ ${#__po_order[@]} -gt 0 ]; then __po_strict=true; else __po_strict=false; fi

# Boolean options: those whose default (before --config and the command line) is true or false.
__po_bools=" "
for __po_n in ${__po_order[@]+"${__po_order[@]}"}; do
  case ${!__po_n-} in true | false) __po_bools+="$__po_n " ;; esac
done

__po_is_option() {  # name
  if $__po_strict; then
    [[ $__po_names == *" $1 "* ]]
  else
    [ -n "${!1+x}" ]  # Kaldi fallback: any variable that is set
  fi
}

__po_set() {  # as-typed name value
  local opt=$1 name value=$3
  name=${2//-/_}
  if ! [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || ! __po_is_option "$name"; then
    __po_err "unknown option '$opt' (see --help for the list)"
  fi
  if [[ $__po_bools == *" $name "* ]] && [ "$value" != true ] && [ "$value" != false ]; then
    __po_err "option '$opt' takes true or false, got '$value'"
  fi
  printf -v "$name" '%s' "$value"
}

__po_load_config() {  # file
  local file=$1 line n=0 b
  if ! [ -f "$file" ] || ! [ -r "$file" ]; then __po_err "cannot read config file '$file'"; fi
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    if [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)= ]]; then
      __po_is_option "${BASH_REMATCH[2]}" ||
        __po_err "$file:$n: unknown option '${BASH_REMATCH[2]}' (see --help for the list)"
    fi
  done <"$file"
  # shellcheck disable=SC1090
  . "$file" || __po_err "error while sourcing config file '$file'"
  for b in $__po_bools; do
    case ${!b-} in true | false) ;; *) __po_err "$file: option '$b' takes true or false, got '${!b-}'" ;; esac
  done
}

__po_quote() {  # value -> shown as in a config file / command line
  if [[ $1 =~ ^[A-Za-z0-9_./:,+@%=-]+$ ]]; then
    printf '%s' "$1"
  else
    local v=${1//\\/\\\\}
    v=${v//\"/\\\"}
    printf '"%s"' "$v"
  fi
}

__po_print_help() {
  local entry kind name desc shown w=0 rows=() i
  if [ -n "${help_message-}" ]; then
    printf '%s\n' "$help_message"
  else
    printf 'Usage: %s [options] [arguments]\n' "${0##*/}"
  fi
  if ! $__po_strict; then
    printf '\nOptions: --name value sets the variable name (see the script).\n'
    return 0
  fi
  printf '\nOptions (--name value or --name=value; dashes and underscores are the same;\n'
  printf 'the value shown is the current default):\n'
  for entry in "${__po_layout[@]}"; do
    kind=${entry%%"$__po_tab"*}
    if [ "$kind" = o ]; then
      entry=${entry#o"$__po_tab"}
      name=${entry%%"$__po_tab"*}
      shown="--$name=$(__po_quote "${!name-}")"
      [ "${#shown}" -gt "$w" ] && w=${#shown}
    fi
    rows+=("${shown-}")
    shown=
  done
  [ "$w" -gt 36 ] && w=36
  [ "$w" -lt 14 ] && w=14
  i=0
  for entry in "${__po_layout[@]}"; do
    kind=${entry%%"$__po_tab"*}
    entry=${entry#?"$__po_tab"}
    if [ "$kind" = h ]; then
      printf '\n  # %s\n' "$entry"
    else
      name=${entry%%"$__po_tab"*}
      desc=${entry#*"$__po_tab"}
      if [[ $__po_bools == *" $name "* ]]; then desc="${desc:+$desc }(true|false)"; fi
      printf "  %-${w}s  %s\n" "${rows[i]}" "$desc"
    fi
    i=$((i + 1))
  done
  printf '\n'
  printf "  %-${w}s  %s\n" "--config FILE" "source FILE (name=value lines) first; the command line wins"
  printf "  %-${w}s  %s\n" "--help, -h" "print this message and exit"
}

# ---- pass 1: --config files, applied before the other options -------------------------------
__po_i=1
while [ "$__po_i" -le $# ]; do
  __po_a=${!__po_i}
  case $__po_a in
    --) break ;;
    --config=*)
      __po_load_config "${__po_a#--config=}"
      __po_i=$((__po_i + 1))
      ;;
    --config)
      __po_j=$((__po_i + 1))
      [ "$__po_j" -le $# ] || __po_err "option '--config' needs a file name"
      __po_load_config "${!__po_j}"
      __po_i=$((__po_i + 2))
      ;;
    --help | -h | --*=*) __po_i=$((__po_i + 1)) ;;
    --*) __po_i=$((__po_i + 2)) ;;
    *) break ;;
  esac
done

# ---- pass 2: the options themselves, in order --------------------------------------------------
while [ $# -gt 0 ]; do
  case $1 in
    --)
      shift
      break
      ;;
    --help | -h)
      __po_print_help
      exit 0
      ;;
    --config=*) shift ;;
    --config) shift 2 ;;
    --*=*)
      __po_a=${1%%=*}
      __po_set "$__po_a" "${__po_a#--}" "${1#*=}"
      shift
      ;;
    --*)
      [ $# -ge 2 ] || __po_err "option '$1' needs a value"
      __po_set "$1" "${1#--}" "$2"
      shift 2
      ;;
    *) break ;;
  esac
done

opt_names=(${__po_order[@]+"${__po_order[@]}"})

unset -f __po_err __po_add __po_is_option __po_set __po_load_config __po_quote __po_print_help
unset __po_names __po_order __po_layout __po_tab __po_n __po_src __po_in __po_line __po_rest \
  __po_d __po_strict __po_bools __po_i __po_j __po_a
true
