#!/usr/bin/env bash
# The hostile-client benchmarks of README.md (Performance, "Hostile clients"); not run by CI.
# Builds chatd and chatbench; each mode starts its own chatd on a loopback port over a
# scratch database (dropped afterwards) and writes a table to stdout and JSON to $OUT:
#
#   slowread     2,000 streams of 200 users that never read, while 5 senders post 600
#                messages of 4,096 '<'; chatd's peak RSS, /metrics answer time, and 20
#                normal streams' delivery against a quiet phase run first
#   slowclients  5,000 connections trickling request bodies or never reading, while 200
#                normal users chat; their delivery p99 against a quiet phase, and how long
#                the server took to close each attacker connection
#
# Needs PostgreSQL on 127.0.0.1:5432. Other test runs on the machine skew the figures: with
# QUIET=1 it first waits (up to 5 minutes) until no Go test binary runs. CHATD=<binary>
# runs that chatd instead of building one (to measure a candidate fix); MODES picks modes.
# ATTACKER_NICE=<0..19> runs slowclients' attackers in a process of their own at that
# niceness, apart from the normal users (README, "Hostile clients"); with ATTACK_OTHER=1
# as well, they connect to a second chatd of their own on the same database; with
# ATTACKER_CPUS=<list> (taskset -c) their process runs on those CPUs only.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
out=${OUT:-bench-out/hostile}
mkdir -p "$out"
chatd=${CHATD:-$out/chatd}
[ -n "${CHATD:-}" ] || go build -o "$chatd" ./cmd/chatd
go build -o "$out/chatbench" ./cmd/chatbench
if [ "${QUIET:-0}" = 1 ]; then
  for _ in $(seq 1 60); do pgrep -f '\.test( |$)' >/dev/null || break; sleep 5; done
fi
status=0
for mode in ${MODES:-slowread slowclients}; do
  case $mode in
  slowread) args=(-streams 20 -rate 100 -duration 20s -attackers 2000 -flood 600) ;;
  slowclients) args=(-streams 200 -rate 200 -duration 30s -attackers 5000 -attacker-nice "${ATTACKER_NICE:--1}")
    if [ -n "${ATTACK_OTHER:-}" ]; then args+=(-attack-other-instance); fi
    if [ -n "${ATTACKER_CPUS:-}" ]; then args+=(-attacker-cpus "$ATTACKER_CPUS"); fi ;;
  esac
  echo "== chatbench -mode $mode ${args[*]}"
  timeout -k 10 600 "$out/chatbench" -chatd "$chatd" -work-dir "$out" -mode "$mode" "${args[@]}" \
    -json "$out/$mode.json" | tee "$out/$mode.txt" || status=1
done
exit "$status"
