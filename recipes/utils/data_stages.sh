#!/usr/bin/env bash
# data_stages.sh: the data stages every recipe shares (sourced after stage.sh).
#
#   prepare_data   local/data.sh ${local_data_opts} -> data/<set>/, each set validated
#   format_data    pipes/segments -> 16 kHz mono WAVs in dump/<set>/; the duration limits apply
#                  to the train and dev sets only; unreadable training audio is skipped (count
#                  and list logged) while test sets stay strict; ${format_opts} go to every set
#
# Both read ${all_sets}, ${train_set} and ${valid_set}; format_data also ${min_duration},
# ${max_duration} and ${format_opts}. Since recipes call them with the same .done markers, two
# recipes run from one egs/<corpus>/ share data/ and dump/.
# shellcheck disable=SC2154 # the variables are the calling recipe's options

prepare_data() {
  [ -x local/data.sh ] || die "local/data.sh not found or not executable in $(pwd)"
  # shellcheck disable=SC2086 # local_data_opts is a list of options
  local/data.sh ${local_data_opts}
  local s
  for s in ${all_sets}; do
    speechdistill data validate --no-text "data/${s}"
  done
}

format_data() {
  local s limits
  for s in ${all_sets}; do
    limits=()
    if [ "${s}" = "${train_set}" ] || [ "${s}" = "${valid_set}" ]; then
      limits=(--min-duration "${min_duration}" --max-duration "${max_duration}")
    fi
    [ "${s}" = "${train_set}" ] && limits+=(--skip-bad)
    # shellcheck disable=SC2086 # format_opts is a list of options
    speechdistill format "data/${s}" "dump/${s}" --audio-dir "dump/wav/${s}" "${limits[@]}" \
      ${format_opts}
    speechdistill data validate --no-text "dump/${s}"
  done
}
