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
bench_log_replayd "$db"
bench_generate_log "$db" "$days" "$per_day"
bench_log_window "$days"
result=$("$BUILD_DIR/bin/dryrun_bench" --address "$GRPC_ADDR" --dsn "$db" \
  --from "$window_from" --to "$window_to" --rounds "$rounds")
echo "$result" >&2
dry=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dryrun_s"])')
raw=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sql_s"])')
extra=$(echo "$result" | python3 -c "import json,sys; d=json.load(sys.stdin); d.pop('dryrun_s'); d.pop('sql_s'); d['log_events']=$per_day*$days; d['baseline_is']='SELECT outcome, count(*) over the same window'; d['statistic']='median of $rounds alternating rounds'; d['target']='ratio <= 1.5'; print(json.dumps(d))")
bench_json dryrun "$dry" s "$raw" "$extra"
