# throughput.sh's summary: its rows (slurped), the pgbench reference ($pg), the highest rate
# held and its ratio to pgbench's tps.
($pg[0].pgbench) as $ref
| ([.[] | select(.held) | .offered] | max) as $best
| {
    mode: $mode,
    pgbench: $ref,
    runs: .,
    highest_held: $best,
    ratio_to_pgbench: (if $best != null and ($ref.tps // 0) > 0 then $best / $ref.tps else null end)
  }
