#!/usr/bin/env bash
# Ingest with durable acknowledgement through IngestService/Publish, against
# a raw COPY of the same rows into the same schema (event_keys + events), one
# transaction per batch, same batch size and concurrency, same run.
# Usage (via bench/run): bench/run ingest [EVENTS] [BATCH] [CONCURRENCY] [MODE]
set -euo pipefail
source "$REPLAYD_ROOT/bench/lib.sh"
events=${1:-200000} batch=${2:-500} concurrency=${3:-8} mode=${4:-grpc}
tool=$BUILD_DIR/bin/ingest_bench

# Both paths write into a fresh, migrated database of the same schema; a
# warm-up run first so neither pays for cold caches or partition creation.
# The COPY database gets its schema and today's partitions from a short-lived
# replayd of its own, stopped before measuring.
copy_db=$(bench_database bench_copy)
bench_replayd "$copy_db" "delivery: {enabled: false}"
kill -TERM "$REPLAYD_PID" && wait "$REPLAYD_PID"
dut_db=$(bench_database bench_dut)
bench_replayd "$dut_db" "delivery: {enabled: false}"

addr=$GRPC_ADDR
[ "$mode" = http ] && addr=$HTTP_ADDR

run() {  # run MODE PREFIX N -> events/s
  "$tool" --mode "$1" --address "$addr" --dsn "$copy_db" --events "$3" --batch "$batch" \
    --concurrency "$concurrency" --prefix "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_per_s"])'
}

warm=$((events / 10))
run copy warm "$warm" >/dev/null
run "$mode" warm "$warm" >/dev/null
# Alternate the two paths round by round and report the medians, to damp
# the noise of a shared 2-core machine.
copies=() duts=()
for round in 1 2 3 4 5; do
  c=$(run copy "c$round" "$events")
  d=$(run "$mode" "d$round" "$events")
  echo "round $round: copy $c events/s, $mode $d events/s, ratio $(python3 -c "print(round($d / $c, 3))")" >&2
  copies+=("$c") duts+=("$d")
done
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
best_copy=$(median "${copies[@]}")
best_dut=$(median "${duts[@]}")
name=ingest
[ "$mode" = http ] && name=ingest-http
bench_json "$name" "$best_dut" "events/s" "$best_copy" \
  "{\"events\": $events, \"batch\": $batch, \"concurrency\": $concurrency, \"baseline_is\": \"raw COPY into event_keys+events\", \"statistic\": \"median of 5 alternating rounds\"}"
