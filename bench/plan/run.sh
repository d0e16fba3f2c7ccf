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
ctl() { REPLAYCTL_SERVER=$GRPC_ADDR "$BUILD_DIR/bin/replayctl" --timeout 600 "$@"; }

# --- save against dry run -------------------------------------------------
db=$(bench_database bench_plan)
bench_replayd "$db" "delivery: {enabled: false}
sinks:
  - {name: down, url: http://127.0.0.1:9/records, replay_rate_budget: 1000}
routes:
  - {name: all, sources: [src0, src1, src2, src3], sink: down}"
bench_generate_log "$db" "$days" "$per_day"
window_day=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$first_day') + d.timedelta(days=$days // 2)).isoformat())")
window_end=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$window_day') + d.timedelta(days=1)).isoformat())")
window=(--from "${window_day}T00:00:00Z" --to "${window_end}T00:00:00Z" --reason "plan bench" -o json)

timed() {  # timed ARGS... -> seconds of one replayctl call; its output in $bench_tmp/last.json
  local start end
  start=$(date +%s.%N)
  ctl "$@" >"$bench_tmp/last.json"
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
chunks=$(psql -tA "$db" -c "SELECT count(*) FROM replay_plan_events WHERE plan_id = '$plan_id'")
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
dry=$(median "${dry_s[@]}") save=$(median "${save_s[@]}")
echo "  dry run ${dry_s[*]} s; save ${save_s[*]} s; plan of $planned events in $chunks chunks" >&2
bench_stop_replayd

# --- replay memory: a plan of SMALL against a plan of LARGE events --------
bench_downstream --mode idempotent --threads 64
ds=$DS_URL
mdb=$(bench_database bench_plan_memory)
config="delivery: {enabled: false}
database_pool_size: 48
sinks:
  - {name: down, url: $ds/records, replay_rate_budget: 10000000}
routes:
  - {name: all, sources: [m$small, m$large], sink: down}
replay: {default_rate: 50, high_rate_threshold: 10000000, max_rate: 10000000}"
bench_replayd "$mdb" "$config"
bench_stop_replayd

peak_for() {  # peak_for N -> "peak_kb seconds delivered"
  local n=$1 id
  psql -q "$mdb" -c "INSERT INTO events (source, event_id, key, ingested_at, next_attempt_at, payload)
    SELECT 'm$n', 'e' || i, 'k' || (i % 1000), now() - interval '30 minutes' + i * interval '1 microsecond',
           now(), '{\"order\": {\"id\": 1, \"lines\": [1, 2, 3]}}'::jsonb
      FROM generate_series(1, $n) i" >&2
  bench_replayd "$mdb" "$config"
  id=$(ctl dry-run --save-plan --from -1h --to now --source "m$n" -o json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["plan_id"])')
  bench_stop_replayd
  curl -sf -X POST -d "" "$ds/admin/reset" >/dev/null
  bench_replayd "$mdb" "$config"
  local start=$(date +%s.%N)
  ctl start --plan "$id" --yes --watch -o json --rate 10000000 --allow-high-rate \
    --reason "plan memory bench" >"$bench_tmp/run-$n.json" 2>/dev/null
  local end=$(date +%s.%N)
  local peak=$(awk '/VmHWM/ {print $2}' "/proc/$REPLAYD_PID/status")
  bench_stop_replayd
  local delivered=$(python3 -c "import json; print(json.loads(open('$bench_tmp/run-$n.json').read().splitlines()[-1])['delivered'])")
  echo "  plan of $n events: delivered $delivered, peak RSS $peak kB, $(python3 -c "print(round($end - $start, 1))") s" >&2
  echo "$peak $(python3 -c "print(round($end - $start, 1))") $delivered"
}
# In this shell: the replayd each run starts must be on its cleanup list.
peak_for "$small" >"$bench_tmp/small.out"
peak_for "$large" >"$bench_tmp/large.out"
read -r small_kb small_secs small_delivered <"$bench_tmp/small.out"
read -r large_kb large_secs large_delivered <"$bench_tmp/large.out"

extra=$(python3 -c "import json; print(json.dumps({
  'log_events': $per_day * $days, 'plan_events': $planned, 'plan_chunks': $chunks,
  'baseline_is': 'dry run of the same window, same run', 'statistic': 'median of $rounds alternating rounds',
  'target': 'ratio <= 2',
  'memory_small_events': $small, 'memory_large_events': $large,
  'memory_small_mib': round($small_kb / 1024, 1), 'memory_large_mib': round($large_kb / 1024, 1),
  'memory_ratio': round($large_kb / $small_kb, 3), 'memory_target': 'memory_ratio <= 1.10',
  'memory_small_delivered': $small_delivered, 'memory_large_delivered': $large_delivered,
  'memory_small_seconds': $small_secs, 'memory_large_seconds': $large_secs}))")
bench_json plan "$save" s "$dry" "$extra"
