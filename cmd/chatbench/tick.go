package main

import (
	"context"
	"time"
)

// onTick calls f once every interval, the first time one interval after it starts, until
// ctx ends. The database watcher and the close monitor both poll this way.
func onTick(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
