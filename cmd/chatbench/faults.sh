#!/usr/bin/env bash
# The fault test with real processes, run by .ci/run after the test suite and never beside
# it: it restarts PostgreSQL, which would break the test packages' own databases.
#
# Builds chatd and chatbench; `chatbench -mode faults` (cmd/chatbench/faults.go) then starts
# two chatd instances on loopback ports over a scratch database, kills the one reading the
# log with SIGKILL, stops the next one reading it with SIGTERM (a rolling deploy's stop) and
# restarts PostgreSQL while clients post and stream, and checks that no acknowledged
# message was lost or duplicated. Exit status: 0 pass, 1 a check failed, 2 setup failed,
# 124 out of time. Needs PostgreSQL on 127.0.0.1:5432 as a Debian cluster (pg_ctlcluster)
# and the right to restart it. Extra arguments go to chatbench (e.g. -phases kill).
#
# With --pgbouncer first, the same run goes through a PgBouncer (Debian's pgbouncer) in
# transaction mode that this script starts in front of PostgreSQL: the instances' pools
# connect through it (chatbench -pgbouncer), their listeners directly, as the README's
# "Through PgBouncer" says. PostgreSQL restarts behind the running pooler.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"
work=$(mktemp -d /tmp/chatd-faults.XXXXXX)
pgctl="pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n 1) main"
status=2
pooler=() # chatbench's -pgbouncer flag, with --pgbouncer
with_pgbouncer=
if [ "${1:-}" = "--pgbouncer" ]; then
  shift
  with_pgbouncer=1
fi

# chatbench cleans up after itself; this covers a chatbench that could not (out of time).
cleanup() {
  if [ -f "$work/pids" ]; then
    while read -r pid; do
      if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$work/chatd" ]; then kill -9 "$pid" || true; fi
    done <"$work/pids"
  fi
  if [ -f "$work/pgbouncer.pid" ]; then kill -9 "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true; fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then $pgctl start || true; fi
  if [ -f "$work/database" ]; then
    psql -h 127.0.0.1 -d postgres -qc "DROP DATABASE IF EXISTS \"$(cat "$work/database")\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "faults: chatd logs kept in $work"; fi
}
trap cleanup EXIT

go build -o "$work/chatd" ./cmd/chatd
go build -o "$work/chatbench" ./cmd/chatbench

# PgBouncer in transaction mode with the README's settings, serving every database of the
# local server (the scratch database's name is chatbench's), on a free loopback port.
if [ -n "$with_pgbouncer" ]; then
  command -v pgbouncer >/dev/null || { echo "faults: pgbouncer is not installed (apt-get install -y pgbouncer)"; exit 2; }
  listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  port=
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    if ! listening "$p"; then port=$p; break; fi
  done
  [ -n "$port" ] || { echo "faults: no free port for PgBouncer"; exit 2; }
  chmod 755 "$work" # PgBouncer reads its files as postgres when started as root
  printf '"%s" ""\n' "$(id -un)" >"$work/pgbouncer-users.txt"
  printf '%s\n' '[databases]' '* = host=127.0.0.1 port=5432' '[pgbouncer]' \
    'listen_addr = 127.0.0.1' "listen_port = $port" 'unix_socket_dir =' \
    'pool_mode = transaction' 'auth_type = trust' "auth_file = $work/pgbouncer-users.txt" \
    'default_pool_size = 20' 'server_login_retry = 1' >"$work/pgbouncer.ini"
  as_user=()
  if [ "$(id -u)" -eq 0 ]; then as_user=(-u postgres); fi # PgBouncer refuses to run as root
  pgbouncer "${as_user[@]}" "$work/pgbouncer.ini" >"$work/pgbouncer.log" 2>&1 &
  echo $! >"$work/pgbouncer.pid"
  disown # cleanup kills it: no "Killed" notice from the shell
  for _ in $(seq 1 100); do listening "$port" && break; sleep 0.1; done
  listening "$port" || { echo "faults: PgBouncer did not listen"; cat "$work/pgbouncer.log"; exit 2; }
  pooler=(-pgbouncer "127.0.0.1:$port")
fi

set +e
timeout -k 10 80 "$work/chatbench" -mode faults -chatd "$work/chatd" -work-dir "$work" -pg-ctl "$pgctl" \
  -streams 40 -rate 200 -clients 16 -timeout 60s "${pooler[@]}" "$@"
status=$?
set -e
exit "$status"
