# throughput.sh's summary.json as a markdown table, one row per run, and the ratio.
def r1: if . == null then "–" else (. * 10 | round / 10 | tostring) end;
def r0: if . == null then "–" else (round | tostring) end;
def pair(a; b): "\(a | r1) / \(b | r1)";
"| instances | offered msgs/s | held | accepted msgs/s | POST p50 / p99 ms | recipient p50 / p99 ms | chatd CPU % (each) | PostgreSQL CPU % (all / this db) | PostgreSQL CPU ms per 1k msgs | transactions per 1k | rows inserted / fetched / returned per 1k | statements per 1k |",
"|---|---|---|---|---|---|---|---|---|---|---|---|",
(.runs[] |
  "| \(.instances) | \(.offered | r0) | \(if .held then "yes" else "**no**" end) | \(.accepted_per_s | r0) | \(pair(.post_p50_ms; .post_p99_ms)) | \(pair(.recipient_p50_ms; .recipient_p99_ms)) | \((.chatd_cpu_percent // []) | map(r0) | join(", ")) | \(.pg_cpu_percent | r0) / \(.pg_cpu_db_percent | r0) | \(.pg_cpu_ms_per_1k | r0) | \(.xact_per_1k | r0) | \(.tup_inserted_per_1k | r0) / \(.tup_fetched_per_1k | r0) / \(.tup_returned_per_1k | r0) | \(.statements_per_1k | r0) |"),
"",
(.runs[] | select(.held | not) | "Not held at \(.instances)x \(.offered | r0) msgs/s: \(.held_why)."),
(if .pgbench.tps then
  "pgbench reference, same run: \(.pgbench.tps | r0) tps (single-row INSERT, -M \(.pgbench.protocol) -c \(.pgbench.clients) -j \(.pgbench.jobs) -T \(.pgbench.seconds), \(.pgbench.body_bytes)-byte body)."
 else "pgbench reference failed: \(.pgbench.error // "no result")." end),
(if .mode == "ramp" then
  (if .highest_held then "Highest rate held: \(.highest_held | r0) msgs/s = \(.ratio_to_pgbench * 100 | round / 100)x pgbench."
   else "No rate held." end)
 else empty end),
(.idle // empty | "Server RSS per idle stream: \(.rss_per_stream_kib | r1) KiB (\(.streams) streams over the same instances)\(if (.failures // []) != [] then "; the idle run failed: " + (.failures | join("; ")) else "" end)."),
(.runs[0].statements_note // empty | "Statements: \(.)"),
(.runs[] | select((.statements // []) != []) |
  "", "Statements per 1,000 messages at \(.instances)x \(.offered | r0) msgs/s (pg_stat_statements; mean execution time):", "",
  (.statements[:8][] | "- \(.calls_per_1k | r0) × \(.mean_exec_ms * 1000 | round / 1000) ms: `\(.query[:100])`"))
