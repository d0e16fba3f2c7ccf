#!/usr/bin/env bash
# Diff. Speed: `replayctl diff` of SMALL (100,000) delivered events against the
# downstream test server at an unlimited rate, against the same lookups
# (GET of each event's lookup URL) made by a plain client, curl --parallel
# with the diff's concurrency, alternating after a warm-up, medians (value:
# the diff's events/s; baseline: the client's lookups/s). Memory: peak RSS of
# a fresh replayd diffing SMALL and then LARGE (1,000,000) events (target
# ratio <= 1.10). The last line is the speed's JSON with the memory figures.
# Usage (via bench/run): bench/run diff [SMALL] [LARGE] [ROUNDS] [CONCURRENCY]
set -euo pipefail
source "$REPLAYD_ROOT/bench/lib.sh"
small=${1:-100000} large=${2:-1000000} rounds=${3:-3} concurrency=${4:-64}
ctl() { REPLAYCTL_SERVER=$GRPC_ADDR "$BUILD_DIR/bin/replayctl" --timeout 3600 "$@"; }

bench_downstream --mode idempotent --threads $((concurrency * 2))
ds=$DS_URL
db=$(bench_database bench_diff)
memory_db=$db  # where bench_memory_events writes
limits="replay: {default_rate: 50, high_rate_threshold: 10000000, max_rate: 10000000}"
# Live delivery fills the downstream (no lookup: every event is new there);
# the diffs run on a daemon of their own with delivery off.
deliver_config="delivery: {enabled: true, poll_interval: 20ms}
database_pool_size: 48
sinks:
  - {name: down, url: $ds/records}
routes:
  - {name: all, sources: [m$small, m$large], sink: down}
$limits"
diff_config="delivery: {enabled: false}
database_pool_size: 48
sinks:
  - {name: down, url: $ds/records, lookup_url: '$ds/records/{idempotency_key}',
     max_in_flight: $concurrency, replay_rate_budget: 10000000}
routes:
  - {name: all, sources: [m$small, m$large], sink: down}
$limits"

# deliver N: N events of source mN, delivered by live delivery.
deliver() {
  local n=$1 start
  bench_replayd "$db" "$deliver_config"
  start=$(date +%s)
  bench_memory_events "$n"
  local delivered="SELECT count(*) FROM events WHERE source = 'm$n' AND outcome = 'succeeded'"
  until [ "$(psql -tA "$db" -c "$delivered")" = "$n" ]; do sleep 1; done
  bench_stop_replayd
  echo "  $n events delivered in $(( $(date +%s) - start )) s" >&2
}

# timed_diff N -> seconds of one `replayctl diff --watch` of source mN; its
# last progress line in $bench_tmp/diff.json.
timed_diff() {
  local n=$1 start end
  start=$(date +%s.%N)
  ctl diff --from -2h --to now --source "m$n" --rate 10000000 --allow-high-rate --watch -o json |
    tail -n 1 >"$bench_tmp/diff.json"
  end=$(date +%s.%N)
  python3 - "$bench_tmp/diff.json" "$n" <<'PY' >&2
import json, sys
p = json.load(open(sys.argv[1]))
assert p["state"] == "REPLAY_COMPLETED", p
assert int(p["processed"]) == int(sys.argv[2]), p
PY
  python3 -c "print($end - $start)"
}

# timed_lookups N -> seconds of curl making the lookup of each event of mN.
seq 1 "$small" | awk -v u="$ds/records/m$small:e" \
  '{print "url = \"" u $1 "\"\noutput = /dev/null"}' >"$bench_tmp/lookups.curl"
timed_lookups() {
  local start end
  start=$(date +%s.%N)
  curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max "$concurrency" \
    -K "$bench_tmp/lookups.curl"
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}

peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$REPLAYD_PID/status"; }

deliver "$small"
bench_replayd "$db" "$diff_config"
first_s=$(timed_diff "$small")
small_kb=$(peak_kb)
echo "  diff of $small events: $first_s s, peak RSS $small_kb kB" >&2
# The warm-up checks that the client made every lookup (the downstream counts them).
lookups() { curl -sf "$ds/admin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lookups"])'; }
before=$(lookups)
timed_lookups >/dev/null
made=$(($(lookups) - before))
[ "$made" = "$small" ] || { echo "curl made $made lookups, not $small" >&2; exit 1; }
diff_s=() lookup_s=()
for _ in $(seq "$rounds"); do
  diff_s+=("$(timed_diff "$small")")
  lookup_s+=("$(timed_lookups)")
done
bench_stop_replayd
diff_med=$(bench_median "${diff_s[@]}") lookup_med=$(bench_median "${lookup_s[@]}")
echo "  diff ${diff_s[*]} s; lookups alone ${lookup_s[*]} s" >&2

deliver "$large"
bench_replayd "$db" "$diff_config"
large_s=$(timed_diff "$large")
large_kb=$(peak_kb)
bench_stop_replayd
echo "  diff of $large events: $large_s s, peak RSS $large_kb kB" >&2

extra=$(python3 -c "import json; print(json.dumps({
  'events': $small, 'concurrency': $concurrency, 'diff_s': $diff_med, 'lookups_s': $lookup_med,
  'baseline_is': 'curl --parallel-max $concurrency making the same lookups, same run',
  'statistic': 'median of $rounds alternating rounds',
  'memory_small_events': $small, 'memory_large_events': $large,
  'memory_small_mib': round($small_kb / 1024, 1), 'memory_large_mib': round($large_kb / 1024, 1),
  'memory_ratio': round($large_kb / $small_kb, 3), 'memory_target': 'memory_ratio <= 1.10',
  'memory_small_seconds': round($first_s, 1), 'memory_large_seconds': round($large_s, 1)}))")
bench_json diff "$(python3 -c "print($small / $diff_med)")" events/s \
  "$(python3 -c "print($small / $lookup_med)")" "$extra"
