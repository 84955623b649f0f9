// Command exportbench measures what `sockscope export` costs and how it scales; `make bench`
// runs it.
//
//	exportbench [-sockscope bin/sockscope] [-tcpload bin/tcpload] [-out FILE] [-quick]
//	            [-phases storm,scale,churn] [-rounds 5] [-duration 10s] [-cpu 0] ...
//
// Three phases, each against a baseline taken in the same run:
//
//   - storm: the pinned loopback connection storm of tools/bench/trace (`tcpload storm` on one CPU in
//     a fresh network namespace); each round runs every mode once, in an order rotated from round
//     to round: no exporter, the floor (one empty program on inet_sock_set_state, attached by the
//     harness), and `sockscope export --netns bench=/run/netns/NS` running and scraped once a
//     second (and, with -unscraped, running but not scraped). It reports connections/s of each
//     against the baseline and the floor of its round, the exporter's CPU
//     during the storm minus its CPU during an equally long idle window with the same scrapes
//     (per connection: what the events cost user space, which should be nothing), checks that the
//     exporter counted every transition, and runs one more round with --bpf-stats for the BPF
//     run time per program run.
//   - scale: scrape time (client wall time and sockscope_scrape_duration_seconds) with the host
//     alone, with 100 idle containers, and with 100 containers holding 30,000 TIME_WAIT sockets
//     between them, against `ss -tan` run in each of the same namespaces.
//   - churn: an hour of scrapes (3,600, back to back) while containers are started and removed
//     a few at a time, then the exporter's RSS, threads, fds and BPF map entries against their
//     values at the start.
//   - netns: scrape time with 1, 10, 50 and 100 namespaces of the harness's own, with the socket
//     gauges kept from the transitions against --sockets.walk (a walk of each namespace's TCP
//     tables at every scrape) and, with -sockscope-before, an older binary, all in one run.
//   - naming: on the CRI containerd of .ci/cri.sh, the time from a pod's start to its name in the
//     exposition, and the exporter's CPU per resync and RSS under a churn of 100 pods, against an
//     exporter that names nothing running through the same phases.
//
// Progress goes to stderr, the markdown report to stdout and -out. It needs root, Docker and the
// image sockscope-test/busybox (bash .ci/docker.sh). Containers, the namespace, child processes
// and per-namespace sysctls are cleaned up on every exit path, Ctrl-C included; no host sysctl is
// changed. Exit status: 0 done, 1 error, 3 done but a target missed (-strict only).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sockscope/sockscope/internal/critest"
	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

type config struct {
	sockscope string
	tcpload   string
	out       string
	image     string
	phases    string
	quick     bool
	strict    bool

	// storm
	cpu       string
	port      int
	rounds    int
	duration  time.Duration
	warmup    time.Duration
	interval  time.Duration // between scrapes during storm rounds
	unscraped bool          // also rounds with the exporter running but not scraped

	// scale
	containers   int
	sockets      int
	scaleScrapes int
	ssRuns       int
	parallel     int // docker run/rm at once

	// churn
	churnScrapes int
	churnCycles  int
	churnHold    time.Duration

	// netns
	netnsCounts  string
	netnsScrapes int
	netnsRounds  int
	before       string

	// naming
	criEndpoint   string
	namingLatency int
	namingPods    int
	namingIdle    time.Duration
}

type bench struct {
	cfg     config
	runID   string
	machine benchkit.Machine
	started time.Time
	storm   *stormPhase
	scale   *scalePhase
	churn   *churnPhase
	naming  *namingPhase
	netns   *netnsPhase
	notes   []string
}

func main() {
	benchkit.Prog = "exportbench"
	var c config
	fs := flag.NewFlagSet("exportbench", flag.ContinueOnError)
	fs.StringVar(&c.sockscope, "sockscope", "bin/sockscope", "sockscope binary under test")
	fs.StringVar(&c.tcpload, "tcpload", "bin/tcpload", "tcpload binary (make bin/tcpload)")
	fs.StringVar(&c.out, "out", "", "also write the markdown report to this file")
	fs.StringVar(&c.image, "image", "sockscope-test/busybox", "container image with sh, sleep, httpd and wget (bash .ci/docker.sh builds it)")
	fs.StringVar(&c.phases, "phases", "storm,scale,churn", "phases to run, comma-separated: storm, scale, churn, naming, netns (make bench runs naming and netns on their own, into docs/performance-naming.md and docs/performance-scrape.md)")
	fs.BoolVar(&c.quick, "quick", false, "a short smoke run: 2 rounds of 3 s, 10 containers, 3,000 sockets, 10 timed scrapes, 200 churn scrapes, 30 churn cycles (explicit flags win)")
	fs.BoolVar(&c.strict, "strict", false, "exit with status 3 when a target is missed")
	fs.StringVar(&c.cpu, "cpu", "0", `CPU list for the storm's taskset, or "none"`)
	fs.IntVar(&c.port, "port", 7070, "storm port (inside the benchmark's own netns)")
	fs.IntVar(&c.rounds, "rounds", 7, "storm rounds; each runs every mode once, the order rotated from round to round")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured window of each storm")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "storm warm-up before the measured window")
	fs.DurationVar(&c.interval, "interval", time.Second, "scrape interval during the storm rounds")
	fs.BoolVar(&c.unscraped, "unscraped", true, "also run each storm round with the exporter running but not scraped (ABCABC): the kernel side's share of the slowdown")
	fs.IntVar(&c.containers, "containers", 100, "containers for the scale phase")
	fs.IntVar(&c.sockets, "sockets", 30000, "TIME_WAIT sockets for the scale phase, spread evenly over the containers")
	fs.IntVar(&c.scaleScrapes, "scrapes", 50, "scrapes timed in each state of the scale phase")
	fs.IntVar(&c.ssRuns, "ss-runs", 5, "runs of the ss baseline")
	fs.IntVar(&c.parallel, "parallel", 6, "docker run/rm commands at once")
	fs.IntVar(&c.churnScrapes, "churn-scrapes", 3600, "scrapes in the churn phase (an hour at one a second)")
	fs.IntVar(&c.churnCycles, "churn-cycles", 600, "container start/remove cycles in the churn phase")
	fs.DurationVar(&c.churnHold, "churn-hold", time.Second, "how long each churn container lives")
	fs.StringVar(&c.netnsCounts, "netns-counts", "1,10,50,100", "netns phase: numbers of namespaces counted")
	fs.IntVar(&c.netnsScrapes, "netns-scrapes", 10, "netns phase: scrapes timed per variant per round")
	fs.IntVar(&c.netnsRounds, "netns-rounds", 6, "netns phase: rounds, each scraping every variant, the order rotated")
	fs.StringVar(&c.before, "sockscope-before", "", "netns phase: also run this sockscope binary (e.g. one built from before the socket gauges) with default flags")
	fs.StringVar(&c.criEndpoint, "cri", critest.DefaultEndpoint, "CRI socket for the naming phase: .ci/cri.sh starts containerd 1.6 there (polled); .ci/cri2.sh starts containerd 2 at /run/sockscope-cri2/containerd.sock (events)")
	fs.IntVar(&c.namingLatency, "naming-latency", 20, "pods whose time to a name is measured, one at a time")
	fs.IntVar(&c.namingPods, "naming-pods", 100, "pods created and removed in the naming phase's churn")
	fs.DurationVar(&c.namingIdle, "naming-idle", 10*time.Second, "idle window of the naming phase")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(1)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "exportbench: unexpected argument %q\n", fs.Arg(0))
		os.Exit(1)
	}
	if c.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"rounds":        func() { c.rounds = 2 },
			"duration":      func() { c.duration = 3 * time.Second },
			"containers":    func() { c.containers = 10 },
			"sockets":       func() { c.sockets = 3000 },
			"scrapes":       func() { c.scaleScrapes = 10 },
			"ss-runs":       func() { c.ssRuns = 3 },
			"churn-scrapes": func() { c.churnScrapes = 200 },
			"churn-cycles":  func() { c.churnCycles = 30 },
			"naming-pods":   func() { c.namingPods = 20 },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}

	benchkit.CleanupOnSignal()

	b := &bench{cfg: c, runID: fmt.Sprint(os.Getpid())}
	report, missed, err := b.run()
	benchkit.RunCleanups()
	if err != nil {
		fmt.Fprintf(os.Stderr, "exportbench: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(report)
	if c.out != "" {
		if err := os.MkdirAll(filepath.Dir(c.out), 0o755); err == nil {
			err = writeReport(c.out, report)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "exportbench: %v\n", err)
			os.Exit(1)
		}
		benchkit.Logf("report written to %s", c.out)
	}
	benchkit.Logf("done in %v", time.Since(b.started).Round(time.Second))
	if missed && c.strict {
		os.Exit(3)
	}
}

func (b *bench) run() (string, bool, error) {
	c := &b.cfg
	b.started = time.Now()
	if os.Geteuid() != 0 {
		return "", false, errors.New("needs root (network namespaces, BPF, Docker)")
	}
	phases := map[string]bool{}
	for _, p := range strings.Split(c.phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "storm", "scale", "churn", "naming", "netns":
			phases[p] = true
		case "":
		default:
			return "", false, fmt.Errorf("-phases: unknown phase %q (want storm, scale, churn, naming, netns)", p)
		}
	}
	if c.rounds < 1 || c.duration <= 0 || c.warmup < 0 || c.interval <= 0 {
		return "", false, errors.New("-rounds must be >= 1, -duration and -interval > 0, -warmup >= 0")
	}
	if c.containers < 1 || c.sockets < 0 || c.scaleScrapes < 1 || c.ssRuns < 1 || c.parallel < 1 ||
		c.churnScrapes < 1 || c.churnCycles < 0 || c.churnHold < 0 {
		return "", false, errors.New("bad scale or churn flags: counts must be positive")
	}
	var err error
	if c.sockscope, err = benchkit.Executable(c.sockscope); err != nil {
		return "", false, err
	}
	need := []string{}
	if phases["storm"] {
		if c.tcpload, err = benchkit.Executable(c.tcpload); err != nil {
			return "", false, err
		}
		need = append(need, "ip")
		if c.cpu != "none" {
			need = append(need, "taskset")
		}
	}
	if phases["scale"] || phases["churn"] {
		need = append(need, "docker")
	}
	if phases["scale"] {
		need = append(need, "ss", "nsenter", "sh")
	}
	if phases["netns"] {
		need = append(need, "ip")
		if c.before != "" {
			if c.before, err = benchkit.Executable(c.before); err != nil {
				return "", false, err
			}
		}
		if c.netnsScrapes < 1 || c.netnsRounds < 1 {
			return "", false, errors.New("-netns-scrapes and -netns-rounds must be at least 1")
		}
	}
	if err := benchkit.NeedOnPath(need...); err != nil {
		return "", false, err
	}
	if phases["scale"] || phases["churn"] {
		if err := checkDocker(c.image); err != nil {
			return "", false, err
		}
		benchkit.AtExit(func() { removeLabelled(b.runID) })
	}
	b.machine = benchkit.DescribeMachine()
	benchkit.Logf("run %s: phases %s; sockscope %s", b.runID, c.phases, c.sockscope)

	if phases["storm"] {
		if b.storm, err = b.runStorm(); err != nil {
			return "", false, fmt.Errorf("storm: %w", err)
		}
	}
	if phases["scale"] {
		if b.scale, err = b.runScale(); err != nil {
			return "", false, fmt.Errorf("scale: %w", err)
		}
	}
	if phases["churn"] {
		if b.churn, err = b.runChurn(); err != nil {
			return "", false, fmt.Errorf("churn: %w", err)
		}
	}
	if phases["naming"] {
		if b.naming, err = b.runNaming(); err != nil {
			return "", false, fmt.Errorf("naming: %w", err)
		}
	}
	if phases["netns"] {
		if b.netns, err = b.runNetns(); err != nil {
			return "", false, fmt.Errorf("netns: %w", err)
		}
	}
	report, missed := b.report()
	return report, missed, nil
}

func (b *bench) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

// The report goes between these markers when -out already has them, so that the text around it
// (the analysis of a run) survives the next run; otherwise it is the whole file.
const (
	beginMarker = "<!-- exportbench: begin (generated by tools/bench/export; edit outside) -->"
	endMarker   = "<!-- exportbench: end -->"
)

func writeReport(path, report string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(spliceReport(string(old), report)), 0o644)
}

func spliceReport(old, report string) string {
	i := strings.Index(old, beginMarker)
	j := strings.Index(old, endMarker)
	if i < 0 || j < i {
		return report
	}
	return old[:i+len(beginMarker)] + "\n" + report + old[j:]
}
