package main

import (
	"bytes"
	"os"
	"strconv"
)

// clockTicks is the unit of /proc/<pid>/stat's CPU times (USER_HZ): 100 on every Linux
// architecture Go supports, whatever the kernel's own tick rate.
const clockTicks = 100

// postgresCPU is the CPU time (utime + stime, in clock ticks) of every process named
// postgres on this machine, by pid: the postmaster, the backends and the background
// processes of every PostgreSQL server here.
func postgresCPU() map[int]int64 {
	out := map[int]int64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // ended since the listing
		}
		if comm, ticks, ok := parseProcStat(data); ok && comm == "postgres" {
			out[pid] = ticks
		}
	}
	return out
}

// parseProcStat reads a process's name and its user plus system CPU time from the text of
// /proc/<pid>/stat: "pid (comm) state ppid ... utime stime ...", utime and stime being the
// 14th and 15th fields. The name may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseProcStat(data []byte) (comm string, ticks int64, ok bool) {
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	fields := bytes.Fields(data[end+1:]) // from the state, the 3rd field
	const utime = 14 - 3
	if len(fields) <= utime+1 {
		return "", 0, false
	}
	u, err1 := strconv.ParseInt(string(fields[utime]), 10, 64)
	s, err2 := strconv.ParseInt(string(fields[utime+1]), 10, 64)
	if err1 != nil || err2 != nil || u < 0 || s < 0 {
		return "", 0, false
	}
	return string(data[open+1 : end]), u + s, true
}
