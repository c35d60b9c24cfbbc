package main

import (
	"context"
	"fmt"
	"time"
)

// openTimeout is how long opening all streams may take.
func (b *bench) openTimeout() time.Duration {
	return 30*time.Second + time.Duration(len(b.streams))*5*time.Millisecond
}

// startDBWatch samples chatd's database connections in the background; the returned
// function stops it.
func (b *bench) startDBWatch(ctx context.Context) func() {
	if b.db == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.db.watch(ctx, 100*time.Millisecond)
	}()
	return func() {
		cancel()
		<-done
	}
}

// dbNow samples the database connections once (zero without -db).
func (b *bench) dbNow(ctx context.Context) dbSample {
	if b.db == nil {
		return dbSample{}
	}
	s, _ := b.db.sample(ctx)
	return s
}

// openAll opens every stream (at most openConcurrency connecting at once) and waits until
// all are ready; it records the baseline before and the server's state after.
func (b *bench) openAll(ctx context.Context, t *tracker) (g *streamGroup, base, open serverSample, err error) {
	base = b.scrape(ctx)
	b.res.DB.Before = b.dbNow(ctx).pool
	logf("streams: opening %d", len(b.streams))
	start := time.Now()
	g = b.openStreams(ctx, t, false, true)
	err = b.waitReady(ctx, t, b.openTimeout())
	b.res.OpenSeconds = time.Since(start).Seconds()
	b.res.StreamsReady = t.ready.Load()
	if err != nil {
		return g, base, open, err
	}
	logf("streams: %d ready in %.1fs", len(b.streams), b.res.OpenSeconds)
	time.Sleep(500 * time.Millisecond) // let the server settle after the burst of opens
	open = b.scrape(ctx)
	b.res.DB.WithStreams = b.dbNow(ctx).pool
	return g, base, open, nil
}

// runLoad: optional pgbench baseline, open the streams, post open loop, drain, check.
func (b *bench) runLoad(ctx context.Context) error {
	opt := b.opt
	n := int(opt.rate * opt.duration.Seconds())
	if n < 1 {
		return fmt.Errorf("-rate × -duration is less than one message")
	}
	if opt.pgbench {
		b.res.Pgbench = runPgbench(ctx, opt)
	}
	defer b.startDBWatch(ctx)()
	t := newTracker(len(b.convs), n)
	g, base, open, err := b.openAll(ctx, t)
	defer g.close()
	if err != nil {
		b.summariseStreams(t, g)
		return err
	}

	var cost *costProbe
	if opt.pgCost {
		cost = b.startCost(ctx)
	}
	logf("load: %d messages at %.0f/s over %s, at most %d in flight", n, opt.rate, opt.duration, opt.clients)
	p := newPoster(b, n)
	self0 := selfCPU()
	p.openLoop(ctx, opt.rate)
	replied := time.Now()
	want := 2 * p.accepted.Load()
	deadline := replied.Add(opt.drain)
	for t.delivered.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	drained := time.Since(replied)
	time.Sleep(200 * time.Millisecond) // late duplicates would show up here
	end := b.scrape(ctx)
	self1 := selfCPU()
	if cost != nil {
		b.res.Cost = cost.finish(ctx, p.accepted.Load())
	}
	g.close()

	b.summariseStreams(t, g)
	b.summariseLoad(t, p, drained)
	b.summariseServer(base, open, end, open, end)
	b.res.Server.ToolCPUPercent = pct(self1-self0, end.at.Sub(open.at))
	return nil
}

// runIdle: open the streams and hold them; RSS per stream, idle CPU, heartbeat gaps.
func (b *bench) runIdle(ctx context.Context) error {
	defer b.startDBWatch(ctx)()
	t := newTracker(len(b.convs), 0)
	g, base, open, err := b.openAll(ctx, t)
	defer g.close()
	if err != nil {
		b.summariseStreams(t, g)
		return err
	}
	logf("idle: holding %d streams for %s", len(b.streams), b.opt.idleFor)
	self0 := selfCPU()
	select {
	case <-ctx.Done():
	case <-time.After(b.opt.idleFor):
	}
	end := b.scrape(ctx)
	self1 := selfCPU()
	b.res.DB.AtEnd = b.dbNow(ctx).pool
	g.close()
	b.summariseStreams(t, g)
	b.summariseServer(base, open, end, open, end)
	b.res.Server.ToolCPUPercent = pct(self1-self0, end.at.Sub(open.at))
	b.chart = b.heartbeatChart()
	return nil
}

// stormWait bounds the storm's catch-up.
const stormWait = 60 * time.Second

// runStorm: open, close, post -missed into every conversation, reconnect all at once.
func (b *bench) runStorm(ctx context.Context) error {
	opt := b.opt
	defer b.startDBWatch(ctx)()
	t1 := newTracker(len(b.convs), 0)
	g1, base, open, err := b.openAll(ctx, t1)
	if err != nil {
		g1.close()
		b.summariseStreams(t1, g1)
		return err
	}
	g1.close() // every stream keeps its last id
	logf("storm: %d streams closed; posting %d messages into each of %d conversations", len(b.streams), opt.missed, len(b.convs))

	n := len(b.convs) * opt.missed
	p := newPoster(b, n)
	prePost := b.scrape(ctx)
	postStart := time.Now()
	p.closedLoop(ctx)
	postTook := time.Since(postStart)
	per := p.acceptedPerConv()
	for _, s := range b.streams {
		s.expect = per[s.conv]
	}
	logf("storm: %d of %d accepted in %.1fs (%.0f/s); reconnecting %d streams at once",
		p.accepted.Load(), n, postTook.Seconds(), float64(p.accepted.Load())/postTook.Seconds(), len(b.streams))

	t := newTracker(len(b.convs), n)
	stormBase := b.scrape(ctx)
	self0 := selfCPU()
	start := time.Now()
	t.start = start.UnixNano()
	g := b.openStreams(ctx, t, true, false)
	defer g.close()
	want := int64(len(b.streams))
	deadline := start.Add(stormWait)
	last, lastScrape := time.Now(), time.Now()
	// The server's log reader has fanned out the missed messages when its events-read
	// counter has grown by as many as were accepted (-1: not seen).
	readerBehind := float64(p.accepted.Load()) - (stormBase.read - prePost.read)
	readerDone := -time.Second
	if readerBehind <= 0 {
		readerDone = 0
	}
	for t.caughtUp.Load()+t.failed.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		if time.Since(last) > 2*time.Second {
			logf("storm: %d/%d streams caught up", t.caughtUp.Load(), want)
			last = time.Now()
		}
		if readerDone < 0 && time.Since(lastScrape) > 100*time.Millisecond && stormBase.err == nil {
			lastScrape = time.Now()
			if s := b.scrape(ctx); s.err == nil && s.read-prePost.read >= float64(p.accepted.Load()) {
				readerDone = time.Since(start)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	if readerDone < 0 && stormBase.err == nil {
		if s := b.scrape(ctx); s.err == nil && s.read-prePost.read >= float64(p.accepted.Load()) {
			readerDone = time.Since(start)
		}
	}
	time.Sleep(300 * time.Millisecond) // late duplicates would show up here
	end := b.scrape(ctx)
	self1 := selfCPU()
	g.close()

	b.summariseStreams(t, g)
	b.res.StreamsReady = t.ready.Load()
	b.summariseStorm(t, p, postTook, took)
	if stormBase.err == nil {
		b.res.Storm.ReaderBehind = readerBehind
		b.res.Storm.ReaderDoneS = readerDone.Seconds()
	}
	b.summariseServer(base, open, end, stormBase, end)
	b.res.Server.ToolCPUPercent = pct(self1-self0, end.at.Sub(start))
	return nil
}
