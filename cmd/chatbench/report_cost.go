package main

import (
	"fmt"
	"strings"
)

// costRows reports -pg-cost: what the load phase cost PostgreSQL and the instances, per
// 1,000 accepted messages.
func (t *table) costRows(c *CostResult) {
	if c == nil {
		return
	}
	t.row("cost window", "%.1fs, %d messages accepted", c.WindowS, c.Messages)
	cpus := make([]string, len(c.ChatdCPUPercent))
	for i, v := range c.ChatdCPUPercent {
		cpus[i] = fmt.Sprintf("%.1f %%", v)
	}
	t.row("  chatd CPU", "%s of one core per instance; %.0f ms per 1,000 messages, all instances", strings.Join(cpus, ", "), c.ChatdCPUMsPer1k)
	if c.PGCPUError != "" {
		t.row("  PostgreSQL CPU", "not measured: %s", c.PGCPUError)
	} else {
		t.row("  PostgreSQL CPU", "%.1f %% of one core, %.0f ms per 1,000 messages (all %d postgres processes); this database's backends and the background processes (%d): %.1f %%, %.0f ms",
			c.PGCPUPercent, c.PGCPUMsPer1k, c.PGProcesses, c.PGProcessesOfDB, c.PGCPUDBPercent, c.PGCPUDBMsPer1k)
	}
	if c.StatsError != "" {
		t.row("  pg_stat_database", "not measured: %s", c.StatsError)
	} else {
		var parts []string
		for _, k := range pgStatColumns {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, c.StatsPer1k[k]))
		}
		t.row("  per 1,000 messages", "%s (pg_stat_database over %.1fs: read %.0fs after the drain, so the instances' idle work then counts too)",
			strings.Join(parts, ", "), c.StatsWindowS, c.StatsAfterSettleS)
	}
	if c.StatementsNote != "" {
		t.row("  statements", "%s", c.StatementsNote)
	}
	for i, s := range c.Statements {
		if i == 8 {
			t.row("", "... %d more in the JSON", len(c.Statements)-i)
			break
		}
		t.row("  statement", "%.0f calls per 1,000 messages, %.3f ms each: %s", s.CallsPer1k, s.MeanExecMs, s.Query)
	}
}
