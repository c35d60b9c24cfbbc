# throughput.sh's summary: its rows (slurped), the pgbench reference ($pg), the idle run
# ($idle, [] when there was none) and, for a ramp,
# the highest rate held and its ratio to pgbench's tps (one rate over instance counts has
# no "highest").
($pg[0].pgbench) as $ref
| (if $mode == "ramp" then [.[] | select(.held) | .offered] | max else null end) as $best
| {
    mode: $mode,
    pgbench: $ref,
    runs: .,
    highest_held: $best,
    idle: (if $idle == [] then null
           else $idle[0] | {streams, rss_per_stream_kib: .server.rss_per_stream_kib, failures} end),
    ratio_to_pgbench: (if $best != null and ($ref.tps // 0) > 0 then $best / $ref.tps else null end)
  }
