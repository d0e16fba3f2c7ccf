#!/usr/bin/env bash
# Peak RSS of replayd replaying 100,000 and then 1,000,000 pending events at
# an unlimited rate (a fresh daemon for each, so VmHWM is that replay's peak).
# A replay streams its window in keyset pages, so the peak should not grow
# with the window. Value: the 1,000,000-event peak; baseline: the
# 100,000-event peak; target ratio <= 1.10.
# Usage (via bench/run): bench/run replay-memory [SMALL] [LARGE]
set -euo pipefail
source "$REPLAYD_ROOT/bench/lib.sh"
small=${1:-100000} large=${2:-1000000}

bench_downstream --mode idempotent --threads 64
ds=$DS_URL
db=$(bench_database bench_replay_memory)
config="delivery: {enabled: false}
database_pool_size: 48
sinks:
  - {name: down, url: $ds/records, replay_rate_budget: 10000000}
routes:
  - {name: all, sources: [m$small, m$large], sink: down}
replay: {default_rate: 50, high_rate_threshold: 10000000, max_rate: 10000000}"

# Schema and today's partitions from a short-lived daemon, stopped before measuring.
bench_replayd "$db" "$config"
bench_stop_replayd

peak_for() {  # peak_for N -> "peak_kb seconds delivered"
  local n=$1
  psql -q "$db" -c "INSERT INTO events (source, event_id, key, ingested_at, next_attempt_at, payload)
    SELECT 'm$n', 'e' || i, 'k' || (i % 1000), now() - interval '30 minutes' + i * interval '1 microsecond',
           now(), '{\"order\": {\"id\": 1, \"lines\": [1, 2, 3]}}'::jsonb
      FROM generate_series(1, $n) i" >&2
  curl -sf -X POST -d "" "$ds/admin/reset" >/dev/null
  bench_replayd "$db" "$config"
  local start=$(date +%s.%N)
  REPLAYCTL_SERVER=$GRPC_ADDR "$BUILD_DIR/bin/replayctl" start --yes --watch -o json \
    --from -1h --to now --source "m$n" --rate 10000000 --allow-high-rate \
    --reason "replay-memory bench" >"$bench_tmp/run-$n.json" 2>/dev/null
  local end=$(date +%s.%N)
  local peak=$(awk '/VmHWM/ {print $2}' "/proc/$REPLAYD_PID/status")
  bench_stop_replayd
  local delivered=$(python3 -c "import json; print(json.loads(open('$bench_tmp/run-$n.json').read().splitlines()[-1])['delivered'])")
  echo "  $n events: delivered $delivered, peak RSS $peak kB, $(python3 -c "print(round($end - $start, 1))") s" >&2
  echo "$peak $(python3 -c "print(round($end - $start, 1))") $delivered"
}

# In this shell, not a process substitution: the replayd each run starts must
# be on this shell's cleanup list if the run fails.
peak_for "$small" >"$bench_tmp/small.out"
peak_for "$large" >"$bench_tmp/large.out"
read -r small_kb small_s small_delivered <"$bench_tmp/small.out"
read -r large_kb large_s large_delivered <"$bench_tmp/large.out"
bench_json replay-memory "$(python3 -c "print($large_kb / 1024)")" MiB "$(python3 -c "print($small_kb / 1024)")" \
  "{\"small_events\": $small, \"large_events\": $large, \"small_seconds\": $small_s, \"large_seconds\": $large_s, \"small_delivered\": $small_delivered, \"large_delivered\": $large_delivered, \"baseline_is\": \"peak RSS replaying the small window\", \"target\": \"ratio <= 1.10\"}"
