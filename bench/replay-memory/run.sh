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

bench_memory_setup bench_replay_memory "$small" "$large"
peak_for() {  # peak_for N -> "peak_kb seconds delivered"
  bench_memory_events "$1"
  bench_memory_peak "$1" --from -1h --to now --source "m$1" --reason "replay-memory bench"
}
# In this shell, not a process substitution: the replayd each run starts must
# be on this shell's cleanup list if the run fails.
peak_for "$small" >"$bench_tmp/small.out"
peak_for "$large" >"$bench_tmp/large.out"
read -r small_kb small_s small_delivered <"$bench_tmp/small.out"
read -r large_kb large_s large_delivered <"$bench_tmp/large.out"
bench_json replay-memory "$(python3 -c "print($large_kb / 1024)")" MiB "$(python3 -c "print($small_kb / 1024)")" \
  "{\"small_events\": $small, \"large_events\": $large, \"small_seconds\": $small_s, \"large_seconds\": $large_s, \"small_delivered\": $small_delivered, \"large_delivered\": $large_delivered, \"baseline_is\": \"peak RSS replaying the small window\", \"target\": \"ratio <= 1.10\"}"
