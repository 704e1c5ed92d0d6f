package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on Linux x86-64.
const clockTicks = 100

// cpuSeconds returns the user plus system CPU time a running process has used so far, all its
// threads included.
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3 (state).
	if len(fields) < 13 {
		return 0, fmt.Errorf("cpu time of process %d: short /proc stat line", pid)
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu time of process %d: unexpected /proc stat line", pid)
	}
	return float64(utime+stime) / clockTicks, nil
}

// memBytes returns a memory figure of /proc/<pid>/status in bytes: VmRSS (resident now) or
// VmHWM (the peak resident size).
func memBytes(pid int, field string) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s of process %d: %w", field, pid, err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s of process %d: %q", field, pid, line)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%s of process %d: not in /proc status", field, pid)
}
