package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// -mode slowclients: -attackers (5,000) connections that hold the server up, half of them
// requests whose announced body never comes or comes a byte every 3 s, half streams that
// never read (their users' groups get a 4,096 '<' message every half second, so the
// streams fall behind), while the normal users (-streams, -rate) chat. Every attacker
// connection reconnects once the server closes it, until the attack ends. The normal
// users' delivery p99 must stay within 2× of a quiet phase's, and every attacker
// connection must be closed within the documented time: CHAT_BODY_TIMEOUT (10 s) for a
// body, the 10 s write timeout for a stream (plus the moment its buffers take to fill).
const (
	slowclientsVictims    = 250
	slowclientsGroupSize  = 50
	slowclientsFloodRate  = 10 // messages per second into the victims' groups, in all
	slowclientsBodyBound  = 11 // s: CHAT_BODY_TIMEOUT and a second for the answer
	slowclientsStreamBnd  = 12 // s: the write timeout and two seconds for the buffers to fill
	slowclientsP99Allowed = 2  // × the quiet p99
)

// SlowclientsResult is what -mode slowclients measured.
type SlowclientsResult struct {
	Quiet       phaseResult    `json:"quiet"`
	Attack      phaseResult    `json:"attack"`
	Attackers   []AttackResult `json:"attackers"`
	PeakOpen    int64          `json:"attackers_open_max"`
	Refused     int64          `json:"attackers_refused"`
	BodyAnswers map[int]int    `json:"body_answers"` // status (-1: none) -> connections
	Flooded     int64          `json:"flood_accepted"`
	P99Ratio    float64        `json:"p99_ratio"`
	OK          bool           `json:"ok"`
}

func runSlowclients(ctx context.Context, opt options) int {
	if opt.attackers == 0 {
		opt.attackers = 5000
	}
	r, victims, senders, groups, err := startVictims(ctx, opt, "slowclients", map[string]string{"CHAT_BODY_TIMEOUT": "10s"}, slowclientsVictims, slowclientsVictims/slowclientsGroupSize, slowclientsGroupSize)
	defer r.cleanup()
	if err != nil {
		return 2
	}
	target := r.opt.urls[0]
	if opt.attackOther {
		// Started before the quiet phase, so that both phases run beside the same processes.
		// The phases' memory, file and goroutine maxima then cover both instances; their CPU
		// is the normal users' instance's (A).
		if err := r.startInstance(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "chatbench: slowclients: the attackers' instance:", err)
			return 2
		}
		target = r.opt.urls[1]
	}
	res := &SlowclientsResult{}
	smp := r.startSampler(ctx, 500*time.Millisecond)
	defer smp.stop()
	res.Quiet = r.loadPhase(ctx, smp, "quiet", nil)

	var a *attack
	var rep attackReport
	var procErr error
	res.Attack = r.loadPhase(ctx, smp, "attack", func(ctx context.Context) func() {
		actx, cancel := context.WithCancel(ctx)
		a = newAttack(actx, r) // the flood's, and the attackers' unless they run apart
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Flooded = a.flood(actx, senders, groups, int(slowclientsFloodRate*(opt.duration+5*time.Minute).Seconds()), slowclientsFloodRate)
		}()
		var proc *attackerProc
		if opt.attackerNice >= 0 {
			if proc, procErr = startAttackerProc(actx, r, target, opt.attackerNice); procErr == nil {
				logf("attack: %d connections open to %s, in a process of their own at niceness %d", opt.attackers, target, opt.attackerNice)
			}
		} else {
			wg.Add(1)
			go startSlowclientsAttackers(actx, &wg, a, opt.attackers, victims)
			r.waitAttackers(actx, a, opt.attackers)
		}
		go r.saveProfile(ctx, 0, "profile?seconds=10", filepath.Join(r.opt.workDir, "slowclients-cpu.pb.gz"))
		return func() {
			cancel()
			wg.Wait()
			switch {
			case proc != nil:
				rep, procErr = proc.stop()
			case opt.attackerNice < 0:
				rep = a.report()
			}
		}
	})
	if procErr != nil {
		res.Attack.Error = "the attackers' process: " + procErr.Error()
	}
	res.Attackers, res.PeakOpen, res.Refused, res.BodyAnswers = rep.Results, rep.Peak, rep.Refused, rep.Statuses
	res.OK = res.Quiet.Error == "" && res.Attack.Error == ""
	if res.OK {
		res.P99Ratio = res.Attack.Load.DeliveryLatency.P99 / res.Quiet.Load.DeliveryLatency.P99
		res.OK = res.P99Ratio <= slowclientsP99Allowed && res.Attack.Delivery.Lost == 0
	}
	for _, ar := range res.Attackers {
		res.OK = res.OK && ar.OK
	}

	fmt.Printf("slowclients: %d attacker connections; normal users: %d streams, %.0f msgs/s for %s\n",
		opt.attackers, opt.streams, opt.rate, opt.duration)
	fmt.Printf("  quiet:   %s\n", res.Quiet)
	fmt.Printf("  attack:  %s\n", res.Attack)
	fmt.Printf("  delivery p99 under attack / quiet: %.2f (allowed %d)\n", res.P99Ratio, slowclientsP99Allowed)
	fmt.Printf("  attackers open at most %d at once; %d refused or failed to open; body answers %v; flood %d accepted\n",
		res.PeakOpen, res.Refused, res.BodyAnswers, res.Flooded)
	for _, ar := range res.Attackers {
		fmt.Printf("  %s: %s\n", ar.Kind, ar)
	}
	if rep.FirstErr != "" {
		fmt.Printf("  first attacker error: %s\n", rep.FirstErr)
	}
	saveJSON(opt.jsonPath, res)
	if !res.OK {
		return 1
	}
	return 0
}
