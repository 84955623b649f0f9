package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// churnScript is what each churn container runs: an HTTP server on its loopback and a client
// fetching from it ten times a second, so that its namespace gets counters of its own.
const churnScript = "httpd -p 127.0.0.1:8080 -h /tmp; while :; do wget -q -O /dev/null http://127.0.0.1:8080/ 2>/dev/null; sleep 0.1; done"

// churnPoint is the exporter's state at one moment of the churn phase.
type churnPoint struct {
	Label      string
	Scrapes    int
	Elapsed    time.Duration
	Status     procStatus
	Entries    map[string]float64 // sockscope_bpf_map_entries by map
	Namespaces float64
	Series     int
	HeapInuse  float64 // go_memstats_heap_inuse_bytes
	Census     *mapCensus
}

type churnPhase struct {
	cycles, parallel int
	hold             time.Duration
	readyMS          float64
	ready            procStatus // right after "exporting on", before any scrape
	points           []churnPoint
	start, end       *churnPoint
	scrapes          int
	duringChurn      int // scrapes that began before the last container was removed
	churnTime        time.Duration
	scrapeTime       time.Duration
	wall, rep        []float64 // ms, every scrape
	getErrors        int
	scrapeErrors     float64 // sockscope_scrape_errors_total at the end
	lost             map[string]float64
	seen             int      // churn containers that showed up in at least one scrape
	oddNames         []string // container labels of churn containers that are not one container's name
	dockerErrors     int
	settle           time.Duration // from the end of the churn to the namespace count being back
	settled          bool
	censusNote       string
	warnings         []string
}

func (b *bench) runChurn() (*churnPhase, error) {
	c := b.cfg
	p := &churnPhase{cycles: c.churnCycles, parallel: c.parallel, hold: c.churnHold}
	bpftool, _ := exec.LookPath("bpftool")
	if bpftool == "" {
		p.censusNote = "bpftool not found: no census of the counter map by namespace"
	}
	e, err := startExporter(c.sockscope)
	if err != nil {
		return nil, err
	}
	defer e.abort()
	p.readyMS = benchkit.Millis(e.ready)
	if p.ready, err = e.status(); err != nil {
		return nil, err
	}
	if err := waitDocker(e); err != nil {
		return nil, err
	}
	t0 := time.Now()
	point := func(label string, s *scrape) churnPoint {
		pt := churnPoint{Label: label, Scrapes: p.scrapes, Elapsed: time.Since(t0),
			Entries: s.M.byLabel("sockscope_bpf_map_entries", "map"), Namespaces: s.M.value("sockscope_namespaces"),
			Series: len(s.M), HeapInuse: s.M.value("go_memstats_heap_inuse_bytes")}
		pt.Status, _ = e.status()
		return pt
	}
	var last *scrape
	for range 10 {
		if last, err = e.scrape(); err != nil {
			return nil, err
		}
	}
	start := point("start (after 10 scrapes)", last)
	if bpftool != "" {
		if cs, err := census(bpftool, e.c.Pid()); err == nil {
			start.Census = &cs
		} else {
			p.censusNote = err.Error()
		}
	}
	p.start = &start
	p.points = append(p.points, start)
	benchkit.Logf("churn: start: RSS %.1f MB, %d threads, %d fds, %v map entries, %.0f namespaces",
		benchkit.RSSMB(start.Status.RSSKB), start.Status.Threads, start.Status.FDs, start.Entries, start.Namespaces)

	// The churn: each worker starts a container, lets it live churnHold, removes it.
	prefix := fmt.Sprintf("exportbench-%s-c", b.runID)
	var churnDone atomic.Bool
	var dockerErrs, cyclesDone atomic.Int64
	var firstErr sync.Once
	churnStart := time.Now()
	var churnEnd time.Time
	go func() {
		defer churnDone.Store(true)
		parallel(c.churnCycles, c.parallel, func(i int) error {
			name := fmt.Sprintf("%s%04d", prefix, i)
			id, err := dockerRun(b.runID, name, c.image, "sh", "-c", churnScript)
			if err == nil {
				time.Sleep(c.churnHold)
				_, err = benchkit.Run(time.Minute, "docker", "rm", "-f", id)
			}
			cyclesDone.Add(1)
			if err != nil {
				dockerErrs.Add(1)
				firstErr.Do(func() { b.note("Churn: a docker command failed: %v", err) })
			}
			return nil
		})
		churnEnd = time.Now()
	}()

	// The scrapes: at least churnScrapes, spread over the churn by pacing them to the churn's
	// progress so far (back to back when they lag), and on until the churn is over.
	seen := map[string]bool{}
	benchkit.Logf("churn: %d start/remove cycles, %d at a time, during at least %d scrapes", c.churnCycles, c.parallel, c.churnScrapes)
	for p.scrapes < c.churnScrapes || !churnDone.Load() {
		if left := c.churnScrapes - p.scrapes; left > 0 && !churnDone.Load() {
			if done := cyclesDone.Load(); done > 0 {
				elapsed := time.Since(churnStart)
				remaining := time.Duration(float64(elapsed) * float64(int64(c.churnCycles)-done) / float64(done))
				time.Sleep(min(remaining/time.Duration(left), time.Second))
			}
		}
		during := !churnDone.Load()
		s, err := e.scrape()
		p.scrapes++
		if during {
			p.duringChurn++
		}
		if err != nil {
			if e.c.Exited() {
				return nil, err
			}
			p.getErrors++
			if p.getErrors == 1 {
				b.note("Churn: a scrape failed: %v", err)
			}
			continue
		}
		last = s
		p.wall = append(p.wall, benchkit.Millis(s.Wall))
		p.rep = append(p.rep, s.Reported*1e3)
		for name := range s.M.byLabel("sockscope_container_info", "container") {
			if !strings.Contains(name, prefix) {
				continue
			}
			if n := strings.TrimPrefix(name, prefix); len(n) == 4 && strings.Trim(n, "0123456789") == "" {
				seen[name] = true
			} else if len(p.oddNames) < 20 && !slices.Contains(p.oddNames, name) {
				p.oddNames = append(p.oddNames, name)
			}
		}
		if p.scrapes%500 == 0 {
			p.points = append(p.points, point(fmt.Sprintf("after %d scrapes", p.scrapes), s))
			benchkit.Logf("churn: %d scrapes, RSS %.1f MB, %d threads", p.scrapes, benchkit.RSSMB(p.points[len(p.points)-1].Status.RSSKB), p.points[len(p.points)-1].Status.Threads)
		}
	}
	p.scrapeTime = time.Since(churnStart)
	p.churnTime = churnEnd.Sub(churnStart)
	p.seen = len(seen)
	p.dockerErrors = int(dockerErrs.Load())
	benchkit.Logf("churn: %d cycles in %v, %d scrapes in %v; %d containers seen in the metrics",
		c.churnCycles, p.churnTime.Round(time.Second), p.scrapes, p.scrapeTime.Round(time.Second), p.seen)

	// Settle: every churn container gone from Docker, then the namespace count back to the
	// start's.
	settleStart := time.Now()
	for {
		ids, err := labelledIDs(b.runID)
		if err == nil && len(ids) == 0 {
			break
		}
		if time.Since(settleStart) > 2*time.Minute {
			return nil, fmt.Errorf("%d churn containers still listed by Docker after 2 min", len(ids))
		}
		time.Sleep(time.Second)
	}
	for {
		if last, err = e.scrape(); err != nil {
			return nil, err
		}
		if last.M.value("sockscope_namespaces") <= start.Namespaces {
			p.settled = true
			break
		}
		if time.Since(settleStart) > time.Minute {
			b.note("Churn: the exporter still counted %.0f namespaces a minute after the churn, %.0f at the start.",
				last.M.value("sockscope_namespaces"), start.Namespaces)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	p.settle = time.Since(settleStart)
	if last, err = e.scrape(); err != nil { // a scrape after the set is final, for the counter map's entries
		return nil, err
	}
	end := point("after the churn", last)
	if bpftool != "" {
		if cs, err := census(bpftool, e.c.Pid()); err == nil {
			end.Census = &cs
		} else if p.censusNote == "" {
			p.censusNote = err.Error()
		}
	}
	p.end = &end
	p.points = append(p.points, end)
	p.scrapeErrors = last.M.value("sockscope_scrape_errors_total")
	p.lost = last.M.byLabel("sockscope_lost_events_total", "reason")
	benchkit.Logf("churn: end: RSS %.1f MB, %d threads, %d fds, %v map entries, %.0f namespaces",
		benchkit.RSSMB(end.Status.RSSKB), end.Status.Threads, end.Status.FDs, end.Entries, end.Namespaces)
	if err := e.stop(); err != nil {
		return nil, err
	}
	p.warnings = e.warnings()
	return p, nil
}
