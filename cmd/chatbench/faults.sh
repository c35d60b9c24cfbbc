#!/usr/bin/env bash
# The fault test with real processes, run by .ci/run after the test suite and never beside
# it: it restarts PostgreSQL, which would break the test packages' own databases.
#
# Builds chatd and chatbench; `chatbench -mode faults` (cmd/chatbench/faults.go) then starts
# two chatd instances on loopback ports over a scratch database, kills one with SIGKILL and
# restarts PostgreSQL while clients post and stream, and checks that no acknowledged
# message was lost or duplicated. Exit status: 0 pass, 1 a check failed, 2 setup failed,
# 124 out of time. Needs PostgreSQL on 127.0.0.1:5432 as a Debian cluster (pg_ctlcluster)
# and the right to restart it. Extra arguments go to chatbench (e.g. -phases kill).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"
work=$(mktemp -d /tmp/chatd-faults.XXXXXX)
pgctl="pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n 1) main"
status=2

# chatbench cleans up after itself; this covers a chatbench that could not (out of time).
cleanup() {
  if [ -f "$work/pids" ]; then
    while read -r pid; do
      if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$work/chatd" ]; then kill -9 "$pid" || true; fi
    done <"$work/pids"
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then $pgctl start || true; fi
  if [ -f "$work/database" ]; then
    psql -h 127.0.0.1 -d postgres -qc "DROP DATABASE IF EXISTS \"$(cat "$work/database")\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "faults: chatd logs kept in $work"; fi
}
trap cleanup EXIT

go build -o "$work/chatd" ./cmd/chatd
go build -o "$work/chatbench" ./cmd/chatbench
set +e
timeout -k 10 80 "$work/chatbench" -mode faults -chatd "$work/chatd" -work-dir "$work" -pg-ctl "$pgctl" \
  -streams 40 -rate 200 -clients 16 -timeout 60s "$@"
status=$?
set -e
exit "$status"
