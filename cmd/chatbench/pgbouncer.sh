#!/usr/bin/env bash
# Throughput through PgBouncer (README, Performance): two chatd instances whose pools go
# through a PgBouncer in transaction mode (default_query_exec_mode=exec), listeners direct,
# and chatbench's load with pgbench's single-row INSERT in the same run. Not run by CI.
# RATE (default 800 msgs/s) and DURATION (10s) set the load; results go to $OUT. DIRECT=1
# runs the same with the pools straight to PostgreSQL, for comparison.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"
out=${OUT:-bench-out/pgbouncer}
mkdir -p "$out"
go build -o "$out/chatd" ./cmd/chatd
go build -o "$out/chatbench" ./cmd/chatbench
name=chatd_pgb_$RANDOM$RANDOM
direct="postgres://127.0.0.1:5432/$name?sslmode=disable"
dir=$(mktemp -d) && chmod 755 "$dir"
port=$((20000 + RANDOM % 20000))
cat >"$dir/pgbouncer.ini" <<INI
[databases]
$name = host=127.0.0.1 port=5432 dbname=$name
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = 40
max_client_conn = 500
server_login_retry = 1
INI
echo "\"$(id -un)\" \"\"" >"$dir/users.txt"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql -h 127.0.0.1 -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" postgres >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
user=(); [ "$(id -u)" = 0 ] && user=(-u postgres) # PgBouncer refuses to run as root
pgbouncer "${user[@]}" "$dir/pgbouncer.ini" >"$dir/log" 2>&1 & pids+=($!)
export CHAT_JWT_SECRET=bench-secret-$RANDOM$RANDOM CHAT_METRICS_TOKEN=bench-metrics-$RANDOM
CHAT_DATABASE_URL="$direct" "$out/chatd" migrate
pooled="postgres://127.0.0.1:$port/$name?sslmode=disable&default_query_exec_mode=exec"
[ "${DIRECT:-0}" = 1 ] && pooled=$direct
urls=()
for p in 18301 18302; do
  CHAT_ADDR=127.0.0.1:$p CHAT_DATABASE_URL="$pooled" CHAT_LISTEN_DATABASE_URL="$direct" \
    CHAT_RATE_LIMIT=0 CHAT_READ_RATE_LIMIT=0 "$out/chatd" serve >"$out/chatd-$p.log" 2>&1 & pids+=($!)
  urls+=("http://127.0.0.1:$p")
done
for u in "${urls[@]}"; do
  for _ in $(seq 1 50); do curl -fs "$u/readyz" >/dev/null && break; sleep 0.2; done
done
"$out/chatbench" -url "$(IFS=,; echo "${urls[*]}")" -db "$direct" -pgbench -clients 8 \
  -streams 200 -rate "${RATE:-800}" -duration "${DURATION:-10s}" -json "$out/load.json" | tee "$out/load.txt"
