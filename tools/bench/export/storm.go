package main

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

const (
	modeBaseline  = "baseline"
	modeExport    = "export"
	modeUnscraped = "export, not scraped"
	modeStats     = "export --bpf-stats"
	// modeFloor is one empty program on inet_sock_set_state, attached by the harness: the cost of
	// being attached at all, the floor the exporter is judged against. (Its other hooks,
	// retransmits and resets, do not fire in the storm.)
	modeFloor = "floor"
	// modeCountFloor is the least a per-namespace counter does on that hook, attached by the
	// harness: the socket's namespace read, a one-entry namespace table checked, one per-CPU
	// counter added to (benchkit.HookStateCounter). It shows what counting at all costs.
	modeCountFloor = "counting floor"
)

type stormRound struct {
	Pair    int
	Mode    string
	Storm   benchkit.StormResult
	Counted uint64 // the counting floor's count
	// Resets is the storm namespace's TcpEstabResets over the round: a connection reset ends a
	// client socket CLOSE_WAIT -> CLOSE (and may end its server's FIN_WAIT1 -> CLOSE), one or two
	// transitions short of the usual 10.
	Resets uint64
	// ShortEnds is what the exporter counted of those two transitions.
	ShortEnds, ResetEnds float64

	// Exporter rounds.
	ReadyMS      float64       // exec to "exporting on"
	StormWindow  time.Duration // from just before the storm starts to just after it ends
	IdleWindow   time.Duration // as long, right after, scrapes going on
	CPUStorm     float64       // exporter utime+stime (/proc/PID/stat) over StormWindow, seconds
	CPUIdle      float64       // over IdleWindow
	PCPUStorm    float64       // the same from the threads' schedstat (ns resolution)
	PCPUIdle     float64
	ScrapeCPU    [2]float64 // schedstat CPU while a GET was in flight, storm and idle window
	ThreadsLost  bool       // the exporter had fewer threads at the end (schedstat sums miss exited ones)
	ScrapesStorm int
	ScrapesIdle  int
	ScrapeWall   []float64 // ms, scrapes during the storm
	ScrapeRep    []float64 // ms, sockscope_scrape_duration_seconds of those
	ScrapeErrs   int       // failed GETs
	Transitions  float64   // sockscope_tcp_state_transitions_total{container="bench"} at the end
	ConnectsOK   float64   // sockscope_tcp_connects_total{container="bench",result="success"}
	TimeWait     float64   // TIME_WAIT in the storm's netns at the storm's last scrape
	Lost         map[string]float64
	RSSKB        int64
	Progs        []progStat // --bpf-stats round
}

// extraCPU is the exporter's CPU during the storm minus that during the idle window with the
// same scrapes (scaled to the storm window's length), seconds, from /proc/PID/stat.
func (r *stormRound) extraCPU() float64 {
	if r.IdleWindow <= 0 {
		return r.CPUStorm
	}
	return r.CPUStorm - r.CPUIdle*secs(r.StormWindow)/secs(r.IdleWindow)
}

// extraCPUOutside is the same for the CPU outside the scrapes (schedstat, while no GET was in
// flight): it does not depend on how long each scrape's socket walk took, which differs between
// the windows because the idle window starts with the storm's TIME_WAIT sockets all there.
func (r *stormRound) extraCPUOutside() float64 {
	if r.IdleWindow <= 0 {
		return r.PCPUStorm - r.ScrapeCPU[0]
	}
	return (r.PCPUStorm - r.ScrapeCPU[0]) - (r.PCPUIdle-r.ScrapeCPU[1])*secs(r.StormWindow)/secs(r.IdleWindow)
}

func perConn(cpu float64, conns int64) float64 {
	if conns == 0 {
		return 0
	}
	return cpu * 1e6 / float64(conns)
}

type progStat struct {
	Name    string
	Runs    float64
	Seconds float64
}

func (p progStat) nsPerRun() float64 {
	if p.Runs == 0 {
		return 0
	}
	return p.Seconds * 1e9 / p.Runs
}

type stormPhase struct {
	ns, nsPath string
	inode      uint32 // of the netns
	rounds     []*stormRound
	stats      *stormRound
	warnings   []string
	binary     string
}

func (b *bench) runStorm() (*stormPhase, error) {
	c := b.cfg
	p := &stormPhase{ns: "sockscope-exportbench-" + b.runID, binary: benchkit.FileID(c.sockscope, "2006-01-02 15:04 UTC")}
	var err error
	if p.nsPath, err = benchkit.CreateNetns(p.ns); err != nil {
		return nil, err
	}
	if p.inode, err = containers.NetnsInodeOfPath(p.nsPath); err != nil {
		return nil, err
	}
	benchkit.Logf("storm: netns %s; %d rounds of %v (+%v warm-up) per mode, storm on CPU %s, a scrape every %v",
		p.ns, c.rounds, c.duration, c.warmup, c.cpu, c.interval)
	modes := []string{modeBaseline, modeFloor, modeCountFloor, modeExport}
	if c.unscraped {
		modes = append(modes, modeUnscraped)
	}
	for i := 1; i <= c.rounds; i++ {
		// Every mode once per round, the order rotated from round to round.
		n := (i - 1) % len(modes)
		for _, mode := range append(append([]string(nil), modes[n:]...), modes[:n]...) {
			r := &stormRound{Pair: i, Mode: mode}
			switch mode {
			case modeBaseline:
				r.Storm, err = b.stormOnce(p)
			case modeFloor:
				var fl *benchkit.Floor
				if fl, err = benchkit.AttachFloor(benchkit.HookState); err == nil {
					r.Storm, err = b.stormOnce(p)
					fl.Close()
				}
			case modeCountFloor:
				var fl *benchkit.Floor
				if fl, err = benchkit.AttachFloor(fmt.Sprintf("%s@%d", benchkit.HookStateCounter, p.inode)); err == nil {
					r.Storm, r.Resets, err = b.stormCountingResets(p)
					time.Sleep(200 * time.Millisecond) // the last connection's last transitions
					fl.Close()
					r.Counted = fl.Counts
				}
			case modeExport:
				err = b.exportRound(p, r, false, true)
			case modeUnscraped:
				err = b.exportRound(p, r, false, false)
			}
			if err != nil {
				return nil, fmt.Errorf("round %d %s: %w", i, mode, err)
			}
			p.rounds = append(p.rounds, r)
			benchkit.Logf("storm %d/%d %-20s %8.0f conn/s, storm %.2f µs CPU/conn%s", i, c.rounds, mode, r.Storm.PerSecond, r.Storm.CPUPerConn(), r.logTail())
		}
	}
	st := &stormRound{Pair: c.rounds + 1, Mode: modeStats}
	if err := b.exportRound(p, st, true, true); err != nil {
		return nil, fmt.Errorf("--bpf-stats round: %w", err)
	}
	p.stats = st
	benchkit.Logf("storm --bpf-stats: %8.0f conn/s", st.Storm.PerSecond)
	return p, nil
}

// logTail is the end of an exporter round's progress line.
func (r *stormRound) logTail() string {
	switch r.Mode {
	case modeExport:
		return fmt.Sprintf("; exporter CPU %.3f s storm, %.3f s idle (%d/%d scrapes, %.3f/%.3f s in them): %+.3f µs/conn, outside scrapes %+.3f µs/conn; counted %.0f of %.0f transitions (%d resets)",
			r.PCPUStorm, r.PCPUIdle, r.ScrapesStorm, r.ScrapesIdle, r.ScrapeCPU[0], r.ScrapeCPU[1], perConn(r.extraCPU(), r.Storm.Total),
			perConn(r.extraCPUOutside(), r.Storm.Total), r.Transitions, r.expectedCount(), r.Resets)
	case modeUnscraped:
		return fmt.Sprintf("; exporter CPU %.3f s during the storm: %.4f µs/conn", r.PCPUStorm, perConn(r.PCPUStorm, r.Storm.Total))
	}
	return ""
}

// stormOnce runs one `tcpload storm` in the benchmark's netns, pinned as configured.
func (b *bench) stormOnce(p *stormPhase) (benchkit.StormResult, error) {
	c := b.cfg
	return benchkit.RunStorm(c.tcpload, p.ns, c.cpu, c.port, c.duration, c.warmup)
}

// stormCountingResets is stormOnce with the namespace's connection resets over it.
func (b *bench) stormCountingResets(p *stormPhase) (benchkit.StormResult, uint64, error) {
	r0, err := benchkit.Nstat(p.ns, "TcpEstabResets")
	if err != nil {
		return benchkit.StormResult{}, 0, err
	}
	res, err := b.stormOnce(p)
	if err != nil {
		return res, 0, err
	}
	r1, err := benchkit.Nstat(p.ns, "TcpEstabResets")
	return res, r1 - r0, err
}

// expected is how many transitions the exporter must have counted in the round: 10 per
// connection and the listener's 2, less the ends that resets cut short. It is exact only if the
// exporter's CLOSE_WAIT -> CLOSE count equals the kernel's reset count, and its FIN_WAIT1 ->
// CLOSE count is at most that (no counter tells those apart from resets in FIN_WAIT2).
func (r *stormRound) expected() (n float64, exact bool) {
	n = float64(benchkit.TransitionsPerConn*r.Storm.Total+2) - r.ShortEnds
	return n, r.ResetEnds == float64(r.Resets) && r.ShortEnds-r.ResetEnds <= float64(r.Resets)
}

// timedScrape is one scrape of the background loop.
type timedScrape struct {
	at  time.Time
	s   *scrape
	err error
	cpu float64 // the exporter's CPU (schedstat) while the GET was in flight
}

// scrapeLoop scrapes every interval until stop is closed.
func scrapeLoop(e *exporter, interval time.Duration, stop chan struct{}) (results func() []timedScrape) {
	var mu sync.Mutex
	var out []timedScrape
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			at := time.Now()
			c0, _ := procCPUPrecise(e.c.Pid())
			s, err := e.scrape()
			c1, _ := procCPUPrecise(e.c.Pid())
			mu.Lock()
			out = append(out, timedScrape{at: at, s: s, err: err, cpu: c1 - c0})
			mu.Unlock()
		}
	}()
	return func() []timedScrape {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return out
	}
}

// exportRound runs the storm with `sockscope export` counting its netns and scraped every
// interval, then keeps the exporter (and the scrapes) going for an idle window as long as the
// storm, to tell the CPU the events cost the exporter from what its scrapes cost.
func (b *bench) exportRound(p *stormPhase, r *stormRound, stats, scraped bool) (err error) {
	c := b.cfg
	args := []string{"--netns", "bench=" + p.nsPath}
	if stats {
		args = append(args, "--bpf-stats")
	}
	e, err := startExporter(c.sockscope, args...)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			e.abort()
		}
	}()
	r.ReadyMS = benchkit.Millis(e.ready)
	first, err := e.scrape()
	if err != nil {
		return fmt.Errorf("first scrape: %w", err)
	}
	if _, ok := first.M.sum("sockscope_container_info", "container", "bench"); !ok {
		return fmt.Errorf("the exporter does not show the storm's namespace as container=\"bench\"")
	}

	stop := make(chan struct{})
	st0, _ := e.status()
	var cpu, pcpu [3]float64
	read := func(i int) (err error) {
		if cpu[i], err = e.cpu(); err == nil {
			pcpu[i], err = procCPUPrecise(e.c.Pid())
		}
		return err
	}
	if err := read(0); err != nil {
		return err
	}
	t0 := time.Now()
	results := func() []timedScrape { return nil }
	if scraped {
		results = scrapeLoop(e, c.interval, stop)
	}
	r.Storm, r.Resets, err = b.stormCountingResets(p)
	t1 := time.Now()
	cerr := read(1)
	if err == nil {
		err = cerr
	}
	if err != nil {
		close(stop)
		results()
		return err
	}
	if scraped {
		time.Sleep(time.Until(t1.Add(t1.Sub(t0))))
	}
	t2 := time.Now()
	err = read(2)
	close(stop)
	scrapes := results()
	if err != nil {
		return err
	}
	r.StormWindow, r.IdleWindow = t1.Sub(t0), t2.Sub(t1)
	r.CPUStorm, r.CPUIdle = cpu[1]-cpu[0], cpu[2]-cpu[1]
	r.PCPUStorm, r.PCPUIdle = pcpu[1]-pcpu[0], pcpu[2]-pcpu[1]
	if st1, err := e.status(); err == nil && st1.Threads < st0.Threads {
		r.ThreadsLost = true
	}
	var lastStorm *scrape
	for _, s := range scrapes {
		if s.err != nil {
			r.ScrapeErrs++
			if r.ScrapeErrs == 1 {
				b.note("A scrape failed in storm round %d (%s): %v", r.Pair, r.Mode, s.err)
			}
			continue
		}
		switch {
		case s.at.Before(t1):
			r.ScrapesStorm++
			r.ScrapeCPU[0] += s.cpu
			r.ScrapeWall = append(r.ScrapeWall, benchkit.Millis(s.s.Wall))
			r.ScrapeRep = append(r.ScrapeRep, s.s.Reported*1e3)
			lastStorm = s.s
		case s.at.Before(t2):
			r.ScrapesIdle++
			r.ScrapeCPU[1] += s.cpu
		}
	}
	if lastStorm != nil {
		r.TimeWait = lastStorm.M.value("sockscope_tcp_sockets", "container", "bench", "state", "TIME_WAIT")
	}

	// The storm is over. Its last connections' final transitions can still be on their way
	// (an ACK in a softirq, a timer): scrape until the count holds still for 200 ms, up to 2 s.
	last, err := e.scrape()
	if err != nil {
		return fmt.Errorf("final scrape: %w", err)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		again, err := e.scrape()
		if err != nil {
			return fmt.Errorf("final scrape: %w", err)
		}
		was := last.M.value("sockscope_tcp_state_transitions_total", "container", "bench")
		last = again
		if last.M.value("sockscope_tcp_state_transitions_total", "container", "bench") == was {
			break
		}
	}
	r.Transitions = last.M.value("sockscope_tcp_state_transitions_total", "container", "bench")
	r.ResetEnds = last.M.value("sockscope_tcp_state_transitions_total", "container", "bench", "from", "CLOSE_WAIT", "to", "CLOSE")
	r.ShortEnds = r.ResetEnds + last.M.value("sockscope_tcp_state_transitions_total", "container", "bench", "from", "FIN_WAIT1", "to", "CLOSE")
	r.ConnectsOK = last.M.value("sockscope_tcp_connects_total", "container", "bench", "result", "success")
	r.Lost = last.M.byLabel("sockscope_lost_events_total", "reason")
	if stats {
		runs := last.M.byLabel("sockscope_bpf_program_runs_total", "program")
		secs := last.M.byLabel("sockscope_bpf_program_run_seconds_total", "program")
		for name, n := range runs {
			r.Progs = append(r.Progs, progStat{Name: name, Runs: n, Seconds: secs[name]})
		}
		sort.Slice(r.Progs, func(i, j int) bool { return r.Progs[i].Seconds > r.Progs[j].Seconds })
	}
	if st, err := e.status(); err == nil {
		r.RSSKB = st.RSSKB
	}
	stopped = true
	if err := e.stop(); err != nil {
		return err
	}
	p.warnings = append(p.warnings, e.warnings()...)
	return nil
}

// expectedCount is expected() for a progress line.
func (r *stormRound) expectedCount() float64 { n, _ := r.expected(); return n }

func secs(d time.Duration) float64 { return d.Seconds() }
