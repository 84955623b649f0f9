// Command bench measures what `sockscope trace -o json > file` and `sockscope record -w FILE`
// cost a loopback connect/accept/close storm; `make bench` runs it.
//
//	bench [-sockscope bin/sockscope] [-tcpload bin/tcpload] [-rounds 5] [-duration 5s]
//	      [-warmup 1s] [-out FILE] [-cpu 0] [-port 7070] [-bpftrace auto] [-record both] [-strict]
//
// It creates a fresh network namespace sockscope-bench-PID, runs `tcpload storm` inside it
// pinned to one CPU, alternately without a tracer and under
// `sockscope trace -o json --netns /run/netns/NS > file` (ABAB), and once under a bpftrace
// one-liner for comparison. It reports connections/s, the state events written against the
// 10 transitions each connection makes, lost events, the tracer's CPU per connection, peak RSS,
// time to attach and BPF run time per program (from one extra traced round with
// kernel.bpf_stats_enabled=1), as a markdown fragment on stdout and in -out. Progress goes to stderr.
//
// With -record both (the default) each pair of rounds also has a round under
// `sockscope record -w FILE --netns /run/netns/NS --interval 5s` and one with --syscalls=false
// (-record on: only the former; off: trace only), the traced modes' order rotating from pair to
// pair. Each recording is read back: its events are checked against the ring records the storm
// makes, and its size per event is reported. The summary compares recording with trace against
// the target that recording costs no more than trace mode.
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

	"github.com/sockscope/sockscope/tools/internal/benchkit"
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
	fs.StringVar(&cfg.tcpload, "tcpload", "bin/tcpload", "tcpload binary (go build -o bin/tcpload ./tools/tcpload)")
	fs.IntVar(&cfg.rounds, "rounds", 5, "rounds per mode (baseline and traced modes alternate: ABAB, ABCDABCD with -record)")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured window of each storm")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "storm warm-up before the measured window")
	fs.StringVar(&cfg.out, "out", "", "also write the markdown report to this file")
	fs.StringVar(&cfg.cpu, "cpu", "0", `CPU list for taskset, or "none" to run the storm unpinned`)
	fs.IntVar(&cfg.port, "port", 7070, "storm port (inside the benchmark's own netns)")
	fs.StringVar(&cfg.bpftrace, "bpftrace", "auto", `bpftrace comparison round: "auto" (if installed), "off", or a path`)
	fs.DurationVar(&cfg.attachTimeout, "attach-timeout", 10*time.Second, "limit for sockscope to print its attached line")
	fs.DurationVar(&cfg.exitTimeout, "exit-timeout", 60*time.Second, "limit for a tracer to exit after SIGINT")
	fs.StringVar(&cfg.record, "record", "both", `recording rounds in every pair: "both" (sockscope record, and with --syscalls=false), "on" (the former), "off"`)
	fs.BoolVar(&cfg.strict, "strict", false, "exit with status 3 when a target is missed")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(1)
	}
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
	benchkit.Logf("netns %s; %d rounds of %v (+%v warm-up) per mode, storm on CPU %s", b.ns, c.rounds, c.duration, c.warmup, c.cpu)

	for i := 1; i <= c.rounds; i++ {
		base := &round{Pair: i, Mode: modeBaseline}
		if base.Storm, err = b.storm(); err != nil {
			return "", false, fmt.Errorf("round %d baseline: %w", i, err)
		}
		b.rounds = append(b.rounds, base)
		benchkit.Logf("round %d/%d baseline:  %8.0f conn/s", i, c.rounds, base.Storm.PerSecond)

		for _, mode := range rotate(append([]string{modeSockscope}, recModes...), i-1) {
			r := &round{Pair: i, Mode: mode}
			if mode == modeSockscope {
				if err := b.tracedRound(r, false); err != nil {
					return "", false, fmt.Errorf("round %d traced: %w", i, err)
				}
				b.rounds = append(b.rounds, r)
				benchkit.Logf("round %d/%d sockscope: %8.0f conn/s (%.3fx), attached in %.0f ms, %.2f µs CPU/conn, %d state lines for %d connections",
					i, c.rounds, r.Storm.PerSecond, r.Storm.PerSecond/base.Storm.PerSecond, r.AttachMS, r.cpuPerConn(), r.StateLines, r.Storm.Total)
				continue
			}
			if err := b.recordRound(r, false); err != nil {
				return "", false, fmt.Errorf("round %d %s: %w", i, mode, err)
			}
			b.rounds = append(b.rounds, r)
			events := "no summary line"
			if r.Rec != nil {
				events = fmt.Sprintf("%d events (%d expected)", r.Rec.Events, expectedRecords(r.Storm.Total))
			}
			benchkit.Logf("round %d/%d %s: %8.0f conn/s (%.3fx), attached in %.0f ms, %.2f µs CPU/conn, %s, %d bytes",
				i, c.rounds, mode, r.Storm.PerSecond, r.Storm.PerSecond/base.Storm.PerSecond, r.AttachMS, r.cpuPerConn(), events, r.File.Bytes)
		}
	}

	if b.statsOrig != "" {
		r := &round{Pair: c.rounds + 1, Mode: modeStats}
		if err := b.tracedRound(r, true); err != nil {
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
