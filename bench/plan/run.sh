#!/usr/bin/env bash
# Saved plans. Save: `dry-run --save-plan` over a 1,000,000-event window (one
# day) of a 10,000,000-event log against the plain dry run of the same window,
# alternating after a warm-up, medians (value: the save; baseline: the dry
# run; target ratio <= 2). Memory: peak RSS of replayd replaying a plan of
# 100,000 and then of 1,000,000 pending events at an unlimited rate, a fresh
# daemon for each (target ratio <= 1.10). The last line is the save's JSON
# with the memory figures in it.
# Usage (via bench/run): bench/run plan [EVENTS_PER_DAY] [DAYS] [ROUNDS] [SMALL] [LARGE]
set -euo pipefail
source "$REPLAYD_ROOT/bench/lib.sh"
per_day=${1:-1000000} days=${2:-10} rounds=${3:-5} small=${4:-100000} large=${5:-1000000}

# --- save against dry run -------------------------------------------------
db=$(bench_database bench_plan)
bench_log_replayd "$db"
bench_generate_log "$db" "$days" "$per_day"
bench_log_window "$days"
window=(--from "$window_from" --to "$window_to" --reason "plan bench" -o json)

timed() {  # timed ARGS... -> seconds of one replayctl call; its output in $bench_tmp/last.json
  local start end
  start=$(date +%s.%N)
  bench_ctl "$@" >"$bench_tmp/last.json"
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}
timed dry-run "${window[@]}" >/dev/null
timed dry-run --save-plan "${window[@]}" >/dev/null
dry_s=() save_s=()
for _ in $(seq "$rounds"); do
  dry_s+=("$(timed dry-run "${window[@]}")")
  save_s+=("$(timed dry-run --save-plan "${window[@]}")")
done
plan_id=$(python3 -c "import json; print(json.load(open('$bench_tmp/last.json'))['plan_id'])")
planned=$(python3 -c "import json; print(json.load(open('$bench_tmp/last.json'))['total'])")
chunks=$(psql -tA "$db" -c "SELECT count(DISTINCT chunk) FROM replay_plan_events WHERE plan_id = '$plan_id'")
rows=$(psql -tA "$db" -c "SELECT count(*) FROM replay_plan_events WHERE plan_id = '$plan_id'")
dry=$(bench_median "${dry_s[@]}") save=$(bench_median "${save_s[@]}")
echo "  dry run ${dry_s[*]} s; save ${save_s[*]} s; plan of $planned events in $chunks chunks ($rows rows)" >&2
bench_stop_replayd

# --- replay memory: a plan of SMALL against a plan of LARGE events --------
bench_memory_setup bench_plan_memory "$small" "$large"
peak_for() {  # peak_for N -> "peak_kb seconds delivered"; the plan saved by another daemon
  local n=$1 id
  bench_memory_events "$n"
  bench_replayd "$memory_db" "$memory_config"
  id=$(bench_ctl dry-run --save-plan --from -1h --to now --source "m$n" -o json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["plan_id"])')
  bench_stop_replayd
  bench_memory_peak "$n" --plan "$id" --reason "plan memory bench"
}
peak_for "$small" >"$bench_tmp/small.out"
peak_for "$large" >"$bench_tmp/large.out"
read -r small_kb small_secs small_delivered <"$bench_tmp/small.out"
read -r large_kb large_secs large_delivered <"$bench_tmp/large.out"

extra=$(python3 -c "import json; print(json.dumps({
  'log_events': $per_day * $days, 'plan_events': $planned, 'plan_chunks': $chunks, 'plan_rows': $rows,
  'baseline_is': 'dry run of the same window, same run', 'statistic': 'median of $rounds alternating rounds',
  'target': 'ratio <= 2',
  'memory_small_events': $small, 'memory_large_events': $large,
  'memory_small_mib': round($small_kb / 1024, 1), 'memory_large_mib': round($large_kb / 1024, 1),
  'memory_ratio': round($large_kb / $small_kb, 3), 'memory_target': 'memory_ratio <= 1.10',
  'memory_small_delivered': $small_delivered, 'memory_large_delivered': $large_delivered,
  'memory_small_seconds': $small_secs, 'memory_large_seconds': $large_secs}))")
bench_json plan "$save" s "$dry" "$extra"
