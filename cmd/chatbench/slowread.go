package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"
)

// -mode slowread repeats the load of issue 7's finding 2: -attackers (2,000) streams of 200
// users that never read, while 5 senders post -flood (600) messages of 4,096 '<' (about
// 24.6 KB of JSON each once escaped) into groups of those users. chatd must stay under
// slowreadRSSBudget, and the normal users (-streams, -rate) must be delivered to as fast
// as in a quiet phase run first without the attack.
const (
	slowreadVictims   = 200
	slowreadSenders   = 5
	slowreadRSSBudget = 256 // MiB
	// slowreadCloseWait is how long after the flood the non-reading streams may take to be
	// closed: a blocked write times out after 10 s, and so may the last chunk after it.
	slowreadCloseWait = 45 * time.Second
)

// SlowreadResult is what -mode slowread measured.
type SlowreadResult struct {
	Quiet        phaseResult    `json:"quiet"`
	FloodOnly    phaseResult    `json:"flood_only"` // the same flood, no stream open to receive it
	FloodOnlyS   float64        `json:"flood_only_s"`
	Attack       phaseResult    `json:"attack"`
	Flooded      int64          `json:"flood_accepted"`
	FloodS       float64        `json:"flood_s"`
	Attackers    []AttackResult `json:"attackers"`
	PeakRSSMiB   float64        `json:"peak_rss_mib"` // VmHWM after the attack: the process's peak
	AfterRSSMiB  float64        `json:"rss_after_mib"`
	BaseRSSMiB   float64        `json:"rss_before_mib"`
	RSSBudgetMet bool           `json:"rss_under_256_mib"`
}

func runSlowread(ctx context.Context, opt options) int {
	if opt.attackers == 0 {
		opt.attackers = 2000
	}
	r, victims, senders, groups, err := startVictims(ctx, opt, "slowread", map[string]string{"CHAT_MAX_MESSAGE_BYTES": "4096"}, slowreadVictims, slowreadSenders, slowreadVictims)
	defer r.cleanup()
	if err != nil {
		return 2
	}
	res := &SlowreadResult{}
	smp := r.startSampler(ctx, closeScan)
	defer smp.stop()
	res.BaseRSSMiB = r.rssMiB()
	res.Quiet = r.loadPhase(ctx, smp, "quiet", nil)
	// The flood alone (its POSTs, rows and log reads, no stream to receive it) tells what
	// of the attack phase's slowdown is the flood's own cost, not the non-reading streams'.
	res.FloodOnly = r.loadPhase(ctx, smp, "flood", func(ctx context.Context) func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			start := time.Now()
			(&attack{r: r}).flood(ctx, senders, groups, opt.flood, 0)
			res.FloodOnlyS = time.Since(start).Seconds()
		}()
		return func() { <-done }
	})

	var a *attack
	res.Attack = r.loadPhase(ctx, smp, "attack", func(ctx context.Context) func() {
		actx, cancel := context.WithCancel(ctx)
		a = newAttack(actx, r)
		a.once = true // as in the finding: 2,000 streams, not reconnected
		var wg sync.WaitGroup
		a.start(actx, &wg, atkStream, opt.attackers, victims, make(chan struct{}, openConcurrency))
		r.waitAttackers(actx, a, opt.attackers)
		go r.saveProfile(ctx, 0, "profile?seconds=5", filepath.Join(r.opt.workDir, "slowread-cpu.pb.gz"))
		flooded := make(chan struct{})
		go func() {
			defer close(flooded)
			start := time.Now()
			res.Flooded = a.flood(actx, senders, groups, opt.flood, 0)
			res.FloodS = time.Since(start).Seconds()
			logf("attack: %d of %d messages of 4,096 '<' accepted in %.1fs", res.Flooded, opt.flood, res.FloodS)
			r.saveProfile(ctx, 0, "heap", filepath.Join(r.opt.workDir, "slowread-heap.pb.gz"))
		}()
		return func() {
			select {
			case <-flooded:
			case <-time.After(2 * time.Minute):
			}
			// Every stream the flood left behind must be closed by the server.
			for deadline := time.Now().Add(slowreadCloseWait); a.open[atkStream].Load() > 0 && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
			}
			cancel()
			wg.Wait()
			<-flooded
		}
	})
	// Streams and the log reader let go of what they held; the heap shrinks over a GC cycle
	// or two, RSS later (the runtime returns memory in the background).
	sleepCtx(ctx, 10*time.Second)
	_, hwm, _ := readProc(r.inst[0].cmd.Process.Pid)
	res.PeakRSSMiB = float64(hwm) / (1 << 20)
	res.AfterRSSMiB = r.rssMiB()
	res.RSSBudgetMet = res.PeakRSSMiB < slowreadRSSBudget
	if a != nil {
		res.Attackers = a.results([atkKinds]float64{})
	}

	printSlowread(res, opt, a)
	saveJSON(opt.jsonPath, res)
	if !res.RSSBudgetMet || res.Quiet.Error != "" || res.Attack.Error != "" {
		return 1
	}
	return 0
}

// printSlowread writes what -mode slowread measured, one line per phase and per attacker
// kind, then the memory against the budget.
func printSlowread(res *SlowreadResult, opt options, a *attack) {
	fmt.Printf("slowread: %d non-reading streams of %d users, %d senders posting %d messages of 4,096 '<'; normal users: %d streams, %.0f msgs/s for %s\n",
		opt.attackers, slowreadVictims, slowreadSenders, opt.flood, opt.streams, opt.rate, opt.duration)
	fmt.Printf("  quiet:   %s\n", res.Quiet)
	fmt.Printf("  flood only (%.1fs): %s\n", res.FloodOnlyS, res.FloodOnly)
	fmt.Printf("  attack:  %s\n", res.Attack)
	fmt.Printf("  flood:   %d accepted in %.1fs\n", res.Flooded, res.FloodS)
	for _, ar := range res.Attackers {
		fmt.Printf("  %s: %s\n", ar.Kind, ar)
	}
	fmt.Printf("  chatd RSS: %.0f MiB before, peak (VmHWM) %.0f MiB, %.0f MiB 10 s after; budget < %d MiB: %v\n",
		res.BaseRSSMiB, res.PeakRSSMiB, res.AfterRSSMiB, slowreadRSSBudget, res.RSSBudgetMet)
	if a != nil && a.firstErr != "" {
		fmt.Printf("  first attacker error (%d refused or failed): %s\n", a.refuse.Load(), a.firstErr)
	}
}

// rssMiB is the first instance's resident memory now.
func (r *hostileRun) rssMiB() float64 {
	rss, _, _ := readProc(r.inst[0].cmd.Process.Pid)
	return float64(rss) / (1 << 20)
}

// waitAttackers waits (up to a minute) until n attacker connections are open.
func (r *hostileRun) waitAttackers(ctx context.Context, a *attack, n int) {
	start, last := time.Now(), time.Now()
	for ctx.Err() == nil && time.Since(start) < time.Minute {
		open := int(a.open[atkStream].Load() + a.open[atkBodyNone].Load() + a.open[atkBodyTrickle].Load())
		if open >= n {
			logf("attack: %d connections open after %.1fs", open, time.Since(start).Seconds())
			return
		}
		if time.Since(last) > 2*time.Second {
			logf("attack: %d/%d connections open", open, n)
			last = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	logf("attack: only %d of %d connections open after a minute (%d refused or failed: %s)",
		a.open[atkStream].Load()+a.open[atkBodyNone].Load()+a.open[atkBodyTrickle].Load(), n, a.refuse.Load(), a.firstErr)
}
