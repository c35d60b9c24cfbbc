#!/usr/bin/env bash
# Runs the performance budgets of README.md on this machine: builds chatd and chatbench,
# starts one instance on a fresh database, and runs the throughput (with pgbench in the
# same run), latency-at-half-rate, idle-streams and resume-storm scenarios. Results go to
# ./bench-out (tables, JSON, plots). Needs PostgreSQL on 127.0.0.1:5432 and pgbench.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-bench-out}
mkdir -p "$out"
db=${DB:-postgres://127.0.0.1:5432/chatd_bench?sslmode=disable}
export CHAT_JWT_SECRET=${CHAT_JWT_SECRET:-bench-secret-$RANDOM$RANDOM}
export CHAT_METRICS_TOKEN=${CHAT_METRICS_TOKEN:-bench-metrics-$RANDOM$RANDOM} # chatd and chatbench alike
go build -o "$out/chatd" ./cmd/chatd
go build -o "$out/chatbench" ./cmd/chatbench
psql "${db/chatd_bench/postgres}" -qc "DROP DATABASE IF EXISTS chatd_bench" >/dev/null
CHAT_DATABASE_URL="$db" "$out/chatd" migrate
CHAT_ADDR=127.0.0.1:18200 CHAT_DATABASE_URL="$db" CHAT_RATE_LIMIT=0 "$out/chatd" serve >"$out/chatd.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 1 50); do curl -fs http://127.0.0.1:18200/readyz >/dev/null && break; sleep 0.2; done
bench() { "$out/chatbench" -url http://127.0.0.1:18200 -db "$db" "$@"; }

rate=${RATE:-6000}
bench -mode load -streams 200 -rate "$rate" -duration 10s -clients 64 -pgbench -pgbench-clients 64 \
  -json "$out/throughput.json" -plot "$out/throughput.png" | tee "$out/throughput.txt"
half=$(python3 -c "import json;print(int(json.load(open('$out/throughput.json'))['load']['achieved_msgs_per_s']/2))")
bench -mode load -streams 200 -rate "$half" -duration 10s -clients 64 \
  -json "$out/half-rate.json" -plot "$out/half-rate.png" | tee "$out/half-rate.txt"
bench -mode idle -streams 15000 -idle-for 60s -heartbeat 15s \
  -json "$out/idle.json" -plot "$out/idle.png" | tee "$out/idle.txt"
bench -mode storm -streams 5000 -missed 20 \
  -json "$out/storm.json" -plot "$out/storm.png" | tee "$out/storm.txt"
