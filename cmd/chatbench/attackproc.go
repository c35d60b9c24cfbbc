package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// -mode slowclients -attacker-nice N runs its attacker connections in a process of their
// own (this binary again, -mode attackers) at niceness N, apart from the normal users'
// clients. On two shared cores, that separates what the attack costs chatd from what the
// attacker's own work takes from everyone else: at niceness 19 the kernel gives the
// attacker CPU only when chatd, PostgreSQL and the normal users leave some, as an attacker
// on another machine would take none of it.

// attackReport is what -mode attackers writes to stdout when it is stopped.
type attackReport struct {
	Results  []AttackResult `json:"results"`
	Peak     int64          `json:"peak"`
	Refused  int64          `json:"refused"`
	Statuses map[int]int    `json:"statuses"`
	FirstErr string         `json:"first_error,omitempty"`
}

// slowclientsBounds are the documented close times by attacker kind (s).
var slowclientsBounds = [atkKinds]float64{atkStream: slowclientsStreamBnd, atkBodyNone: slowclientsBodyBound, atkBodyTrickle: slowclientsBodyBound}

// startSlowclientsAttackers runs n attacker connections of slowclients' three kinds as
// victims until ctx ends, and then marks wg done.
func startSlowclientsAttackers(ctx context.Context, wg *sync.WaitGroup, a *attack, n int, victims []*user) {
	defer wg.Done()
	var own sync.WaitGroup
	gate := make(chan struct{}, openConcurrency)
	streams := n / 2
	a.start(ctx, &own, atkStream, streams, victims, gate)
	a.start(ctx, &own, atkBodyNone, (n-streams)/2, victims, gate)
	a.start(ctx, &own, atkBodyTrickle, n-streams-(n-streams)/2, victims, gate)
	own.Wait()
}

func (a *attack) report() attackReport {
	return attackReport{Results: a.results(slowclientsBounds), Peak: a.peak.Load(), Refused: a.refuse.Load(),
		Statuses: a.statuses, FirstErr: a.firstErr}
}

// runAttackers is -mode attackers: slowclients' attacker connections against -url as its
// victims (minted from -run-id and -secret as slowclients mints them). It prints "open"
// once they are all open, and the report as JSON once SIGTERM ends them.
func runAttackers(ctx context.Context, opt options) int {
	raiseFileLimit(opt.attackers + 256)
	r := &hostileRun{opt: opt}
	b, err := newBench(ctx, opt, &Result{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		return 2
	}
	r.b = b
	actx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := newAttack(actx, r)
	var wg sync.WaitGroup
	wg.Add(1)
	go startSlowclientsAttackers(actx, &wg, a, opt.attackers, r.mintUsers("v", slowclientsVictims))
	r.waitAttackers(ctx, a, opt.attackers)
	fmt.Println("open")
	<-ctx.Done() // SIGTERM from slowclients
	cancel()
	wg.Wait()
	if err := json.NewEncoder(os.Stdout).Encode(a.report()); err != nil {
		return 1
	}
	return 0
}

// attackerProc is a -mode attackers process.
type attackerProc struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

// startAttackerProc runs -mode attackers at niceness nice against the instance at target
// and waits until its connections are open.
func startAttackerProc(ctx context.Context, r *hostileRun, target string, nice int) (*attackerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"nice", "-n", strconv.Itoa(nice), self, "-mode", "attackers", "-url", target,
		"-run-id", r.opt.runID, "-attackers", strconv.Itoa(r.opt.attackers), "-sources", strconv.Itoa(r.opt.sources)}
	if r.opt.attackerCPUs != "" {
		args = append([]string{"taskset", "-c", r.opt.attackerCPUs}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "CHAT_JWT_SECRET="+r.opt.secret)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &attackerProc{cmd: cmd, out: bufio.NewReader(stdout)}
	opened := make(chan error, 1)
	go func() {
		line, err := p.out.ReadString('\n')
		if err == nil && line != "open\n" {
			err = fmt.Errorf("attackers: %q", line)
		}
		opened <- err
	}()
	select {
	case err = <-opened:
	case <-time.After(2 * time.Minute):
		err = errors.New("attackers: not open after 2 minutes")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	return p, nil
}

// stop ends the process's connections and returns its report.
func (p *attackerProc) stop() (attackReport, error) {
	var rep attackReport
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	derr := json.NewDecoder(p.out).Decode(&rep)
	return rep, errors.Join(derr, p.cmd.Wait())
}
