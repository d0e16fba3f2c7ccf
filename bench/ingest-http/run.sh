#!/usr/bin/env bash
# Ingest through HTTP POST /v1/events, against the same raw COPY baseline.
set -euo pipefail
exec bash "$REPLAYD_ROOT/bench/ingest/run.sh" "${1:-200000}" "${2:-500}" "${3:-8}" http
