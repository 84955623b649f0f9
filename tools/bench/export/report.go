package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// Targets of the exporter benchmark.
const (
	targetVsFloor    = 0.99 // at most 1% fewer connections/s than the floor, with the exporter counting and scraped
	targetCPUPerConn = 0.1  // µs of exporter CPU per connection beyond its scrapes: nothing per event reaches user space
	targetRSSGrowth  = 1.25 // RSS after the churn against the start (the harness's own bound for "no leak")
)

func (b *bench) report() (string, bool) {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	m, c := b.machine, b.cfg
	missed := false
	p("### `sockscope export` benchmark\n\n")
	p("Measured %s on Linux %s, %s, %d vCPUs, %.1f GB memory (load average at start: %s, at end: %s); the whole run took %v.\n",
		m.Date, m.Kernel, m.CPU, m.NumCPU, m.MemoryGB, m.LoadAvg, benchkit.LoadAvg(), time.Since(b.started).Round(time.Second))
	p("sockscope binary: %s. Command: `go run ./tools/bench/export %s`.\n\n", benchkit.FileID(c.sockscope, "2006-01-02 15:04 UTC"), strings.Join(os.Args[1:], " "))
	if s := b.storm; s != nil {
		missed = b.reportStorm(p, s) || missed
	}
	if s := b.scale; s != nil {
		b.reportScale(p, s)
	}
	if s := b.churn; s != nil {
		missed = b.reportChurn(p, s) || missed
	}
	if s := b.naming; s != nil {
		b.reportNaming(p, s)
	}
	if s := b.netns; s != nil {
		b.reportNetns(p, s)
	}
	var notes []string
	notes = append(notes, b.notes...)
	var namingWarnings []string
	if b.naming != nil {
		namingWarnings = b.naming.warnings
	}
	var netnsWarnings []string
	if b.netns != nil {
		netnsWarnings = b.netns.warnings
	}
	for _, ws := range [][]string{b.stormWarnings(), b.scaleWarnings(), b.churnWarnings(), namingWarnings, netnsWarnings} {
		if len(ws) > 0 {
			notes = append(notes, fmt.Sprintf("The exporter printed %d warning lines, e.g. `%s`.", len(ws), ws[0]))
		}
	}
	benchkit.WriteNotes(&w, notes)
	return w.String(), missed
}

func (b *bench) stormWarnings() []string {
	if b.storm == nil {
		return nil
	}
	return b.storm.warnings
}

func (b *bench) scaleWarnings() []string {
	if b.scale == nil {
		return nil
	}
	return b.scale.warnings
}

func (b *bench) churnWarnings() []string {
	if b.churn == nil {
		return nil
	}
	return b.churn.warnings
}

func (b *bench) reportStorm(p func(string, ...any), s *stormPhase) bool {
	c := b.cfg
	var baseRates, expRates, ratios, wall, rep, ready, tw []float64
	var unRates, unRatios []float64
	var unCPU, unConns float64
	var extraCPU, extraOutside, totalConns float64
	var scrapeCPU, scrapes [2]float64
	threadsLost := false
	var counted, expected, connects, conns float64
	var rss int64
	lost := map[string]float64{}
	pairBases, floors := map[int]float64{}, map[int]float64{}
	var floorRatios, vsFloor, floorRates []float64
	var countRates, countVsFloor, expVsCount []float64
	var countCounted, countExpected, countResets, resets float64
	inexact := false
	countFloors := map[int]float64{}
	for _, r := range s.rounds {
		switch r.Mode {
		case modeBaseline:
			pairBases[r.Pair] = r.Storm.PerSecond
		case modeFloor:
			floors[r.Pair] = r.Storm.PerSecond
		case modeCountFloor:
			countFloors[r.Pair] = r.Storm.PerSecond
		}
	}
	var pairBase float64
	for _, r := range s.rounds {
		pairBase = pairBases[r.Pair]
		switch r.Mode {
		case modeBaseline:
			baseRates = append(baseRates, r.Storm.PerSecond)
		case modeFloor:
			floorRates = append(floorRates, r.Storm.PerSecond)
			floorRatios = append(floorRatios, r.Storm.PerSecond/pairBase)
		case modeCountFloor:
			countRates = append(countRates, r.Storm.PerSecond)
			if fl := floors[r.Pair]; fl > 0 {
				countVsFloor = append(countVsFloor, r.Storm.PerSecond/fl)
			}
			countCounted += float64(r.Counted)
			countExpected += float64(benchkit.TransitionsPerConn*r.Storm.Total + 2)
			countResets += float64(r.Resets)
		case modeUnscraped:
			unRates = append(unRates, r.Storm.PerSecond)
			unRatios = append(unRatios, r.Storm.PerSecond/pairBase)
			unCPU += r.PCPUStorm
			unConns += float64(r.Storm.Total)
			counted += r.Transitions
			e, exact := r.expected()
			expected += e
			inexact = inexact || !exact
			resets += float64(r.Resets)
			connects += r.ConnectsOK
			conns += float64(r.Storm.Total)
			for k, v := range r.Lost {
				lost[k] += v
			}
		case modeExport:
			expRates = append(expRates, r.Storm.PerSecond)
			ratios = append(ratios, r.Storm.PerSecond/pairBase)
			if fl := floors[r.Pair]; fl > 0 {
				vsFloor = append(vsFloor, r.Storm.PerSecond/fl)
			}
			if cf := countFloors[r.Pair]; cf > 0 {
				expVsCount = append(expVsCount, r.Storm.PerSecond/cf)
			}
			extraCPU += r.extraCPU()
			extraOutside += r.extraCPUOutside()
			totalConns += float64(r.Storm.Total)
			scrapeCPU[0] += r.ScrapeCPU[0]
			scrapeCPU[1] += r.ScrapeCPU[1]
			scrapes[0] += float64(r.ScrapesStorm)
			scrapes[1] += float64(r.ScrapesIdle)
			threadsLost = threadsLost || r.ThreadsLost
			wall = append(wall, r.ScrapeWall...)
			rep = append(rep, r.ScrapeRep...)
			ready = append(ready, r.ReadyMS)
			tw = append(tw, r.TimeWait)
			counted += r.Transitions
			e, exact := r.expected()
			expected += e
			inexact = inexact || !exact
			resets += float64(r.Resets)
			connects += r.ConnectsOK
			conns += float64(r.Storm.Total)
			rss = max(rss, r.RSSKB)
			for k, v := range r.Lost {
				lost[k] += v
			}
		}
	}
	medBase, medExp := benchkit.Median(baseRates), benchkit.Median(expRates)
	ratio := medExp / medBase
	loR, hiR := benchkit.MinMax(ratios)
	cpuPerConn := extraCPU * 1e6 / totalConns
	outsidePerConn := extraOutside * 1e6 / totalConns
	var lostTotal float64
	for _, v := range lost {
		lostTotal += v
	}
	medVsFloor := benchkit.Median(vsFloor)
	loF, hiF := benchkit.MinMax(vsFloor)
	okRate := medVsFloor >= targetVsFloor
	okCPU := math.Abs(outsidePerConn) <= targetCPUPerConn
	okCount := counted == expected && !inexact && connects == conns && lostTotal == 0

	pin := "pinned to CPU " + c.cpu
	if c.cpu == "none" {
		pin = "not pinned"
	}
	p("#### 1. Connection storm with the exporter counting it\n\n")
	p("Workload: `tcpload storm` (one client and one server thread on 127.0.0.1 in a fresh network namespace, %s; "+
		"connect, accept, server close, client read to EOF, close: %d state transitions a connection). "+
		"%d rounds of %v (after %v warm-up); each round runs, in an order rotated from round to round, the storm without an exporter, with the floor "+
		"(one empty program on `inet_sock_set_state`, attached by the harness: the cost of being attached at all), with the counting floor "+
		"(a program of the harness that does the least a per-namespace counter does: reads the socket's namespace, checks it against a one-entry table, adds one to a per-CPU counter) and with `sockscope export --netns bench=/run/netns/NS` "+
		"(the host's namespace and Docker's containers counted too, as by default) scraped every %v over loopback "+
		"(with -unscraped, also with the exporter running but not scraped, to tell the kernel side's share of the cost from the scrapes'). "+
		"The exporter starts before each of its rounds and stops after it. After each exporter round's storm, the exporter and the scrapes go on "+
		"for an idle window as long as the storm, with the same scrapes: the exporter's CPU (utime+stime of /proc/PID/stat) in the storm window minus that in the idle window "+
		"is what the connections cost it beyond the scrapes. The scrapes themselves do not cost the same in both windows (each walks the TCP table, and the idle window "+
		"starts with all of the storm's TIME_WAIT sockets), so the figure judged is the same difference for the CPU outside the scrapes: the exporter's threads' "+
		"time on CPU (/proc/PID/task/*/schedstat, ns) minus that while a GET was in flight. One more round runs with `--bpf-stats` for the programs' run time "+
		"(statistics cost time themselves, so the compared rounds run without them).\n\n",
		pin, benchkit.TransitionsPerConn, c.rounds, c.duration, c.warmup, c.interval)
	p("| figure | result | target | met |\n|---|---|---|---|\n")
	p("| connections/s without the exporter (median) | %s | | |\n", benchkit.Thousands(int64(math.Round(medBase))))
	if len(floorRates) > 0 {
		lo, hi := benchkit.MinMax(floorRatios)
		p("| connections/s with one empty program on `inet_sock_set_state` (the floor; median) | %s (per round %.3fx–%.3fx of the baseline, median %.3fx) | | |\n",
			benchkit.Thousands(int64(math.Round(benchkit.Median(floorRates)))), lo, hi, benchkit.Median(floorRatios))
	}
	p("| connections/s with the exporter, scraped every %v (median) | %s (%+.1f%%; per round %.3fx–%.3fx of the baseline, median %.3fx) | | |\n",
		c.interval, benchkit.Thousands(int64(math.Round(medExp))), (ratio-1)*100, loR, hiR, benchkit.Median(ratios))
	p("| the same against the floor of its round (median, range) | %.3fx (%.3f–%.3f) | ≥ %.2fx | %s |\n", medVsFloor, loF, hiF, targetVsFloor, benchkit.Verdict(okRate))
	if len(countRates) > 0 {
		lo, hi := benchkit.MinMax(countVsFloor)
		p("| the counting floor (the socket's namespace read, a one-entry namespace table, one per-CPU counter added to) against the floor of its round (median, range) | %.3fx (%.3f–%.3f); it counted %s of %s transitions (up to 2 fewer per connection reset: %s resets) | | |\n",
			benchkit.Median(countVsFloor), lo, hi, benchkit.Thousands(int64(countCounted)), benchkit.Thousands(int64(countExpected)), benchkit.Thousands(int64(countResets)))
		lo, hi = benchkit.MinMax(expVsCount)
		p("| the exporter against the counting floor of its round (median, range) | %.3fx (%.3f–%.3f) | | |\n", benchkit.Median(expVsCount), lo, hi)
	}
	if len(unRates) > 0 {
		lo, hi := benchkit.MinMax(unRatios)
		med := benchkit.Median(unRates)
		p("| connections/s with the exporter running, not scraped (median; diagnostic) | %s (%+.1f%%; per round %.3fx–%.3fx, median %.3fx) | | |\n",
			benchkit.Thousands(int64(math.Round(med))), (med/medBase-1)*100, lo, hi, benchkit.Median(unRatios))
		p("| exporter CPU during the storm when not scraped (schedstat, all those rounds) | %.4f µs per connection (%.3f s over %s connections) | | |\n",
			unCPU*1e6/math.Max(unConns, 1), unCPU, benchkit.Thousands(int64(unConns)))
	}
	p("| exporter CPU per connection, storm window minus idle window (/proc/PID/stat, all rounds) | %+.3f µs (%+.2f s over %s connections) | | |\n",
		cpuPerConn, extraCPU, benchkit.Thousands(int64(totalConns)))
	p("| exporter CPU per connection outside the scrapes, storm minus idle (schedstat, all rounds) | %+.4f µs (%+.3f s) | ≈ 0 (within ±%.1f µs) | %s |\n",
		outsidePerConn, extraOutside, targetCPUPerConn, benchkit.Verdict(okCPU))
	p("| exporter CPU per scrape, storm window / idle window | %.1f / %.1f ms | | |\n",
		scrapeCPU[0]*1e3/math.Max(scrapes[0], 1), scrapeCPU[1]*1e3/math.Max(scrapes[1], 1))
	p("| transitions counted in container=\"bench\" | %s of %s (%d per connection + 2 per storm, less the ends cut short by the %s connection resets the kernel counted, TcpEstabResets%s) | all | %s |\n",
		benchkit.Thousands(int64(counted)), benchkit.Thousands(int64(expected)), benchkit.TransitionsPerConn, benchkit.Thousands(int64(resets)),
		map[bool]string{true: "; **in some round the exporter's CLOSE_WAIT -> CLOSE count was not the kernel's reset count**", false: ""}[inexact],
		benchkit.Verdict(counted == expected && !inexact))
	p("| successful connects counted | %s of %s | all | %s |\n", benchkit.Thousands(int64(connects)), benchkit.Thousands(int64(conns)), benchkit.Verdict(connects == conns))
	p("| lost counts (sockscope_lost_events_total, all reasons) | %s | 0 | %s |\n", benchkit.Thousands(int64(lostTotal)), benchkit.Verdict(lostTotal == 0))
	if len(wall) > 0 {
		p("| scrape during the storm, client wall time (median / max) | %.1f / %.1f ms | | |\n", benchkit.Median(wall), percentile(wall, 100))
		p("| sockscope_scrape_duration_seconds during the storm (median / max) | %.1f / %.1f ms | | |\n", benchkit.Median(rep), percentile(rep, 100))
		p("| TIME_WAIT sockets in the storm's namespace at the storm's last scrape (median) | %s | | |\n", benchkit.Thousands(int64(benchkit.Median(tw))))
	}
	p("| exporter: exec to `exporting on` (median) / RSS at the end of a round (max) | %.0f ms / %.1f MB | | |\n", benchkit.Median(ready), benchkit.RSSMB(rss))
	if st := s.stats; st != nil && len(st.Progs) > 0 {
		var ns float64
		for _, pr := range st.Progs {
			ns += pr.Seconds * 1e9
		}
		perConnUS := ns / 1000 / float64(max(st.Storm.Total, 1))
		p("| BPF run time per connection (`--bpf-stats` round, %s conn/s, %.3fx) | %.2f µs (%.1f%% of the %.1f µs a connection takes at the baseline's median rate) | | |\n",
			benchkit.Thousands(int64(st.Storm.PerSecond)), st.Storm.PerSecond/medBase, perConnUS, perConnUS/(1e6/medBase)*100, 1e6/medBase)
	}
	p("\n")
	if st := s.stats; st != nil && len(st.Progs) > 0 {
		p("BPF programs of the exporter in the `--bpf-stats` round (sockscope_bpf_program_run_seconds_total / sockscope_bpf_program_runs_total; " +
			"they run for every transition on the machine and return early outside the counted namespaces):\n\n")
		p("| program | runs | runs per storm connection | ns per run |\n|---|---:|---:|---:|\n")
		for _, pr := range st.Progs {
			p("| %s | %s | %.2f | %.0f |\n", pr.Name, benchkit.Thousands(int64(pr.Runs)), pr.Runs/float64(max(st.Storm.Total, 1)), pr.nsPerRun())
		}
		p("\n")
	}
	p("Per round:\n\n")
	p("| round | mode | conn/s | vs baseline of the round | connections (all) | transitions counted (expected) | exporter CPU storm / idle (stat) | of which in scrapes (schedstat) | scrapes storm / idle | µs/conn: storm − idle / outside scrapes | slowest connection |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	all := append([]*stormRound(nil), s.rounds...)
	if s.stats != nil {
		all = append(all, s.stats)
	}
	for _, r := range all {
		pairBase = pairBases[r.Pair]
		if r.Mode == modeBaseline || r.Mode == modeFloor || r.Mode == modeCountFloor {
			vs := ""
			if r.Mode != modeBaseline {
				vs = fmt.Sprintf("%.3fx", r.Storm.PerSecond/pairBase)
			}
			p("| %d | %s | %s | %s | %s | | | | | | %.1f ms |\n", r.Pair, r.Mode, benchkit.Thousands(int64(r.Storm.PerSecond)), vs, benchkit.Thousands(r.Storm.Total), r.Storm.MaxConnMS)
			continue
		}
		vs := fmt.Sprintf("%.3fx", r.Storm.PerSecond/pairBase)
		if r.Mode == modeStats {
			vs = fmt.Sprintf("%.3fx (median)", r.Storm.PerSecond/medBase)
		}
		if r.Mode == modeUnscraped {
			p("| %d | %s | %s | %s | %s | %s (%s) | %.2f s (schedstat %.3f s) | | | %.4f (CPU during the storm) | %.1f ms |\n", r.Pair, r.Mode,
				benchkit.Thousands(int64(r.Storm.PerSecond)), vs, benchkit.Thousands(r.Storm.Total), benchkit.Thousands(int64(r.Transitions)),
				benchkit.Thousands(int64(r.expectedCount())), r.CPUStorm, r.PCPUStorm, perConn(r.PCPUStorm, r.Storm.Total), r.Storm.MaxConnMS)
			continue
		}
		p("| %d | %s | %s | %s | %s | %s (%s) | %.2f / %.2f s | %.3f / %.3f s | %d / %d | %+.3f / %+.4f | %.1f ms |\n", r.Pair, r.Mode,
			benchkit.Thousands(int64(r.Storm.PerSecond)), vs, benchkit.Thousands(r.Storm.Total), benchkit.Thousands(int64(r.Transitions)),
			benchkit.Thousands(int64(r.expectedCount())), r.CPUStorm, r.CPUIdle, r.ScrapeCPU[0], r.ScrapeCPU[1],
			r.ScrapesStorm, r.ScrapesIdle, perConn(r.extraCPU(), r.Storm.Total), perConn(r.extraCPUOutside(), r.Storm.Total), r.Storm.MaxConnMS)
	}
	p("\n")
	var errs []string
	for _, r := range all {
		for k, v := range r.Storm.Errors {
			errs = append(errs, fmt.Sprintf("round %d %s: %s ×%d", r.Pair, r.Mode, k, v))
		}
		if r.ScrapeErrs > 0 {
			errs = append(errs, fmt.Sprintf("round %d: %d failed scrapes", r.Pair, r.ScrapeErrs))
		}
	}
	if len(errs) > 0 {
		b.note("Storm: %s.", strings.Join(errs, "; "))
	}
	var stalls []string
	for _, r := range all {
		if r.Storm.MaxConnMS >= benchkit.StallMS {
			stalls = append(stalls, fmt.Sprintf("round %d %s: %.0f ms", r.Pair, r.Mode, r.Storm.MaxConnMS))
		}
	}
	if len(stalls) > 0 {
		b.note("Storm: a connection took %d ms or more in %s: the storm's CPU was taken by something else during the round, so compare those rates with care.",
			benchkit.StallMS, strings.Join(stalls, "; "))
	}
	if threadsLost {
		b.note("Storm: the exporter had fewer threads at the end of a round than at its start; the schedstat sums miss the CPU of the threads that exited.")
	}
	return !(okRate && okCPU && okCount)
}

func (b *bench) reportScale(p func(string, ...any), s *scalePhase) {
	p("#### 2. Scrape time with %d containers and %s TIME_WAIT sockets\n\n", s.containers, benchkit.Thousands(int64(s.sockets)))
	p("One exporter (defaults: the host's namespace and every running container) is scraped back to back, %d times in each state: "+
		"the host alone (plus whatever else ran on the machine); with %d idle containers (`sleep`, loopback only); and with the same containers holding %s TIME_WAIT sockets, "+
		"%d in each (clients close first on 127.0.0.1, the containers' tcp_tw_reuse set to 0). "+
		"The wall time is the client's (GET sent to body read, one keep-alive connection); the exporter's own figure is sockscope_scrape_duration_seconds of the same scrapes. "+
		"The baseline for the same sockets is `ss -tan` in the host's namespace and then, with `nsenter -t PID -n ss -tan`, in each container's, one after another from one shell "+
		"(%d runs); p99 is the nearest rank, so with %d scrapes it is the slowest but one at most.\n\n",
		len(s.empty.Wall), s.containers, benchkit.Thousands(int64(s.sockets)), s.sockets/max(s.containers, 1), len(s.ssLoaded), len(s.loaded.Wall))
	emptyMed := benchkit.Median(s.empty.Wall)
	ssMed := benchkit.Median(s.ssLoaded)
	p("| state | namespaces | TCP sockets counted | scrape wall median / p99 | sockscope_scrape_duration_seconds median / p99 | vs host only | vs `ss -tan` loop | exposition | exporter RSS |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, st := range []*scaleState{s.empty, s.idle, s.loaded} {
		vsSS := ""
		if st == s.loaded {
			vsSS = fmt.Sprintf("%.2fx", benchkit.Median(st.Wall)/ssMed)
		}
		p("| %s | %.0f | %s | %.1f / %.1f ms | %.1f / %.1f ms | %.2fx | %s | %s samples, %.0f kB | %.1f MB |\n",
			st.Label, st.Namespaces, benchkit.Thousands(int64(st.Sockets)), benchkit.Median(st.Wall), percentile(st.Wall, 99),
			benchkit.Median(st.Rep), percentile(st.Rep, 99), benchkit.Median(st.Wall)/emptyMed, vsSS, benchkit.Thousands(int64(st.Series)),
			float64(st.Bytes)/1000, benchkit.RSSMB(st.RSSKB))
	}
	p("\n| baseline | runs | median | min–max | output |\n|---|---:|---:|---:|---|\n")
	lo, hi := benchkit.MinMax(s.ssEmpty)
	p("| `ss -tan`, host namespace only | %d | %.1f ms | %.1f–%.1f ms | |\n", len(s.ssEmpty), benchkit.Median(s.ssEmpty), lo, hi)
	lo, hi = benchkit.MinMax(s.ssLoaded)
	p("| `ss -tan` in the host's and each of the %d containers' namespaces, %s TIME_WAIT | %d | %.1f ms | %.1f–%.1f ms | %s lines, %s TIME-WAIT |\n",
		s.containers, benchkit.Thousands(int64(s.sockets)), len(s.ssLoaded), ssMed, lo, hi, benchkit.Thousands(int64(s.ssLines)), benchkit.Thousands(int64(s.ssTW)))
	p("\n")
	var builds []string
	for _, d := range s.builds {
		builds = append(builds, d.Round(time.Millisecond).String())
	}
	p("The containers took %v to start (%d `docker run` at a time) and were all in the metrics %v after the first started. "+
		"Building the sockets took %s; every timed scrape in the loaded state counted at least %s TIME_WAIT sockets in the containers (%s at the last).\n\n",
		s.startContainers.Round(time.Millisecond), b.cfg.parallel, s.seen.Round(time.Millisecond), strings.Join(builds, ", "),
		benchkit.Thousands(int64(s.loaded.MinTW)), benchkit.Thousands(int64(s.loaded.TimeWait)))
}

func (b *bench) reportChurn(p func(string, ...any), s *churnPhase) bool {
	st, en := s.start, s.end
	ratio := float64(en.Status.RSSKB) / float64(st.Status.RSSKB)
	back := true
	for _, k := range []string{"tracked", "handshakes"} {
		if en.Entries[k] > st.Entries[k] {
			back = false
		}
	}
	// The counters of the namespaces counted at the start (the host's) may gain keys from their
	// own traffic meanwhile: what must be gone is every entry of another namespace. Without a
	// census, the total has to be back.
	censusOK := st.Census != nil && en.Census != nil
	var newEntries, newNS int
	if censusOK {
		newEntries, newNS = en.Census.outside(st.Census.Tracked)
		back = back && newEntries == 0 && en.Census.Stale == 0
	} else {
		back = back && en.Entries["counters"] <= st.Entries["counters"]
	}
	okRSS := ratio <= targetRSSGrowth
	p("#### 3. Memory after an hour of scrapes with container churn\n\n")
	p("One exporter (defaults) is scraped %s times (an hour of scrapes at one a second, compressed into %v: paced to spread over the churn, back to back when behind) while %s containers are started and removed, "+
		"%d at a time: each runs busybox httpd on its loopback and fetches from it ten times a second, lives %v, and is removed with `docker rm -f`. "+
		"The start is after 10 scrapes; the end is after every churn container is gone and the exporter's namespace count is back to the start's.\n\n",
		benchkit.Thousands(int64(s.scrapes)), s.scrapeTime.Round(time.Second), benchkit.Thousands(int64(s.cycles)), s.parallel, s.hold)
	p("| figure | start | after the churn | ratio / difference | target | met |\n|---|---:|---:|---:|---|---|\n")
	p("| RSS (VmRSS) | %.1f MB | %.1f MB | %.2fx | ≤ %.2fx | %s |\n", benchkit.RSSMB(st.Status.RSSKB), benchkit.RSSMB(en.Status.RSSKB), ratio, targetRSSGrowth, benchkit.Verdict(okRSS))
	p("| peak RSS (VmHWM) | %.1f MB | %.1f MB | | | |\n", benchkit.RSSMB(st.Status.HWMKB), benchkit.RSSMB(en.Status.HWMKB))
	p("| Go heap in use (go_memstats_heap_inuse_bytes) | %.1f MB | %.1f MB | %.2fx | | |\n", st.HeapInuse/1e6, en.HeapInuse/1e6, en.HeapInuse/st.HeapInuse)
	p("| threads / open fds | %d / %d | %d / %d | %+d / %+d | | |\n", st.Status.Threads, st.Status.FDs, en.Status.Threads, en.Status.FDs,
		en.Status.Threads-st.Status.Threads, en.Status.FDs-st.Status.FDs)
	for _, k := range []string{"counters", "tracked", "handshakes"} {
		ok, target := en.Entries[k] <= st.Entries[k], "back to the start"
		if k == "counters" && censusOK {
			ok, target = true, "see the next two rows"
		}
		p("| sockscope_bpf_map_entries{map=%q} | %.0f | %.0f | %+.0f | %s | %s |\n", k, st.Entries[k], en.Entries[k], en.Entries[k]-st.Entries[k], target, benchkit.Verdict(ok))
	}
	if censusOK {
		var startNS []string
		for ns := range st.Census.Tracked {
			startNS = append(startNS, fmt.Sprint(ns))
		}
		sort.Strings(startNS)
		p("| counter entries of namespaces other than the start's (bpftool census of the map) | | %d (%d namespaces) | | 0 | %s |\n",
			newEntries, newNS, benchkit.Verdict(newEntries == 0))
		p("| counter entries of namespaces no longer tracked (same census) | %d (%d namespaces) | %d (%d namespaces) | | 0 | %s |\n",
			st.Census.Stale, st.Census.StaleNS, en.Census.Stale, en.Census.StaleNS, benchkit.Verdict(en.Census.Stale == 0))
		var startOwn, endOwn int
		for ns := range st.Census.Tracked {
			startOwn += st.Census.ByNetns[ns]
			endOwn += en.Census.ByNetns[ns]
		}
		p("| counter entries of the start's namespaces (%s) | %d | %d | %+d | (their own traffic adds keys) | |\n",
			strings.Join(startNS, ", "), startOwn, endOwn, endOwn-startOwn)
	}
	p("| sockscope_namespaces | %.0f | %.0f | | | |\n", st.Namespaces, en.Namespaces)
	p("| samples in the exposition | %s | %s | | | |\n", benchkit.Thousands(int64(st.Series)), benchkit.Thousands(int64(en.Series)))
	p("\n")
	lo, hi := benchkit.MinMax(s.wall)
	var lostTotal float64
	for _, v := range s.lost {
		lostTotal += v
	}
	p("Scrapes: %s in all, %s of them while containers churned (%v for the %s cycles); client wall time median %.1f ms, p99 %.1f ms, %.1f–%.1f ms; "+
		"sockscope_scrape_duration_seconds median %.1f ms, p99 %.1f ms. %d of the %s churn containers showed up in at least one scrape. "+
		"sockscope_scrape_errors_total at the end: %.0f (namespaces that vanished between listing and walking); failed GETs: %d; failed docker commands: %d; lost counts: %.0f. "+
		"The namespace count was back %v after the churn ended.\n\n",
		benchkit.Thousands(int64(s.scrapes)), benchkit.Thousands(int64(s.duringChurn)), s.churnTime.Round(time.Second), benchkit.Thousands(int64(s.cycles)),
		benchkit.Median(s.wall), percentile(s.wall, 99), lo, hi, benchkit.Median(s.rep), percentile(s.rep, 99), s.seen, benchkit.Thousands(int64(s.cycles)),
		s.scrapeErrors, s.getErrors, s.dockerErrors, lostTotal, s.settle.Round(100*time.Millisecond))
	p("Along the way:\n\n| point | churn scrapes | elapsed | RSS | threads | fds | heap in use | counters / tracked / handshakes entries | namespaces |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	p("| exporting on (before any scrape) | 0 | | %.1f MB | %d | %d | | | |\n", benchkit.RSSMB(s.ready.RSSKB), s.ready.Threads, s.ready.FDs)
	for _, pt := range s.points {
		p("| %s | %s | %v | %.1f MB | %d | %d | %.1f MB | %.0f / %.0f / %.0f | %.0f |\n", pt.Label, benchkit.Thousands(int64(pt.Scrapes)), pt.Elapsed.Round(time.Second),
			benchkit.RSSMB(pt.Status.RSSKB), pt.Status.Threads, pt.Status.FDs, pt.HeapInuse/1e6,
			pt.Entries["counters"], pt.Entries["tracked"], pt.Entries["handshakes"], pt.Namespaces)
	}
	p("\n")
	if len(s.oddNames) > 0 {
		b.note("Churn: %d container labels named churn containers but were not one container's name (two containers in one namespace?): %s.",
			len(s.oddNames), "`"+strings.Join(s.oddNames, "`, `")+"`")
	}
	if s.censusNote != "" {
		b.note("Churn: %s.", s.censusNote)
	}
	return !(okRSS && back)
}
