#!/usr/bin/env bash
# The soak run of README.md (Performance, "Hostile clients"); not run by CI. Builds chatd
# and chatbench; `chatbench -mode soak` starts two chatd instances on loopback ports over a
# scratch database (dropped afterwards), runs $SOAK (default 10m) of mixed load (sends,
# edits, reads, typing, held and churning streams, long polls) with instance B restarted
# halfway, and samples each instance's RSS, goroutines and open files every $EVERY (5s).
# Writes $OUT/soak.txt (figures), soak.csv (samples) and soak.png (plot). Needs PostgreSQL
# on 127.0.0.1:5432. With QUIET=1 it first waits (up to 5 minutes) until no Go test binary
# runs on the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
out=${OUT:-bench-out/soak}
soak=${SOAK:-10m}
mkdir -p "$out"
go build -o "$out/chatd" ./cmd/chatd
go build -o "$out/chatbench" ./cmd/chatbench
if [ "${QUIET:-0}" = 1 ]; then
  for _ in $(seq 1 60); do pgrep -f '\.test( |$)' >/dev/null || break; sleep 5; done
fi
# chatbench ends the run by itself after $SOAK plus at most 5 minutes of setup and drain;
# timeout is the last resort.
timeout -k 10 3h "$out/chatbench" -mode soak -chatd "$out/chatd" -work-dir "$out" -soak-for "$soak" \
  -sample-every "${EVERY:-5s}" -streams 200 -rate 20 -clients 16 \
  -csv "$out/soak.csv" -plot "$out/soak.png" | tee "$out/soak.txt"
