#!/usr/bin/env bash
# The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven
# by playwright-core): after a scripted outage the suggested window covers it
# and its copied dry-run command is right; after the replay the same page
# shows the window closed. Screenshots go to $OUT_DIR (default ./output).
#
# Env: BUILD_DIR (default <repo>/build) with replayd, replayctl,
# downstream_server and demo_upstream built; REPLAYD_TEST_DSN (a throwaway
# cluster; when unset, one is started with deploy/local/pg-throwaway).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$ROOT/build}
export OUT_DIR=${OUT_DIR:-$HERE/output}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [[ -z "${REPLAYD_TEST_DSN:-}" ]]; then
  exec bash "$ROOT/deploy/local/pg-throwaway" run -- bash "${BASH_SOURCE[0]}" "$@"
fi
for bin in replayd replayctl downstream_server demo_upstream; do
  [[ -x "$BUILD_DIR/bin/$bin" ]] || { echo "run.sh: $BUILD_DIR/bin/$bin is not built" >&2; exit 2; }
done
[[ -x "$CHROMIUM" ]] || { echo "run.sh: $CHROMIUM missing (apt-get install chromium)" >&2; exit 2; }
if [[ ! -d "$HERE/node_modules/playwright-core" ]]; then
  (cd "$HERE" && npm ci --no-audit --no-fund >/dev/null)
fi

# A scratch database of our own on the cluster, dropped at the end.
DB="browser_$$_$RANDOM"
BASE=${REPLAYD_TEST_DSN%%\?*}
QUERY=${REPLAYD_TEST_DSN#"$BASE"}
export DASHBOARD_DSN="${BASE%/*}/$DB$QUERY"
psql "$REPLAYD_TEST_DSN" -qc "CREATE DATABASE $DB" >/dev/null
trap 'psql "$REPLAYD_TEST_DSN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
mkdir -p "$OUT_DIR"
node "$HERE/dashboard.test.mjs"
