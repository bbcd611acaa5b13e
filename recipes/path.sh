# shellcheck shell=bash
# path.sh: the environment of every recipe (sourced). egs/<corpus>/path.sh is a symbolic link
# to this file (or a one-line file sourcing it); either way the repository is found from this
# file's real location, not from the working directory.
#
# Puts on PATH: recipes/utils (runners, parse_options.sh, stage.sh) and the repository's .venv/bin
# when there is one. Exports PYTHONUNBUFFERED=1 (logs appear as they are written), LC_ALL=C (sort
# and join agree with Kaldi's data-dir order), TOKENIZERS_PARALLELISM=false unless already set,
# and SPEECHDISTILL_ROOT. It leaves the Hugging Face settings (HF_HUB_OFFLINE, HF_HOME, ...)
# to the user: real recipes download teachers and corpora from the Hub.

# Resolve symbolic links to this file by hand (no `readlink -f` on older macOS).
__sd_src=${BASH_SOURCE[0]}
while [ -L "$__sd_src" ]; do
  __sd_dir=$(cd -P "$(dirname "$__sd_src")" && pwd)
  __sd_src=$(readlink "$__sd_src")
  case $__sd_src in /*) ;; *) __sd_src=$__sd_dir/$__sd_src ;; esac
done
__sd_recipes=$(cd -P "$(dirname "$__sd_src")" && pwd)
SPEECHDISTILL_ROOT=$(dirname "$__sd_recipes")
export SPEECHDISTILL_ROOT

__sd_prepend() {  # DIR: put DIR first on PATH unless it is already there
  case ":$PATH:" in
    *":$1:"*) ;;
    *) PATH=$1${PATH:+:$PATH} ;;
  esac
}
if [ -x "$SPEECHDISTILL_ROOT/.venv/bin/python" ]; then
  __sd_prepend "$SPEECHDISTILL_ROOT/.venv/bin"
fi
__sd_prepend "$__sd_recipes/utils"
export PATH
unset -f __sd_prepend
unset __sd_src __sd_dir __sd_recipes

export PYTHONUNBUFFERED=1
export LC_ALL=C
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
