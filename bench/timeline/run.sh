#!/usr/bin/env bash
# The timeline of one day in a 10,000,000-event log (ten days), through
# InspectionService/GetTimeline (replayctl timeline -o json), against the raw
# SQL aggregate over the same rows (counts per 30-minute bucket, source and
# outcome, timed on a warm psql backend), same run, alternating rounds,
# medians. Only the product side pays a process start and a connection per
# round. The log is generated with
# generate_series straight into the schema: four sources with per-source
# sequence numbers (a few holes), 5% failed, ~3% pending, 2%
# already_processed, the rest succeeded.
# Usage (via bench/run): bench/run timeline [EVENTS_PER_DAY] [DAYS] [ROUNDS]
set -euo pipefail
source "$REPLAYD_ROOT/bench/lib.sh"
per_day=${1:-1000000} days=${2:-10} rounds=${3:-7}

db=$(bench_database bench_timeline)
bench_replayd "$db" "delivery: {enabled: false}"
bench_generate_log "$db" "$days" "$per_day"
day=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$first_day') + d.timedelta(days=$days // 2)).isoformat())")
next=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$day') + d.timedelta(days=1)).isoformat())")
from="${day}T00:00:00Z" to="${next}T00:00:00Z"

raw_sql="SELECT date_bin(interval '1800 seconds', ingested_at, timestamptz 'epoch') AS bucket,
                source, outcome, count(*)
           FROM events
          WHERE ingested_at >= '$from' AND ingested_at < '$to'
          GROUP BY 1, 2, 3"
ms_now() { date +%s%N | cut -c1-13; }
# The baseline: the same aggregate on a warm backend (run twice in one psql
# session; psql's \timing of the second run: query and result transfer, no
# process start, connection or cold catalog caches). The product side pays
# all of those: a replayctl process, its gRPC connection, replayd, Postgres.
raw_sql_ms() {
  psql -qAt "$db" -c '\timing on' -c "$raw_sql" -c "$raw_sql" |
    awk '/^Time: / {t = $2} END {printf "%d\n", t + 0.5}'
}
timeline_ms=() sql_ms=()
check=""
for r in $(seq 0 "$rounds"); do
  # Alternate which side runs first.
  if [ $((r % 2)) -eq 1 ]; then raw_first=$(raw_sql_ms); fi
  t0=$(ms_now)
  out=$("$BUILD_DIR/bin/replayctl" -s "$GRPC_ADDR" timeline --from "$from" --to "$to" -o json)
  t1=$(ms_now)
  if [ $((r % 2)) -eq 1 ]; then raw=$raw_first; else raw=$(raw_sql_ms); fi
  if [ "$r" -eq 0 ]; then  # warm-up round, and the two must agree
    check=$(echo "$out" | python3 -c "
import json, sys
t = json.load(sys.stdin)
assert t['bucket_seconds'] == '1800', t['bucket_seconds']
print(len(t['buckets']), t['totals']['total'])")
    total=$(psql -qAt "$db" -c "SELECT count(*) FROM events WHERE ingested_at >= '$from' AND ingested_at < '$to'")
    [ "${check#* }" = "$total" ] || { echo "timeline total ${check#* } != $total" >&2; exit 1; }
    rows=$(psql -qAt "$db" -c "$raw_sql" | wc -l)
    echo "  timeline: $check (buckets x sources, events); raw SQL rows: $rows" >&2
    continue
  fi
  timeline_ms+=($((t1 - t0)))
  sql_ms+=("$raw")
  echo "  round $r: timeline $((t1 - t0)) ms, raw SQL $raw ms" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
tl=$(median "${timeline_ms[@]}")
raw=$(median "${sql_ms[@]}")
# The median of the per-round ratios too: load from other work on the machine
# moves both sides of a round together.
ratios=()
for i in "${!timeline_ms[@]}"; do
  ratios+=("$(python3 -c "print(${timeline_ms[$i]} / max(1, ${sql_ms[$i]}))")")
done
round_ratio=$(median "${ratios[@]}")
bench_json timeline "$tl" ms "$raw" "{\"round_ratio_median\": $round_ratio, \"log_events\": $((per_day * days)), \"window_events\": ${check#* }, \"bucket_seconds\": 1800, \"baseline_is\": \"SELECT date_bin(30 min), source, outcome, count(*) over the same day on a warm psql backend (server-side query time as psql times it)\", \"statistic\": \"median of $rounds alternating rounds after one warm-up\", \"target\": \"ratio <= 1.5\"}"
