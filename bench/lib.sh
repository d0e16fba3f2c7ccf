# Helpers for bench/*/run.sh: a scratch database, a replayd on it, cleanup.
# Needs BUILD_DIR, REPLAYD_TEST_DSN (set by bench/run) and REPLAYD_ROOT.

bench_tmp=$(mktemp -d)
bench_pids=()
bench_cleanup() {
  for pid in "${bench_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${bench_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # BENCH_KEEP_LOGS=DIR keeps replayd's log (REPLAYD_LOG_LEVEL=debug adds the
  # dispatcher's pipeline summaries).
  if [ -n "${BENCH_KEEP_LOGS:-}" ]; then
    mkdir -p "$BENCH_KEEP_LOGS" && cp "$bench_tmp"/*.log "$BENCH_KEEP_LOGS"/ 2>/dev/null || true
  fi
  rm -rf "$bench_tmp"
}
trap bench_cleanup EXIT

# bench_database NAME: creates a fresh database on the throwaway cluster and
# prints its DSN (migrations are applied by replayd or `replayd migrate`).
bench_database() {
  psql -q "$REPLAYD_TEST_DSN" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
  echo "${REPLAYD_TEST_DSN%/*}/$1"
}

# bench_replayd DSN [EXTRA_YAML]: starts replayd, waits until it listens, and
# sets GRPC_ADDR, HTTP_ADDR and REPLAYD_PID.
bench_replayd() {
  local dsn=$1 extra=${2:-}
  local config=$bench_tmp/replayd-$RANDOM.yaml ports=$bench_tmp/ports-$RANDOM
  printf 'grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\nlog_level: warn\nport_file: %s\n%s\n' \
    "$ports" "$extra" >"$config"
  "$BUILD_DIR/bin/replayd" --config "$config" --database-url "$dsn" 2>>"$bench_tmp/replayd.log" &
  REPLAYD_PID=$!
  bench_pids+=("$REPLAYD_PID")
  for _ in $(seq 300); do [ -s "$ports" ] && break; sleep 0.1; done
  [ -s "$ports" ] || { cat "$bench_tmp/replayd.log" >&2; echo "replayd did not start" >&2; exit 1; }
  GRPC_ADDR=127.0.0.1:$(sed -n 's/^grpc=//p' "$ports")
  HTTP_ADDR=127.0.0.1:$(sed -n 's/^http=//p' "$ports")
}

# bench_stop_replayd: SIGTERM to the replayd bench_replayd started, waits for
# it, and drops it from the cleanup list.
bench_stop_replayd() {
  kill -TERM "$REPLAYD_PID" 2>/dev/null || true
  wait "$REPLAYD_PID" 2>/dev/null || true
  local kept=() pid
  for pid in "${bench_pids[@]}"; do [ "$pid" = "$REPLAYD_PID" ] || kept+=("$pid"); done
  bench_pids=("${kept[@]}")
}

# bench_downstream [ARGS...]: starts the downstream test server on a free
# loopback port with ARGS, waits until it listens, and sets DS_URL and DS_PID.
bench_downstream() {
  local ports=$bench_tmp/downstream-$RANDOM.port
  "$BUILD_DIR/bin/downstream_server" --listen 127.0.0.1:0 --port-file "$ports" "$@" \
    >>"$bench_tmp/downstream.log" 2>&1 &
  DS_PID=$!
  bench_pids+=("$DS_PID")
  for _ in $(seq 100); do [ -s "$ports" ] && break; sleep 0.1; done
  [ -s "$ports" ] || { cat "$bench_tmp/downstream.log" >&2; echo "downstream did not start" >&2; exit 1; }
  DS_URL=http://127.0.0.1:$(grep -o '[0-9]*' "$ports" | tail -1)
}

# bench_json NAME VALUE UNIT BASELINE [EXTRA_JSON_FIELDS]: the final line.
bench_json() {
  python3 - "$@" <<'PY'
import json, sys
name, value, unit, baseline = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
out = {"bench": name, "value": round(value, 3), "unit": unit, "baseline": round(baseline, 3),
       "ratio": round(value / baseline, 3) if baseline else None}
if len(sys.argv) > 5:
    out.update(json.loads(sys.argv[5]))
print(json.dumps(out))
PY
}

# bench_generate_log DSN DAYS PER_DAY: a synthetic log written straight into the
# schema with generate_series: DAYS days ending the day before yesterday (so
# that windows end in the past), PER_DAY events a day over sources src0..src3,
# 5% failed, about 3% pending, 2% already_processed, the rest succeeded, with
# upstream sequence numbers and a few holes. Sets first_day (YYYY-MM-DD).
bench_generate_log() {
  local db=$1 days=$2 per_day=$3 k day next name start
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
}

# bench_log_window DAYS: the window the log benchmarks read, the middle day of
# the log bench_generate_log wrote. Sets window_from and window_to (RFC 3339).
bench_log_window() {
  local day
  day=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$first_day') + d.timedelta(days=$1 // 2)).isoformat())")
  window_from=${day}T00:00:00Z
  window_to=$(python3 -c "import datetime as d; print((d.date.fromisoformat('$day') + d.timedelta(days=1)).isoformat())")T00:00:00Z
}

# bench_log_replayd DSN: bench_replayd for a generated log: delivery off, one
# route for its sources (to a sink nothing listens on).
bench_log_replayd() {
  bench_replayd "$1" "delivery: {enabled: false}
sinks:
  - {name: down, url: http://127.0.0.1:9/records, replay_rate_budget: 1000}
routes:
  - {name: all, sources: [src0, src1, src2, src3], sink: down}"
}

# bench_ctl ARGS...: replayctl against the replayd bench_replayd started.
bench_ctl() { REPLAYCTL_SERVER=$GRPC_ADDR "$BUILD_DIR/bin/replayctl" --timeout 600 "$@"; }

# bench_median VALUES...: the median (the upper one of an even count).
bench_median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# --- replay memory ---------------------------------------------------------
# bench_memory_setup NAME SMALL LARGE: the downstream test server (idempotent),
# database NAME with replayd's schema and today's partitions, and in
# memory_config a configuration that replays sources mSMALL and mLARGE to it
# at an unlimited rate with delivery off. Sets memory_db and memory_ds.
bench_memory_setup() {
  bench_downstream --mode idempotent --threads 64
  memory_ds=$DS_URL
  memory_db=$(bench_database "$1")
  memory_config="delivery: {enabled: false}
database_pool_size: 48
sinks:
  - {name: down, url: $memory_ds/records, replay_rate_budget: 10000000}
routes:
  - {name: all, sources: [m$2, m$3], sink: down}
replay: {default_rate: 50, high_rate_threshold: 10000000, max_rate: 10000000}"
  # A short-lived daemon, stopped before measuring.
  bench_replayd "$memory_db" "$memory_config"
  bench_stop_replayd
}

# bench_memory_events N: N pending events of source mN over the last half
# hour, keyed over 1,000 entities.
bench_memory_events() {
  psql -q "$memory_db" -c "INSERT INTO events (source, event_id, key, ingested_at, next_attempt_at, payload)
    SELECT 'm$1', 'e' || i, 'k' || (i % 1000), now() - interval '30 minutes' + i * interval '1 microsecond',
           now(), '{\"order\": {\"id\": 1, \"lines\": [1, 2, 3]}}'::jsonb
      FROM generate_series(1, $1) i" >&2
}

# bench_memory_peak N ARGS...: a fresh replayd (so that VmHWM is this replay's
# peak) runs `replayctl start ARGS` at an unlimited rate to its end against a
# reset downstream. Prints "peak_kb seconds delivered". Call it in the
# benchmark's shell, not a command substitution: the replayd it starts must
# be on that shell's cleanup list if the run fails.
bench_memory_peak() {
  local n=$1 start end peak secs delivered
  shift
  curl -sf -X POST -d "" "$memory_ds/admin/reset" >/dev/null
  bench_replayd "$memory_db" "$memory_config"
  start=$(date +%s.%N)
  bench_ctl start --yes --watch -o json --rate 10000000 --allow-high-rate "$@" \
    >"$bench_tmp/run-$n.json" 2>/dev/null
  end=$(date +%s.%N)
  peak=$(awk '/VmHWM/ {print $2}' "/proc/$REPLAYD_PID/status")
  bench_stop_replayd
  secs=$(python3 -c "print(round($end - $start, 1))")
  delivered=$(python3 -c "import json; print(json.loads(open('$bench_tmp/run-$n.json').read().splitlines()[-1])['delivered'])")
  echo "  $n events: delivered $delivered, peak RSS $peak kB, $secs s" >&2
  echo "$peak $secs $delivered"
}
