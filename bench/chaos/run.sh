#!/usr/bin/env bash
# The chaos soak: two replayd replicas on one Postgres, a publisher that never
# pauses (bench/chaos/publisher.py, acknowledged ids recorded), live delivery
# to the downstream test server (non-idempotent, so a second create of a key
# is a duplicate record; lookup URL configured; it drops the answer after
# committing for DROP_PERCENT of creates), and a replay, started with
# replayctl, over a window of failed events. Then CYCLES cycles: at a random
# moment kill -9 a random replica, restart it after a random pause; every
# 10th cycle also restarts Postgres. At the end the publisher stops, delivery
# settles, and bench/chaos/check.py counts acknowledged events missing from
# the log (lost), keys the downstream created twice (duplicates), delivered
# events the downstream has no record of, events left undelivered, and the
# replays' end states. Last line: {"bench":"chaos","cycles","acked","lost",
# "duplicates",...}; exit 1 when any check fails.
#
#   bench/run chaos [CYCLES=50]
#
# Environment: RATE (events/s, default 100), DROP_PERCENT (default 5), SEED
# (default random; the same seed gives the same kill schedule), CLAIM_LEASE
# (delivery.claim_lease, default 60s, the daemon's default), SETTLE_TIMEOUT
# (seconds, default 300), LOOKUP=off (no lookup URL: the check-then-act
# cannot find what a dropped answer or a kill left unrecorded, so the soak
# should report duplicates), BENCH_KEEP_LOGS=DIR (keeps the replicas' logs).
set -euo pipefail
cycles=${1:-50}
rate=${RATE:-100}
drop_percent=${DROP_PERCENT:-5}
seed=${SEED:-$(( $(date +%s) % 100000 ))}
claim_lease=${CLAIM_LEASE:-60s}
settle_timeout=${SETTLE_TIMEOUT:-300}
lookup=${LOOKUP:-on}
source "$REPLAYD_ROOT/bench/lib.sh"
RANDOM=$seed
export PGCONNECT_TIMEOUT=10

log() { echo "chaos: $(date -u +%H:%M:%S) $*" >&2; }
# A random number of milliseconds in [LOW, HIGH].
random_ms() { echo $(( $1 + (RANDOM * 32768 + RANDOM) % ($2 - $1 + 1) )); }
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
forget_pid() {
  local kept=() pid
  for pid in "${bench_pids[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
  bench_pids=("${kept[@]}")
}

log "seed $seed, $cycles cycles, $rate events/s, $drop_percent% of answers dropped after commit, lookup $lookup"
bench_downstream --mode non-idempotent --threads 256 --seed "$seed"
db=$(bench_database bench_chaos)
replayctl=$BUILD_DIR/bin/replayctl

# Fixed ports (below the ephemeral range) so that a restarted replica comes
# back where the publisher and replayctl expect it.
read -r -a ports <<<"$(python3 - <<'PY'
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
found = []
for port in random.sample(range(15000, lo), 400):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        found.append(port)
    except OSError:
        pass
    finally:
        s.close()
    if len(found) == 4:
        break
print(*found)
PY
)"
grpc=("127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}")
http=("127.0.0.1:${ports[2]}" "127.0.0.1:${ports[3]}")
lookup_yaml=", lookup_url: '$DS_URL/records/{idempotency_key}'"
[ "$lookup" = on ] || lookup_yaml=
replica_pid=(0 0)
for i in 0 1; do
  cat >"$bench_tmp/replica-$i.yaml" <<YAML
grpc_listen: ${grpc[$i]}
http_listen: ${http[$i]}
log_level: warn
port_file: $bench_tmp/ports-$i
delivery: {claim_lease: $claim_lease}
sinks:
  - {name: downstream, type: http, url: '$DS_URL/records', timeout: 5s$lookup_yaml}
routes:
  - {name: chaos, sources: [chaos], sink: downstream,
     retry: {max_attempts: 10, base_delay: 100ms, max_delay: 2s}}
YAML
done

# start_replica I: starts replica I and waits until it listens; a start that
# fails (Postgres still coming back) is tried again, at most 5 times.
start_replica() {
  local i=$1 try
  for try in 1 2 3 4 5; do
    rm -f "$bench_tmp/ports-$i"
    "$BUILD_DIR/bin/replayd" --config "$bench_tmp/replica-$i.yaml" --database-url "$db" \
      2>>"$bench_tmp/replica-$i.log" &
    replica_pid[$i]=$!
    bench_pids+=("${replica_pid[$i]}")
    for _ in $(seq 300); do
      [ -s "$bench_tmp/ports-$i" ] && return 0
      kill -0 "${replica_pid[$i]}" 2>/dev/null || break
      sleep 0.1
    done
    log "replica $i did not start (try $try)"
    kill -KILL "${replica_pid[$i]}" 2>/dev/null || true
    wait "${replica_pid[$i]}" 2>/dev/null || true
    forget_pid "${replica_pid[$i]}"
    sleep 1
  done
  tail -n 20 "$bench_tmp/replica-$i.log" >&2
  echo "replica $i could not be started" >&2
  exit 1
}

kill_replica() {
  local i=$1
  kill -KILL "${replica_pid[$i]}"
  wait "${replica_pid[$i]}" 2>/dev/null || true
  forget_pid "${replica_pid[$i]}"
}

start_replica 0
start_replica 1
log "replicas: gRPC ${grpc[*]}, HTTP ${http[*]}; downstream $DS_URL"

# Failed events for the replay: the downstream refuses every create with 422
# (not retried) while the publisher runs for a few seconds.
window_from=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1
curl -sf --max-time 10 -X POST "$DS_URL/admin/faults" -d '{"status": 422}' >/dev/null
python3 "$REPLAYD_ROOT/bench/chaos/publisher.py" --targets "${http[0]},${http[1]}" \
  --acked "$bench_tmp/acked.txt" --rate "$rate" --max-seconds $((cycles * 30 + 600)) >"$bench_tmp/publisher.json" &
publisher_pid=$!
bench_pids+=("$publisher_pid")
sleep 5
curl -sf --max-time 10 -X DELETE "$DS_URL/admin/faults" >/dev/null
sleep 2
window_to=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1
failed=$(psql -tA "$db" -c "SELECT count(*) FROM events WHERE outcome = 'failed'")
log "$failed events failed in [$window_from, $window_to)"

# The replay should run through the cycles (about 3 s each): sending takes
# 1.5 s a cycle, and each kill of its owner stalls it for the replay lease.
replay_rate=$(python3 -c "print(max(0.5, round($failed / ($cycles * 1.5), 1)))")
REPLAYCTL_SERVER=${grpc[0]} timeout 120 "$replayctl" start --yes -o json --from "$window_from" \
  --to "$window_to" --source chaos --rate "$replay_rate" --reason "chaos soak" \
  >"$bench_tmp/replay-start.json" 2>>"$bench_tmp/replayctl.log"
replay_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["replay_id"])' \
  "$bench_tmp/replay-start.json")
log "replay $replay_id started at $replay_rate/s"

curl -sf --max-time 10 -X POST "$DS_URL/admin/faults" -d "{\"commit_then_drop\": true, \"percent\": $drop_percent}" \
  >/dev/null
started=$(date +%s)
pg_restarts=0
: >"$bench_tmp/cycles.jsonl"
for cycle in $(seq "$cycles"); do
  sleep_ms "$(random_ms 500 3000)"
  victim=$((RANDOM % 2))
  killed_pid=${replica_pid[$victim]}
  kill_replica "$victim"
  killed_at=$(date -u +%H:%M:%S.%N)
  sleep_ms "$(random_ms 0 1500)"
  pg=false
  if [ $((cycle % 10)) -eq 0 ]; then
    bash "$REPLAYD_ROOT/deploy/local/pg-throwaway" restart "$PG_THROWAWAY_DIR"
    pg_restarts=$((pg_restarts + 1))
    pg=true
  fi
  start_replica "$victim"
  log "cycle $cycle: killed replica $victim (pid $killed_pid) at ${killed_at:0:12}, restarted$($pg && echo ', Postgres restarted')"
  printf '{"cycle":%d,"victim":%d,"pid":%d,"killed_at":"%s","pg_restart":%s}\n' \
    "$cycle" "$victim" "$killed_pid" "${killed_at:0:12}" "$pg" >>"$bench_tmp/cycles.jsonl"
done
chaos_seconds=$(( $(date +%s) - started ))

kill -TERM "$publisher_pid"
wait "$publisher_pid" || true
forget_pid "$publisher_pid"
log "publisher: $(cat "$bench_tmp/publisher.json")"

# Settle: every event delivered or failed, and the replay ended. A replica
# killed in the last cycles holds its claims until their lease expires.
settle_started=$(date +%s)
settled=false
while [ $(( $(date +%s) - settle_started )) -lt "$settle_timeout" ]; do
  open=$(psql -tA "$db" -c "SELECT count(*) FROM events WHERE outcome IN ('pending', 'retrying')")
  active=$(psql -tA "$db" -c "SELECT count(*) FROM replays WHERE state IN ('pending', 'running', 'cancelling')")
  if [ "$open" = 0 ] && [ "$active" = 0 ]; then
    settled=true
    break
  fi
  log "settling: $open events undelivered, $active replays active"
  sleep 5
done
settle_seconds=$(( $(date +%s) - settle_started ))
log "settled=$settled after $settle_seconds s"

REPLAYCTL_SERVER=${grpc[0]} timeout 120 "$replayctl" list -o json --limit 100 >"$bench_tmp/replays.json" \
  2>>"$bench_tmp/replayctl.log"
curl -sf --max-time 10 "$DS_URL/admin/stats" >"$bench_tmp/downstream-stats.json"
curl -sf --max-time 60 "$DS_URL/admin/requests" >"$bench_tmp/downstream-requests.json"
rc=0
python3 "$REPLAYD_ROOT/bench/chaos/check.py" --dsn "$db" --dir "$bench_tmp" --cycles "$cycles" \
  --pg-restarts "$pg_restarts" --chaos-seconds "$chaos_seconds" --settled "$settled" \
  --settle-seconds "$settle_seconds" --seed "$seed" --replay-rate "$replay_rate" \
  --live-from "$window_to" --lookup "$lookup" || rc=$?
exit "$rc"
