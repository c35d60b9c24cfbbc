package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run())
}

func run() int {
	opt, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if opt.mode == "faults" {
		return runFaults(ctx, opt)
	}
	if run := hostileModes[opt.mode]; run != nil {
		return run(ctx, opt)
	}
	switch opt.mode {
	case "attackers":
		return runAttackers(ctx, opt)
	case "pgbench":
		return runPgbenchMode(ctx, opt)
	case "throughput-plot":
		return runThroughputPlot(opt)
	}

	res := &Result{Mode: opt.mode, RunID: opt.runID, Instances: opt.urls, Streams: opt.streams,
		Clients: opt.clients, Sources: opt.sources, DB: &DBResult{}}
	res.FileLimit = raiseFileLimit(opt.streams + opt.clients + 256)

	b, err := newBench(ctx, opt, res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		return 2
	}
	defer b.close()

	logf("run %s: %d conversations, %d users on %d instance(s)", opt.runID, opt.streams/2, opt.streams, len(opt.urls))
	if err := b.setup(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench: setup:", err)
		return 2
	}
	switch opt.mode {
	case "load":
		err = b.runLoad(ctx)
	case "idle":
		err = b.runIdle(ctx)
	case "storm":
		err = b.runStorm(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		res.Failures = append(res.Failures, err.Error())
	}
	b.summariseDB()
	res.Server.ToolMaxRSSMiB = selfMaxRSS() / (1 << 20)
	res.judge(opt)
	printTable(os.Stdout, res, opt)
	if opt.jsonPath != "" {
		if err := writeJSON(opt.jsonPath, res); err != nil {
			fmt.Fprintln(os.Stderr, "chatbench: json:", err)
		}
	}
	if opt.plotPath != "" {
		if err := b.plot(opt.plotPath); err != nil {
			fmt.Fprintln(os.Stderr, "chatbench: plot:", err)
		} else {
			logf("plot written to %s", opt.plotPath)
		}
	}
	if len(res.Failures) > 0 {
		return 1
	}
	return 0
}

// raiseFileLimit raises the soft open-file limit to the hard one (Go 1.19+ already does it
// for the process; this checks it) and warns when the streams will not fit.
func raiseFileLimit(need int) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logf("open files limit: unknown (%v)", err)
		return 0
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			logf("raising the open files limit: %v", err)
		}
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	logf("open files limit: soft %d, hard %d", lim.Cur, lim.Max)
	if uint64(need) > lim.Cur {
		logf("WARNING: %d streams and clients need about %d files, more than the limit %d", need-256, need, lim.Cur)
	}
	return lim.Cur
}

// logf prints progress to stderr, so stdout holds only the table.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}
