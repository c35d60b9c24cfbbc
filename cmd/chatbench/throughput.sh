#!/usr/bin/env bash
# Issue 9's measurement (README, Performance): the highest open-loop rate chatd holds with
# every recipient's stream on another instance, against pgbench's single-row INSERT of the
# same run. Not run by CI.
#
# Builds chatd and chatbench, migrates a scratch database, starts INSTANCES (2) chatd
# instances on loopback ports without rate limits, runs the pgbench reference once
# (-M prepared -c 8 -j 2 -T 10, 100-byte body), then offers each of RATES in turn (100
# pairs, 100-byte bodies, DURATION each, CLIENTS POSTs in flight at most) and stops after
# the first rate not held: held = at least 99 % of the scheduled messages reached their
# recipient and the recipients' delivery p99 is at most 1 s (chatbench judges it: .load.held
# in each run's JSON). Every run also measures its cost (-pg-cost): CPU of each instance and
# of PostgreSQL, and PostgreSQL's transactions, rows and (when pg_stat_statements is loaded)
# statements per 1,000 messages.
#
# IDLE_STREAMS=15000 then holds that many idle streams on the same instances for IDLE_FOR
# (30s): the server's memory per idle stream, the issue's last row.
#
# INSTANCES_LIST="1 2 4 8" runs instead one RATE (600 msgs/s) per instance count, each
# on fresh instances over the same database, POOL_TOTAL (40) pool connections shared out.
#
# CHATD=<binary> measures that chatd instead of building this checkout's (before/after).
#
# PGPORT (5432) names another PostgreSQL on 127.0.0.1, e.g. one that preloads
# pg_stat_statements. Results in $OUT (bench-out/throughput): one .txt/.json/.log per run,
# summary.md, summary.json and summary.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"
out=${OUT:-bench-out/throughput}
rates=${RATES:-500 1000 1500 2000 3000 4000 5000 6000 8000}
duration=${DURATION:-10s}
clients=${CLIENTS:-512}
streams=${STREAMS:-200}
settle=${SETTLE:-11s}
pool_total=${POOL_TOTAL:-40}
export PGPORT=${PGPORT:-5432} # psql's, and the scratch database's URL
mkdir -p "$out"
rm -f "$out"/run-*.json "$out"/run-*.txt "$out"/run-*.log "$out"/summary.* "$out"/rows.jsonl "$out"/idle.*
if [ -n "${CHATD:-}" ]; then # another chatd, e.g. an earlier commit's, for a before/after
  cp "$CHATD" "$out/chatd"
else
  go build -o "$out/chatd" ./cmd/chatd
fi
go build -o "$out/chatbench" ./cmd/chatbench
name=chatd_tp_$RANDOM$RANDOM
db="postgres://127.0.0.1:$PGPORT/$name?sslmode=disable"
pids=()
stop_instances() {
  [ ${#pids[@]} -eq 0 ] && return
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}
cleanup() {
  stop_instances
  psql -h 127.0.0.1 -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" postgres >/dev/null 2>&1 || true
}
trap cleanup EXIT
export CHAT_JWT_SECRET=bench-secret-$RANDOM$RANDOM CHAT_METRICS_TOKEN=bench-metrics-$RANDOM
CHAT_DATABASE_URL="$db" "$out/chatd" migrate
# pg_stat_statements counts statements only when the server preloads it; then the view is
# created in the scratch database for chatbench to read.
if [[ "$(psql -h 127.0.0.1 -Atc 'SHOW shared_preload_libraries' postgres)" == *pg_stat_statements* ]]; then
  psql -h 127.0.0.1 -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" "$name"
fi

urls=""
# start_instances N starts N instances on consecutive free loopback ports, each with an
# equal share of POOL_TOTAL connections (20 each for two), and waits until they are ready.
start_instances() {
  local n=$1 base=$((20000 + RANDOM % 20000)) list=()
  local conns=$((pool_total / n > 4 ? pool_total / n : 4))
  for ((k = 0; k < n; k++)); do
    local p=$((base + k))
    CHAT_ADDR=127.0.0.1:$p CHAT_DATABASE_URL="$db" CHAT_DB_MAX_CONNS=$conns \
      CHAT_RATE_LIMIT=0 CHAT_READ_RATE_LIMIT=0 "$out/chatd" serve >"$out/chatd-$n-$k.log" 2>&1 &
    pids+=($!)
    list+=("http://127.0.0.1:$p")
  done
  for u in "${list[@]}"; do
    for _ in $(seq 1 100); do curl -fs "$u/readyz" >/dev/null && break; sleep 0.1; done
    curl -fs "$u/readyz" >/dev/null || { echo "throughput.sh: $u not ready (see $out/chatd-$n-*.log)" >&2; exit 2; }
  done
  urls=$(IFS=,; echo "${list[*]}")
  pool_cap=$conns
}

# run_rate N RATE runs chatbench once; its row goes to rows.jsonl. chatbench exits 1 when
# something was lost or duplicated: the row records it and the script goes on.
run_rate() {
  local n=$1 rate=$2 tag=run-$1x-$2 rc=0
  "$out/chatbench" -url "$urls" -db "$db" -pg-cost -pg-settle "$settle" -pool-cap "$pool_cap" \
    -streams "$streams" -clients "$clients" -rate "$rate" -duration "$duration" -body-bytes 100 \
    -json "$out/$tag.json" >"$out/$tag.txt" 2>"$out/$tag.log" || rc=$?
  if [ ! -s "$out/$tag.json" ]; then
    echo "throughput.sh: $tag wrote no JSON (exit $rc, see $out/$tag.log)" >&2
    exit 2
  fi
  jq -c --argjson n "$n" --argjson rc "$rc" -f cmd/chatbench/throughput-row.jq "$out/$tag.json" >>"$out/rows.jsonl"
  jq -r '"\(.instances)x \(.offered) msgs/s: \(if .held then "held" else "NOT held" end) (\(.held_why)); accepted \(.accepted_per_s|floor)/s, recipient p99 \(.recipient_p99_ms) ms, POST p99 \(.post_p99_ms) ms, PostgreSQL \(.pg_cpu_ms_per_1k|floor) ms CPU and \(.xact_per_1k|floor) transactions per 1,000 messages"' \
    <<<"$(tail -n 1 "$out/rows.jsonl")" >&2
}

"$out/chatbench" -mode pgbench -db "$db" -body-bytes 100 -json "$out/pgbench.json" | tee "$out/pgbench.txt"

if [ -n "${INSTANCES_LIST:-}" ]; then
  for n in $INSTANCES_LIST; do
    start_instances "$n"
    run_rate "$n" "${RATE:-600}"
    stop_instances
  done
  mode=instances
else
  start_instances "${INSTANCES:-2}"
  for rate in $rates; do
    run_rate "${INSTANCES:-2}" "$rate"
    [ "$(tail -n 1 "$out/rows.jsonl" | jq .held)" = true ] || break
  done
  mode=ramp
  # The issue's last row, memory per idle stream, on the same instances (IDLE_STREAMS > 0).
  if [ "${IDLE_STREAMS:-0}" -gt 0 ]; then
    "$out/chatbench" -mode idle -url "$urls" -db "$db" -pool-cap "$pool_cap" -streams "$IDLE_STREAMS" \
      -idle-for "${IDLE_FOR:-30s}" -json "$out/idle.json" >"$out/idle.txt" 2>"$out/idle.log" ||
      echo "throughput.sh: the idle run failed (see $out/idle.txt)" >&2
  fi
fi

idle=(--argjson idle '[]')
[ -s "$out/idle.json" ] && idle=(--slurpfile idle "$out/idle.json")
jq -s --arg mode "$mode" --slurpfile pg "$out/pgbench.json" "${idle[@]}" -f cmd/chatbench/throughput-summary.jq \
  "$out/rows.jsonl" >"$out/summary.json"
jq -r -f cmd/chatbench/throughput-table.jq "$out/summary.json" | tee "$out/summary.md"
"$out/chatbench" -mode throughput-plot -summary "$out/summary.json" -plot "$out/summary.png" ||
  echo "throughput.sh: no plot" >&2
