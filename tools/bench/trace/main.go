// Command bench measures what `sockscope trace -o json > file` and `sockscope record -w FILE`
// cost a loopback connect/accept/close storm, against the floor of being attached measured in the
// same run; `make bench` runs it.
//
//	bench [-sockscope bin/sockscope] [-tcpload bin/tcpload] [-rounds 6] [-duration 3s]
//	      [-warmup 1s] [-out FILE] [-cpu 0] [-port 7070] [-bpftrace auto] [-record both]
//	      [-floors state,state2,connect,sysexit,writer] [-compare NAME=BIN]... [-strict]
//
// It creates a fresh network namespace sockscope-bench-PID and runs `tcpload storm` inside it
// pinned to one CPU. Each round runs every mode once, in an order rotated from round to round:
// no tracer; the floors (programs that do nothing, attached by the harness to the hooks sockscope
// uses, and the least a writer of every transition does); `sockscope trace -o json --netns NS >
// file`; `sockscope record -w FILE --netns NS --interval 5s`, with and without --syscalls (-record
// both, on or off); and trace with each -compare binary (a change measured against the build
// before it). Each mode's ratio is taken against the baseline and the floor of its own round;
// the report gives medians and the range. It checks that trace wrote every transition and that
// each recording holds every ring record, reads the storm's own CPU per connection, sockscope's
// CPU, peak RSS and time to attach, and the BPF run time per program (from extra rounds with
// kernel.bpf_stats_enabled=1), plus one bpftrace round for scale. The report is a markdown
// fragment on stdout and in -out; progress goes to stderr.
//
// It needs root. The namespace, the sysctl and all child processes are cleaned up on every
// exit path, Ctrl-C included. Exit status: 0 done, 1 error, 3 done but a target missed
// (-strict only).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

type config struct {
	sockscope     string
	tcpload       string
	out           string
	cpu           string
	bpftrace      string
	record        string
	rounds        int
	port          int
	duration      time.Duration
	warmup        time.Duration
	attachTimeout time.Duration
	exitTimeout   time.Duration
	strict        bool
	floors        string
	compare       [][2]string // NAME, binary
}

type bench struct {
	cfg       config
	ns        string
	nsPath    string
	tmp       string
	bpftool   string
	statsOrig string
	prober    *netnsProber
	machine   benchkit.Machine
	rounds    []*round
	bt        *round // bpftrace comparison, nil if not run
	btNote    string
	// statsRound is one extra traced round with kernel.bpf_stats_enabled=1, for run times.
	statsRound *round
	// recStatsRound is the same for `sockscope record` (nil without the record mode).
	recStatsRound *round
	foreign       map[string]map[uint32]bool // tracing BPF programs of other processes seen, by "name (type)"
	notes         []string
}

func main() {
	benchkit.Prog = "bench"
	var cfg config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&cfg.sockscope, "sockscope", "bin/sockscope", "sockscope binary under test")
	fs.StringVar(&cfg.tcpload, "tcpload", "bin/tcpload", "tcpload binary (go build -o bin/tcpload ./tools/load/tcpload)")
	fs.IntVar(&cfg.rounds, "rounds", 6, "rounds; each runs every mode once, in an order rotated from round to round")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured window of each storm")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "storm warm-up before the measured window")
	fs.StringVar(&cfg.out, "out", "", "also write the markdown report to this file")
	fs.StringVar(&cfg.cpu, "cpu", "0", `CPU list for taskset, or "none" to run the storm unpinned`)
	fs.IntVar(&cfg.port, "port", 7070, "storm port (inside the benchmark's own netns)")
	fs.StringVar(&cfg.bpftrace, "bpftrace", "auto", `bpftrace comparison round: "auto" (if installed), "off", or a path`)
	fs.DurationVar(&cfg.attachTimeout, "attach-timeout", 10*time.Second, "limit for sockscope to print its attached line")
	fs.DurationVar(&cfg.exitTimeout, "exit-timeout", 60*time.Second, "limit for a tracer to exit after SIGINT")
	fs.StringVar(&cfg.record, "record", "both", `recording rounds in every pair: "both" (sockscope record, and with --syscalls=false), "on" (the former), "off"`)
	fs.BoolVar(&cfg.strict, "strict", false, "exit with status 3 when a target is missed")
	fs.StringVar(&cfg.floors, "floors", "state,state2,connect,sysexit,writer", "floor variants in every round (comma list, or none): "+floorNames())
	compare := benchkit.CompareFlag(fs, "also trace with another sockscope binary in every round")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(1)
	}
	cfg.compare = *compare
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		os.Exit(1)
	}

	benchkit.CleanupOnSignal()

	b := &bench{cfg: cfg, foreign: map[string]map[uint32]bool{}}
	report, missed, err := b.run()
	benchkit.RunCleanups()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(report)
	if cfg.out != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err == nil {
			err = os.WriteFile(cfg.out, []byte(report), 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		benchkit.Logf("report written to %s", cfg.out)
	}
	if missed && cfg.strict {
		os.Exit(3)
	}
}

func (b *bench) run() (report string, missed bool, err error) {
	c := &b.cfg
	if os.Geteuid() != 0 {
		return "", false, errors.New("needs root (network namespaces, BPF, sysctl)")
	}
	if c.rounds < 1 || c.duration <= 0 || c.warmup < 0 {
		return "", false, errors.New("-rounds must be >= 1, -duration > 0, -warmup >= 0")
	}
	recModes, err := recordModes(c.record)
	if err != nil {
		return "", false, err
	}
	for _, p := range []*string{&c.sockscope, &c.tcpload} {
		if *p, err = benchkit.Executable(*p); err != nil {
			return "", false, err
		}
	}
	for i := range c.compare {
		if c.compare[i][1], err = benchkit.Executable(c.compare[i][1]); err != nil {
			return "", false, err
		}
	}
	if _, err := parseFloors(c.floors); err != nil {
		return "", false, err
	}
	need := []string{"ip"}
	if c.cpu != "none" {
		need = append(need, "taskset")
	}
	if err := benchkit.NeedOnPath(need...); err != nil {
		return "", false, err
	}
	if b.bpftool, err = exec.LookPath("bpftool"); err != nil {
		b.bpftool = ""
		b.note("bpftool not found: no BPF run times")
	}
	bpftrace := ""
	switch c.bpftrace {
	case "off":
	case "auto":
		if p, err := exec.LookPath("bpftrace"); err == nil {
			bpftrace = p
		} else {
			b.btNote = "bpftrace not installed"
		}
	default:
		if bpftrace, err = benchkit.Executable(c.bpftrace); err != nil {
			return "", false, err
		}
	}

	b.machine = benchkit.DescribeMachine()
	if b.statsOrig, err = readSysctl(bpfStatsPath); err != nil {
		b.statsOrig = ""
		b.note(fmt.Sprintf("cannot read %s: no BPF run times", bpfStatsPath))
	} else {
		orig := b.statsOrig
		benchkit.AtExit(func() { writeSysctl(bpfStatsPath, orig) })
	}
	if b.tmp, err = os.MkdirTemp("", "sockscope-bench-"); err != nil {
		return "", false, err
	}
	benchkit.AtExit(func() { os.RemoveAll(b.tmp) })
	b.ns = fmt.Sprintf("sockscope-bench-%d", os.Getpid())
	if b.nsPath, err = benchkit.CreateNetns(b.ns); err != nil {
		return "", false, err
	}
	if b.prober, err = newNetnsProber(b.nsPath); err != nil {
		return "", false, err
	}
	b.seeForeign()
	benchkit.Logf("netns %s; %d rounds of %v (+%v warm-up), every mode in each, storm on CPU %s", b.ns, c.rounds, c.duration, c.warmup, c.cpu)

	modes := b.modes(recModes)
	for i := 1; i <= c.rounds; i++ {
		// Every mode once per round, the order rotated from round to round, so that none always
		// runs first or after a given other mode.
		for _, m := range rotate(modes, i-1) {
			r := &round{Pair: i, Mode: m.key}
			if err := b.runMode(m, r); err != nil {
				return "", false, fmt.Errorf("round %d %s: %w", i, m.key, err)
			}
			b.rounds = append(b.rounds, r)
			benchkit.Logf("round %d/%d %-24s %8.0f conn/s, storm %.2f µs CPU/conn%s", i, c.rounds, m.key, r.Storm.PerSecond, r.Storm.CPUPerConn(), r.logTail())
		}
	}

	if b.statsOrig != "" {
		r := &round{Pair: c.rounds + 1, Mode: modeStats}
		if err := b.tracedRound(r, c.sockscope, true); err != nil {
			return "", false, fmt.Errorf("BPF statistics round: %w", err)
		}
		b.statsRound = r
		benchkit.Logf("stats round:         %8.0f conn/s", r.Storm.PerSecond)
	}

	if b.statsOrig != "" && len(recModes) > 0 && recModes[0] == modeRecord {
		r := &round{Pair: c.rounds + 1, Mode: modeRecordStats}
		if err := b.recordRound(r, true); err != nil {
			return "", false, fmt.Errorf("BPF statistics round of record: %w", err)
		}
		b.recStatsRound = r
		benchkit.Logf("record stats round:  %8.0f conn/s", r.Storm.PerSecond)
	}

	if bpftrace != "" {
		r := &round{Pair: c.rounds + 2, Mode: modeBpftrace}
		if err := b.bpftraceRound(bpftrace, r); err != nil {
			// The comparison is optional: report why it is missing instead of failing.
			b.btNote = "bpftrace round failed: " + err.Error()
			benchkit.Logf("%s", b.btNote)
		} else {
			b.bt = r
			benchkit.Logf("bpftrace:            %8.0f conn/s, first event after %.0f ms", r.Storm.PerSecond, r.AttachMS)
		}
	}
	b.seeForeign()
	report, missed = b.report()
	return report, missed, nil
}

// seeForeign records tracing BPF programs that belong to none of the harness's tracers: they
// run on the storm's transitions too and make every figure worse.
func (b *bench) seeForeign() {
	if b.bpftool == "" {
		return
	}
	if progs, err := bpftoolProgs(b.bpftool); err == nil {
		b.addForeign(progs, nil)
	}
}

func (b *bench) addForeign(progs []bpfProg, ours map[uint32]bool) {
	for _, p := range progs {
		switch p.Type {
		case "tracing", "tracepoint", "raw_tracepoint", "raw_tracepoint_writable", "kprobe", "perf_event":
			if !ours[p.ID] {
				k := fmt.Sprintf("%s (%s)", p.Name, p.Type)
				if b.foreign[k] == nil {
					b.foreign[k] = map[uint32]bool{}
				}
				b.foreign[k][p.ID] = true
			}
		}
	}
}

func (b *bench) foreignList() []string {
	var l []string
	for k, ids := range b.foreign {
		if len(ids) > 1 {
			k = fmt.Sprintf("%s ×%d", k, len(ids))
		}
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

func (b *bench) note(s string) { b.notes = append(b.notes, s) }
