#!/usr/bin/env bash
# Live delivery throughput: events/s replayd delivers to the downstream test
# server answering at once, against that server's own ceiling under wrk
# (tests/tools/downstream/post.lua, same connection count) in the same run.
#
#   bench/run deliver [EVENTS] [KEYS] [WORKERS]
#
# EVENTS are ingested first with delivery disabled; then replayd restarts with
# delivery on and the time from the first to the last recorded attempt
# (delivery_attempts.started_at + duration) gives the rate. CPU time is
# replayd's own (user + system) over the delivery, per delivered event, and
# Postgres's (every process of the bench's cluster) likewise. Beside it, the
# HTTP sink alone (bench/deliver/sink_bench.cc: same events and concurrency,
# no database) shows how much of the ceiling delivery through the sink could
# reach at all on this machine. After it, a Postgres job queue doing the
# same work (bench/deliver/job_queue_bench.cc: the same events, envelope,
# downstream and concurrency; one job per transaction, taken with FOR UPDATE
# SKIP LOCKED) gives the second comparison, `vs_job_queue` in the JSON.
# CLAIM_BATCH (default 512) sets delivery.claim_batch; PAST_DAYS (default 0)
# adds that many empty partitions for the days before today.
set -euo pipefail
events=${1:-50000}
keys=${2:-1000}
workers=${3:-32}
wrk_seconds=${WRK_SECONDS:-5}
source "$REPLAYD_ROOT/bench/lib.sh"

log() { echo "deliver: $*" >&2; }

# The downstream, idempotent, answering at once.
bench_downstream --mode idempotent --threads "$workers"
ds_pid=$DS_PID
ds_url=$DS_URL

# Baseline: the server's ceiling under wrk, same concurrency as replayd's workers.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
log "wrk -t2 -c$workers -d${wrk_seconds}s against the downstream"
ds_ticks0=$(proc_ticks "$ds_pid")
wrk_out=$(wrk -t2 -c"$workers" -d"${wrk_seconds}s" -s "$REPLAYD_ROOT/tests/tools/downstream/post.lua" \
  "$ds_url/records")
echo "$wrk_out" >&2
ceiling=$(echo "$wrk_out" | awk '/^Requests\/sec:/ {print $2}')
wrk_requests=$(echo "$wrk_out" | awk '/requests in/ {print $1}')
ds_wrk_ticks=$(($(proc_ticks "$ds_pid") - ds_ticks0))
# wrk stops on time, not on answers: let the requests still in the server
# finish before its counts are reset.
sleep 0.5
curl -sf -d "" "$ds_url/admin/reset" >/dev/null

# replayd's HTTP sink alone, no database: the most live delivery through it
# could reach on this machine, same events and concurrency.
log "the HTTP sink alone: $events calls, $workers in flight"
sink_out=$("$BUILD_DIR/bin/sink_bench" --url "$ds_url/records" --events "$events" --keys "$keys" \
  --workers "$workers")
echo "$sink_out" >&2
sink_rate=$(echo "$sink_out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls_per_s"])')
sink_cpu_us=$(echo "$sink_out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cpu_us_per_call"])')
curl -sf -d "" "$ds_url/admin/reset" >/dev/null

dsn=$(bench_database bench_deliver)
route_yaml="sinks:
  - {name: downstream, type: http, url: '$ds_url/records', timeout: 10s}
routes:
  - {name: bench, sources: [bench], sink: downstream, retry: {max_attempts: 8, base_delay: 50ms, max_delay: 1s}}"

# Ingest with delivery off.
bench_replayd "$dsn" "$route_yaml
delivery: {enabled: false}"
log "ingesting $events events over $keys keys"
python3 - "$HTTP_ADDR" "$events" "$keys" <<'PY'
import http.client, json, sys
addr, n, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host, port = addr.split(":")
conn = http.client.HTTPConnection(host, int(port))
for start in range(0, n, 1000):
    batch = [{"source": "bench", "event_id": f"b{i}", "key": f"k{i % keys}" if keys else None,
              "sequence": i, "payload": {"n": i, "note": "delivery benchmark"}}
             for i in range(start, min(n, start + 1000))]
    for e in batch:
        if e["key"] is None:
            del e["key"]
    conn.request("POST", "/v1/events", json.dumps({"events": batch}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"ingest failed: {r.status} {body[:200]}")
PY
bench_stop_replayd

# PAST_DAYS=N (default 0): N empty partitions for the days before today, as a
# log that retention keeps N days has. Statements that reach events by
# position cannot be pruned to one partition when they are planned.
if [ "${PAST_DAYS:-0}" -gt 0 ]; then
  psql -q "$dsn" -v days="$PAST_DAYS" <<'SQL'
SELECT format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
              t || '_p' || to_char(d, 'YYYYMMDD'), t, d::text || ' UTC', (d + 1)::text || ' UTC')
  FROM generate_series(1, :days) AS n,
       LATERAL (SELECT (now() AT TIME ZONE 'UTC')::date - n AS d) AS day,
       unnest(ARRAY['events', 'delivery_attempts']) AS t
\gexec
SQL
fi

# Deliver.
log "delivering with $workers workers"
bench_replayd "$dsn" "$route_yaml
delivery: {workers: $workers, claim_batch: ${CLAIM_BATCH:-512}}"
cpu_ticks() { proc_ticks "$REPLAYD_PID"; }
# Postgres's CPU: every process of the bench's own cluster, the postmaster,
# its live children (backends and helpers, so one connection held open for
# the whole phase is not missed) and the children it has reaped (cutime and
# cstime), so connections that come and go between two readings count too.
# That includes the one or two psql backends of the completion check below,
# about 10 ms each.
postmaster=$(head -n 1 "$PG_THROWAWAY_DIR/data/postmaster.pid")
pg_ticks() {
  local total pid
  total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$postmaster/stat")
  for pid in $(pgrep -P "$postmaster"); do
    total=$((total + $(proc_ticks "$pid" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
wal0=$(psql -tA "$dsn" -c "SELECT pg_current_wal_lsn()")
ticks0=$(cpu_ticks)
pg_ticks0=$(pg_ticks)
ds_ticks0=$(proc_ticks "$ds_pid")
# Polled every half second through the downstream's record count, which
# costs next to nothing (a psql started every half second to count over the
# log was 3.9% of perf's samples in the run it measured); the log is checked
# once at the end. The rate comes from the attempts' own timestamps.
ds_records() {
  local n
  n=$(curl -sf "$ds_url/admin/stats" | grep -o '"records":[0-9]*' | cut -d: -f2) || true
  echo "${n:-0}"
}
for _ in $(seq 1200); do
  [ "$(ds_records)" -ge "$events" ] && break
  sleep 0.5
done
# Records of the last events may be committing still.
for _ in $(seq 20); do
  done_count=$(psql -tA "$dsn" -c "SELECT count(*) FROM events WHERE outcome IN ('succeeded', 'already_processed')")
  [ "$done_count" -ge "$events" ] && break
  sleep 0.5
done
ticks1=$(cpu_ticks)
pg_ticks1=$(pg_ticks)
ds_ticks1=$(proc_ticks "$ds_pid")
wal_bytes=$(psql -tA "$dsn" -c "SELECT pg_current_wal_lsn() - '$wal0'::pg_lsn")
[ "$done_count" -ge "$events" ] || { echo "only $done_count of $events delivered" >&2; exit 1; }
read -r seconds attempts < <(psql -tA -F' ' "$dsn" -c \
  "SELECT extract(epoch FROM max(started_at + duration_ms * interval '1 millisecond') - min(started_at)),
          count(*) FROM delivery_attempts")
created=$(ds_records)

# Second baseline: a Postgres job queue doing the same work, on the
# same events, downstream and concurrency (bench/deliver/job_queue_bench.cc).
bench_stop_replayd
curl -sf -d "" "$ds_url/admin/reset" >/dev/null
psql -q "$dsn" <<'SQL'
CREATE TABLE job_queue (LIKE events INCLUDING DEFAULTS);
ALTER TABLE job_queue ADD PRIMARY KEY (position);
INSERT INTO job_queue (position, source, event_id, sequence, key, type, occurred_at,
                       ingested_at, next_attempt_at, payload)
SELECT position, source, event_id, sequence, key, type, occurred_at, ingested_at,
       next_attempt_at, payload
  FROM events;
CREATE INDEX job_queue_pending ON job_queue (position) WHERE outcome = 'pending';
CREATE TABLE job_attempts (
    position    bigint NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    duration_ms double precision NOT NULL,
    http_status integer,
    outcome     text NOT NULL,
    PRIMARY KEY (position, attempt));
VACUUM ANALYZE job_queue;
SQL
log "the Postgres job queue: $workers workers"
jq_pg_ticks0=$(pg_ticks)
jq_out=$("$BUILD_DIR/bin/job_queue_bench" --database-url "$dsn" --url "$ds_url/records" \
  --workers "$workers")
jq_pg_ticks=$(($(pg_ticks) - jq_pg_ticks0))
echo "$jq_out" >&2
jq_rate=$(echo "$jq_out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs_per_s"])')
jq_cpu_us=$(echo "$jq_out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cpu_us_per_job"])')
jq_done=$(psql -tA "$dsn" -c "SELECT count(*) FROM job_queue WHERE outcome = 'succeeded'")
[ "$jq_done" -eq "$events" ] || { echo "the job queue delivered $jq_done of $events" >&2; exit 1; }

hz=$(getconf CLK_TCK)
rate=$(python3 -c "print($events / $seconds)")
jq_pg_cpu_us=$(python3 -c "print(round($jq_pg_ticks / $hz * 1e6 / $events, 1))")
vs_job_queue=$(python3 -c "print(round($rate / $jq_rate, 2))")
cpu_us=$(python3 -c "print(round(($ticks1 - $ticks0) / $hz * 1e6 / $events, 1))")
pg_cpu_us=$(python3 -c "print(round(($pg_ticks1 - $pg_ticks0) / $hz * 1e6 / $events, 1))")
# The downstream's own CPU per request, under wrk and under replayd: the
# two runs share it, so the rest of each run's CPU is the client's side.
ds_cpu_us=$(python3 -c "print(round(($ds_ticks1 - $ds_ticks0) / $hz * 1e6 / $events, 1))")
ds_wrk_cpu_us=$(python3 -c "print(round($ds_wrk_ticks / $hz * 1e6 / $wrk_requests, 1))")
wal_per_event=$(python3 -c "print(round($wal_bytes / $events))")
sink_ratio=$(python3 -c "print(round($sink_rate / $ceiling, 3))")
log "the HTTP sink alone: $sink_rate calls/s = $sink_ratio of the ceiling, ${sink_cpu_us} us CPU per call"
log "the Postgres job queue: $jq_rate jobs/s, CPU per job: the tool ${jq_cpu_us} us, postgres ${jq_pg_cpu_us} us; replayd delivers ${vs_job_queue}x as fast"
log "delivered $events events ($attempts attempts, downstream records: $created) in ${seconds}s = $rate events/s; downstream ceiling $ceiling req/s; CPU per event: replayd ${cpu_us} us, postgres ${pg_cpu_us} us, downstream ${ds_cpu_us} us (${ds_wrk_cpu_us} us per request under wrk); WAL ${wal_per_event} bytes per event"
bench_json deliver "$rate" events/s "$ceiling" \
  "{\"cpu_us_per_event\": $cpu_us, \"pg_cpu_us_per_event\": $pg_cpu_us, \"downstream_cpu_us_per_event\": $ds_cpu_us, \"downstream_cpu_us_per_wrk_request\": $ds_wrk_cpu_us, \"wal_bytes_per_event\": $wal_per_event, \"sink_alone_per_s\": $sink_rate, \"sink_alone_ratio\": $sink_ratio, \"sink_alone_cpu_us_per_call\": $sink_cpu_us, \"job_queue_per_s\": $jq_rate, \"vs_job_queue\": $vs_job_queue, \"job_queue_cpu_us_per_job\": $jq_cpu_us, \"job_queue_pg_cpu_us_per_job\": $jq_pg_cpu_us, \"events\": $events, \"keys\": $keys, \"workers\": $workers, \"attempts\": $attempts}"
