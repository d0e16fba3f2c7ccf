#!/usr/bin/env bash
# The replay rate limiter: a replay of RATE*SECONDS pending events at RATE/s,
# for 100/s and 1,000/s, measured from the downstream test server's arrival
# times (achieved rate = (n-1) / (last - first)); also the most arrivals in any
# 100 ms against the burst. Value: the worst rate error in %, against the
# target 1% (ratio <= 1 meets it).
# Usage (via bench/run): bench/run ratelimit [SECONDS] [RATES...]
set -euo pipefail
source "$REPLAYD_ROOT/bench/lib.sh"
seconds=${1:-60}
shift || true
rates=("$@")
[ ${#rates[@]} -eq 0 ] && rates=(100 1000)

bench_downstream --mode idempotent --threads 64
ds=$DS_URL

db=$(bench_database bench_ratelimit)
bench_replayd "$db" "delivery: {enabled: false}
sinks:
  - {name: down, url: $ds/records, replay_rate_budget: 2000}
routes:
  - {name: all, sources: [r100, r1000, r10, r50, r200, r500, r2000], sink: down}"

results=()
for rate in "${rates[@]}"; do
  n=$((rate * seconds))
  # A fifth of a second's worth (at least 20): any 100 ms may hold the rate's
  # own 0.1 s worth plus what a stall lets the bucket save up.
  burst=$(( rate / 5 > 20 ? rate / 5 : 20 ))
  psql -q "$db" -c "INSERT INTO events (source, event_id, ingested_at, next_attempt_at, payload)
    SELECT 'r$rate', 'e' || i, now() - interval '30 minutes' + i * interval '1 microsecond',
           now(), '{\"n\": 1}'::jsonb FROM generate_series(1, $n) i" >&2
  curl -sf -X POST -d "" "$ds/admin/reset" >/dev/null
  echo "replaying $n events at $rate/s (burst $burst)" >&2
  REPLAYCTL_SERVER=$GRPC_ADDR "$BUILD_DIR/bin/replayctl" start --yes --watch -o json \
    --from -1h --to now --source "r$rate" --rate "$rate" --burst "$burst" --allow-high-rate \
    --reason "ratelimit bench" >"$bench_tmp/run-$rate.json" 2>/dev/null
  curl -sf "$ds/admin/requests" >"$bench_tmp/requests-$rate.json"
  r=$(python3 - "$bench_tmp/requests-$rate.json" "$rate" "$n" "$burst" <<'PY'
import json, sys
reqs = json.load(open(sys.argv[1]))
rate, n, burst = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = sorted(r["arrival_us"] for r in reqs)
if len(t) != n:
    sys.exit(f"the replay delivered {len(t)} of {n} events: no rate to report")
achieved = (len(t) - 1) * 1e6 / (t[-1] - t[0])
best, j = 0, 0
for i in range(len(t)):
    while t[i] - t[j] >= 100000:
        j += 1
    best = max(best, i - j + 1)
print(json.dumps({"rate": rate, "events": len(t), "expected_events": n, "achieved": round(achieved, 3),
                  "error_pct": round(abs(achieved - rate) / rate * 100, 3),
                  "max_in_100ms": best, "burst": burst}))
PY
)
  echo "  $r" >&2
  results+=("$r")
done
summary=$(printf '%s\n' "${results[@]}" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
print(json.dumps({"worst": max(r["error_pct"] for r in rows), "runs": rows}))')
worst=$(echo "$summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["worst"])')
extra=$(echo "$summary" | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'runs': d['runs'], 'seconds': $seconds, 'baseline_is': 'the target error, 1%', 'target': 'ratio <= 1 and max_in_100ms <= burst'}))")
bench_json ratelimit "$worst" "% error" 1 "$extra"
