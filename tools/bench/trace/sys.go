package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

const bpfStatsPath = "/proc/sys/kernel/bpf_stats_enabled"

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(path, v string) error {
	return os.WriteFile(path, []byte(v+"\n"), 0o644)
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// cpuMillis is the CPU (user+system) that process pid has used so far, in ms with a resolution
// of 10 ms, or -1 if it cannot be read.
func cpuMillis(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	return parseStatCPU(string(b))
}

func parseStatCPU(stat string) float64 {
	// The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return float64(u+s) * 1000 / clockTicks
}

// ensureTracefs mounts tracefs if it is not mounted (classic tracepoints need it to find
// event ids). It is left mounted: other tools on the machine may start relying on it.
func ensureTracefs() error {
	if _, err := os.Stat("/sys/kernel/tracing/events"); err == nil {
		return nil
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("mount tracefs on /sys/kernel/tracing: %w", err)
	}
	benchkit.Logf("mounted tracefs on /sys/kernel/tracing (left mounted)")
	return nil
}

// bpfProg is one entry of `bpftool prog show -j`.
type bpfProg struct {
	ID        uint32 `json:"id"`
	Type      string `json:"type"`
	Name      string `json:"name"`
	RunTimeNS uint64 `json:"run_time_ns"`
	RunCnt    uint64 `json:"run_cnt"`
}

func bpftoolProgs(bpftool string) ([]bpfProg, error) {
	out, err := benchkit.Run(20*time.Second, bpftool, "prog", "show", "-j")
	if err != nil {
		return nil, err
	}
	return parseBpftoolProgs([]byte(out))
}

func parseBpftoolProgs(b []byte) ([]bpfProg, error) {
	var progs []bpfProg
	if err := json.Unmarshal(b, &progs); err != nil {
		return nil, fmt.Errorf("bpftool prog show -j: %w", err)
	}
	return progs, nil
}

// progIDsOf returns the ids of the BPF programs that process pid holds, through program fds or
// link fds (fdinfo of both has a prog_id line). This bpftool is built without the "pids" field,
// and program ids alone cannot tell our tracer from one that another test loads meanwhile.
func progIDsOf(pid int) map[uint32]bool {
	ids := map[uint32]bool{}
	for _, id := range benchkit.FdinfoIDs(pid, "prog_id") {
		ids[id] = true
	}
	return ids
}

// progStat accumulates BPF run statistics for one program name.
type progStat struct {
	Name      string
	RunTimeNS uint64
	RunCnt    uint64
}

func (s progStat) nsPerRun() float64 {
	if s.RunCnt == 0 {
		return 0
	}
	return float64(s.RunTimeNS) / float64(s.RunCnt)
}

// addProgStats sums the stats of the programs in ids into acc, by program name.
func addProgStats(acc map[string]*progStat, progs []bpfProg, ids map[uint32]bool) int {
	n := 0
	for _, p := range progs {
		if !ids[p.ID] {
			continue
		}
		n++
		s := acc[p.Name]
		if s == nil {
			s = &progStat{Name: p.Name}
			acc[p.Name] = s
		}
		s.RunTimeNS += p.RunTimeNS
		s.RunCnt += p.RunCnt
	}
	return n
}

func sortedStats(acc map[string]*progStat) []progStat {
	var out []progStat
	for _, s := range acc {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RunTimeNS > out[j].RunTimeNS })
	return out
}

// netnsProber makes throw-away connections from inside a network namespace: one OS thread that
// entered the namespace with setns and stays there.
type netnsProber struct {
	req chan chan error
}

func newNetnsProber(nsPath string) (*netnsProber, error) {
	p := &netnsProber{req: make(chan chan error)}
	ready := make(chan error, 1)
	go func() {
		// Never unlocked: when this goroutine returns, the runtime discards the thread and
		// its namespace with it.
		runtime.LockOSThread()
		f, err := os.Open(nsPath)
		if err != nil {
			ready <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			ready <- fmt.Errorf("setns %s: %w", nsPath, err)
			return
		}
		ready <- nil
		for r := range p.req {
			r <- probeConnect()
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	benchkit.AtExit(func() { close(p.req) })
	return p, nil
}

// probe makes one connection attempt to 127.0.0.1:1 in the namespace, where nothing listens:
// connect() gets ECONNREFUSED after CLOSE->SYN_SENT (in this process's context) and
// SYN_SENT->CLOSE.
func (p *netnsProber) probe() error {
	r := make(chan error, 1)
	p.req <- r
	return <-r
}

func probeConnect() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: 1, Addr: [4]byte{127, 0, 0, 1}})
	if err != nil && err != unix.ECONNREFUSED {
		return fmt.Errorf("probe connect: %w", err)
	}
	return nil
}
