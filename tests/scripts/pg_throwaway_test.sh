#!/usr/bin/env bash
# Smoke test for deploy/local/pg-throwaway:
#   start -> query -> stop-server -> start-server (same port, data kept) -> query
#   -> stop (directory removed), plus `run` exit-status/env propagation.
# Exits non-zero on failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGT=${PG_THROWAWAY:-$here/../../deploy/local/pg-throwaway}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PSQL=$PG_BIN/psql
[[ -x "$PSQL" ]] || PSQL=psql

dir=$(mktemp -u /tmp/pg-throwaway-test.XXXXXX)
cleanup() {
  if [[ -d "$dir" ]]; then "$PGT" stop "$dir" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$PSQL" "$dsn" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

dsn=$("$PGT" start "$dir")
[[ "$dsn" =~ ^postgresql://postgres@127\.0\.0\.1:([0-9]+)/postgres$ ]] || fail "bad DSN: $dsn"
port=${BASH_REMATCH[1]}
[[ "$(cat "$dir/dsn")" == "$dsn" ]] || fail "$dir/dsn does not match stdout"

[[ "$(q 'show fsync')" == on ]] || fail "fsync is not on"
[[ "$(q 'show max_connections')" == 200 ]] || fail "max_connections is not 200"
q 'create table t (v int); insert into t values (42)'
[[ "$(q 'select v from t')" == 42 ]] || fail "first query"

"$PGT" stop-server "$dir"
if q 'select 1' >/dev/null 2>&1; then fail "server still answers after stop-server"; fi

"$PGT" start-server "$dir"
[[ "$(q 'select inet_server_port()')" == "$port" ]] || fail "port changed after start-server"
[[ "$(q 'select v from t')" == 42 ]] || fail "data lost after start-server"

"$PGT" restart "$dir"
[[ "$(q 'select count(*) from t')" == 1 ]] || fail "query after restart"

"$PGT" stop "$dir"
[[ ! -e "$dir" ]] || fail "$dir still exists after stop"
if q 'select 1' >/dev/null 2>&1; then fail "server still answers after stop"; fi

# run: env is exported, CMD's exit status is returned, the cluster is removed.
rc=0
# shellcheck disable=SC2016  # expanded by the inner bash
out=$("$PGT" run -- bash -c '
  [[ "$REPLAYD_DATABASE_URL" == "$REPLAYD_TEST_DSN" && -d "$PG_THROWAWAY_DIR" ]] || exit 90
  echo "$PG_THROWAWAY_DIR"
  "$0" "$REPLAYD_TEST_DSN" -X -At -c "select 7" || exit 91
  exit 3' "$PSQL") || rc=$?
[[ $rc == 3 ]] || fail "run returned $rc, expected 3 (output: $out)"
run_dir=$(head -n 1 <<<"$out")
[[ "$(sed -n 2p <<<"$out")" == 7 ]] || fail "query inside run: $out"
[[ -n "$run_dir" && ! -e "$run_dir" ]] || fail "run left $run_dir behind"

echo "pg_throwaway_test: OK"
