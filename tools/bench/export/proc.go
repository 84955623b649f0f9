package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procCPU is a process's utime+stime from /proc/PID/stat, all threads, in seconds (USER_HZ
// resolution: 10 ms).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// userHZ is the unit of /proc/PID/stat's times; Linux fixes it at 100 for every architecture
// that sockscope supports.
const userHZ = 100

func parseStatCPU(stat string) (float64, error) {
	// The command name (field 2) may hold spaces and parentheses: fields are counted after the
	// last ')'. Field 3 (state) is the first after it; utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/PID/stat: no ')' in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/PID/stat: %d fields after the name", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/PID/stat: bad utime/stime %q %q", f[11], f[12])
	}
	return float64(ut+st) / userHZ, nil
}

// procStatus holds the fields of /proc/PID/status the report uses.
type procStatus struct {
	RSSKB   int64 // VmRSS
	HWMKB   int64 // VmHWM (peak RSS)
	Threads int
	FDs     int // entries of /proc/PID/fd
}

func readProcStatus(pid int) (procStatus, error) {
	var s procStatus
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, err
	}
	s = parseStatus(string(b))
	if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
		s.FDs = len(ents)
	}
	return s, nil
}

func parseStatus(text string) procStatus {
	var s procStatus
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			s.RSSKB = n
		case "VmHWM":
			s.HWMKB = n
		case "Threads":
			s.Threads = int(n)
		}
	}
	return s
}

// procCPUPrecise is a process's CPU time in seconds with nanosecond resolution: the sum of the
// first field of /proc/PID/task/*/schedstat (time on CPU) over its threads. Unlike
// /proc/PID/stat it does not include threads that have exited.
func procCPUPrecise(pid int) (float64, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var ns uint64
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %q", dir, e.Name(), b)
		}
		ns += v
	}
	return float64(ns) / 1e9, nil
}
