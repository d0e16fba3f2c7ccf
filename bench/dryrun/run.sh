#!/usr/bin/env bash
# A dry run over a 1,000,000-event window (one day) in a 10,000,000-event log
# (ten days), against the raw SQL aggregate over the same rows, same run.
# The log is generated with generate_series straight into the schema: four
# sources with per-source sequence numbers (a few holes), 5% failed, ~3%
# pending, 2% already_processed, the rest succeeded.
# Usage (via bench/run): bench/run dryrun [EVENTS_PER_DAY] [DAYS] [ROUNDS]
set -euo pipefail
source "$REPLAYD_ROOT/bench/lib.sh"
per_day=${1:-1000000} days=${2:-10} rounds=${3:-5}

db=$(bench_database bench_dryrun)
bench_replayd "$db" "delivery: {enabled: false}
sinks:
  - {name: down, url: http://127.0.0.1:9/records, replay_rate_budget: 1000}
routes:
  - {name: all, sources: [src0, src1, src2, src3], sink: down}"
# Days today-(days+1) .. today-2: the window must end in the past.
first_day=$(python3 -c "import datetime as d; print((d.date.today() - d.timedelta(days=$days + 1)).isoformat())")
echo "generating $((per_day * days)) events over $days days from $first_day" >&2
start=$(date +%s)
for k in $(seq 0 $((days - 1))); do
  day=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$first_day') + d.timedelta(days=$k)).isoformat())")
  next=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$day') + d.timedelta(days=1)).isoformat())")
  name=$(echo "$day" | tr -d -)
  psql -q "$db" <<SQL >&2
CREATE TABLE IF NOT EXISTS events_p$name PARTITION OF events
  FOR VALUES FROM ('${day}T00:00:00Z') TO ('${next}T00:00:00Z');
CREATE TABLE IF NOT EXISTS delivery_attempts_p$name PARTITION OF delivery_attempts
  FOR VALUES FROM ('${day}T00:00:00Z') TO ('${next}T00:00:00Z');
INSERT INTO events (source, event_id, sequence, ingested_at, processed_at, outcome, attempts, payload)
SELECT 'src' || (i % 4), 'd$k-' || i, $k::bigint * $per_day / 4 + i / 4,
       '${day}T00:00:00Z'::timestamptz + (i::bigint * 86000000 / $per_day) * interval '1 millisecond',
       '${day}T00:00:00Z'::timestamptz + (i::bigint * 86000000 / $per_day) * interval '1 millisecond',
       CASE WHEN i % 20 = 0 THEN 'failed' WHEN i % 33 = 0 THEN 'pending'
            WHEN i % 50 = 1 THEN 'already_processed' ELSE 'succeeded' END,
       1, '{"n": 1}'::jsonb
  FROM generate_series(0, $per_day - 1) i
 WHERE i % 100003 <> 7;
SQL
  echo "  day $day loaded ($(( $(date +%s) - start )) s)" >&2
done
psql -q "$db" -c "VACUUM ANALYZE events" >&2
window_day=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$first_day') + d.timedelta(days=$days // 2)).isoformat())")
window_end=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$window_day') + d.timedelta(days=1)).isoformat())")
result=$("$BUILD_DIR/bin/dryrun_bench" --address "$GRPC_ADDR" --dsn "$db" \
  --from "${window_day}T00:00:00Z" --to "${window_end}T00:00:00Z" --rounds "$rounds")
echo "$result" >&2
dry=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dryrun_s"])')
raw=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sql_s"])')
extra=$(echo "$result" | python3 -c "import json,sys; d=json.load(sys.stdin); d.pop('dryrun_s'); d.pop('sql_s'); d['log_events']=$per_day*$days; d['baseline_is']='SELECT outcome, count(*) over the same window'; d['statistic']='median of $rounds alternating rounds'; d['target']='ratio <= 1.5'; print(json.dumps(d))")
bench_json dryrun "$dry" s "$raw" "$extra"
