package main

import (
	"bytes"
	"fmt"
	"math"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// scaleState is a series of back-to-back scrapes in one state of the machine.
type scaleState struct {
	Label      string
	Namespaces float64   // sockscope_namespaces
	Sockets    float64   // sum of sockscope_tcp_sockets over every namespace
	TimeWait   float64   // TIME_WAIT in this run's containers, at the last scrape
	MinTW      float64   // the least TIME_WAIT in this run's containers seen by a timed scrape
	Wall       []float64 // ms, client side: request sent to body read
	Rep        []float64 // ms, sockscope_scrape_duration_seconds
	Bytes      int       // size of the last exposition
	Series     int       // samples in the last exposition
	RSSKB      int64     // exporter RSS after the series
}

type scalePhase struct {
	containers, sockets int
	readyMS             float64
	startContainers     time.Duration // docker run of all containers
	seen                time.Duration // from the first docker run to all of them in a scrape
	builds              []time.Duration
	empty, idle, loaded *scaleState
	ssEmpty             []float64 // ms: ss -tan in the host's namespace
	ssLoaded            []float64 // ms: ss -tan in the host's and in each container's namespace
	ssLines, ssTW       int       // lines and TIME-WAIT lines of one loaded ss run (headers included in lines)
	warnings            []string
}

func (b *bench) runScale() (*scalePhase, error) {
	c := b.cfg
	p := &scalePhase{containers: c.containers, sockets: c.sockets}
	e, err := startExporter(c.sockscope)
	if err != nil {
		return nil, err
	}
	defer e.abort()
	p.readyMS = benchkit.Millis(e.ready)
	if err := waitDocker(e); err != nil {
		return nil, err
	}

	// 1. The empty state: the host's namespace and whatever else runs on the machine.
	benchkit.Logf("scale: %d scrapes, no containers of ours", c.scaleScrapes)
	if p.empty, err = scrapeSeries(e, "host only", c.scaleScrapes, nil, time.Time{}); err != nil {
		return nil, err
	}
	for range c.ssRuns {
		d, _, err := timedOutput("ss", "-tan")
		if err != nil {
			return nil, err
		}
		p.ssEmpty = append(p.ssEmpty, benchkit.Millis(d))
	}

	// 2. N idle containers.
	names := make([]string, c.containers)
	ids := make([]string, c.containers)
	for i := range names {
		names[i] = fmt.Sprintf("exportbench-%s-%03d", b.runID, i)
	}
	benchkit.Logf("scale: starting %d containers, %d at a time", c.containers, c.parallel)
	t0 := time.Now()
	err = parallel(c.containers, c.parallel, func(i int) error {
		id, err := dockerRun(b.runID, names[i], c.image, "sleep", "3600")
		ids[i] = id
		return err
	})
	if err != nil {
		return nil, err
	}
	p.startContainers = time.Since(t0)
	if err := waitNames(e, names, 2*time.Minute); err != nil {
		return nil, err
	}
	p.seen = time.Since(t0)
	benchkit.Logf("scale: %d containers started in %v, all in the metrics after %v", c.containers,
		p.startContainers.Round(time.Millisecond), p.seen.Round(time.Millisecond))
	mine := map[string]bool{}
	for _, n := range names {
		mine[n] = true
	}
	if p.idle, err = scrapeSeries(e, fmt.Sprintf("%d idle containers", c.containers), c.scaleScrapes, mine, time.Time{}); err != nil {
		return nil, err
	}

	// 3. The same containers holding the TIME_WAIT sockets. TIME_WAIT lasts 60 s: the timed
	// scrapes stop 55 s after a build starts, and when more are needed every socket is left to
	// expire and the sockets are built again.
	pidByID, err := containerPIDs(ids)
	if err != nil {
		return nil, err
	}
	pids := make([]int, c.containers)
	for i, id := range ids {
		if pids[i] = pidByID[id]; pids[i] == 0 {
			return nil, fmt.Errorf("no PID for container %s", names[i])
		}
	}
	loaded := &scaleState{Label: fmt.Sprintf("%d containers, %s TIME_WAIT", c.containers, benchkit.Thousands(int64(c.sockets))), MinTW: -1}
	for cycle := 0; len(loaded.Wall) < c.scaleScrapes; cycle++ {
		if cycle > 0 {
			benchkit.Logf("scale: %d of %d scrapes done; waiting for the TIME_WAIT sockets to expire before building them again",
				len(loaded.Wall), c.scaleScrapes)
			if err := waitTimeWait(e, mine, 0, 90*time.Second); err != nil {
				return nil, err
			}
		}
		if cycle > 3 {
			return nil, fmt.Errorf("scrapes too slow: %d of %d done in %d builds of TIME_WAIT sockets", len(loaded.Wall), c.scaleScrapes, cycle)
		}
		start := time.Now()
		err := parallel(c.containers, 2, func(i int) error {
			n := c.sockets / c.containers
			if i < c.sockets%c.containers {
				n++
			}
			return inNetns(pids[i], func() error { return buildTimeWait(n, 8080+cycle) })
		})
		if err != nil {
			return nil, fmt.Errorf("building TIME_WAIT sockets: %w", err)
		}
		p.builds = append(p.builds, time.Since(start))
		benchkit.Logf("scale: %d TIME_WAIT sockets built in %v", c.sockets, time.Since(start).Round(time.Millisecond))
		if cycle == 0 {
			if err := b.ssLoaded(p, pids); err != nil {
				return nil, err
			}
		}
		deadline := start.Add(55 * time.Second)
		if _, err := scrapeSeriesInto(e, loaded, c.scaleScrapes-len(loaded.Wall), mine, deadline); err != nil {
			return nil, err
		}
	}
	p.loaded = loaded
	benchkit.Logf("scale: loaded scrapes: median %.0f ms (exporter: %.0f ms); ss loop median %.0f ms",
		benchkit.Median(loaded.Wall), benchkit.Median(loaded.Rep), benchkit.Median(p.ssLoaded))

	if err := e.stop(); err != nil {
		return nil, err
	}
	p.warnings = e.warnings()
	benchkit.Logf("scale: removing the containers")
	err = parallel(len(ids), c.parallel, func(i int) error {
		_, err := benchkit.Run(time.Minute, "docker", "rm", "-f", ids[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// ssLoaded times `ss -tan` in the host's namespace and then in each container's, one after
// another from one shell, as someone without sockscope would list the same sockets.
func (b *bench) ssLoaded(p *scalePhase, pids []int) error {
	var script strings.Builder
	script.WriteString("ss -tan")
	for _, pid := range pids {
		script.WriteString("; nsenter -t " + strconv.Itoa(pid) + " -n ss -tan")
	}
	for i := range b.cfg.ssRuns {
		d, out, err := timedOutput("sh", "-c", script.String())
		if err != nil {
			return err
		}
		p.ssLoaded = append(p.ssLoaded, benchkit.Millis(d))
		if i == 0 {
			p.ssLines = bytes.Count(out, []byte("\n"))
			p.ssTW = bytes.Count(out, []byte("TIME-WAIT"))
		}
	}
	return nil
}

// timedOutput runs argv with its stdout collected and returns the wall time.
func timedOutput(argv ...string) (time.Duration, []byte, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	c, err := benchkit.StartProc(argv[0], cmd)
	if err != nil {
		return 0, nil, err
	}
	err = c.Wait(2 * time.Minute)
	d := time.Since(c.Start)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %v: %s", argv[0], err, benchkit.LastLine(errb.String()))
	}
	return d, out.Bytes(), nil
}

// waitDocker waits until the exporter reports that Docker answers.
func waitDocker(e *exporter) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := e.scrape()
		if err != nil {
			return err
		}
		if s.M.value("sockscope_docker_up") == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the exporter reports sockscope_docker_up %v after 30 s: %s", s.M.value("sockscope_docker_up"), e.tailString())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitNames waits until every container name appears as a container label.
func waitNames(e *exporter, names []string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		s, err := e.scrape()
		if err != nil {
			return err
		}
		have := s.M.byLabel("sockscope_container_info", "container")
		missing := 0
		for _, n := range names {
			if _, ok := have[n]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v, %d of %d containers are still missing from the metrics", limit, missing, len(names))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitTimeWait waits until the exporter counts at most max TIME_WAIT sockets in mine.
func waitTimeWait(e *exporter, mine map[string]bool, max float64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		s, err := e.scrape()
		if err != nil {
			return err
		}
		if tw := timeWaitIn(s.M, mine); tw <= max {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("still %.0f TIME_WAIT sockets after %v", tw, limit)
		}
		time.Sleep(2 * time.Second)
	}
}

func timeWaitIn(m metrics, mine map[string]bool) float64 {
	var tw float64
	for _, s := range m {
		if s.Name == "sockscope_tcp_sockets" && s.Labels["state"] == "TIME_WAIT" && mine[s.Labels["container"]] {
			tw += s.Value
		}
	}
	return tw
}

func scrapeSeries(e *exporter, label string, n int, mine map[string]bool, deadline time.Time) (*scaleState, error) {
	st := &scaleState{Label: label, MinTW: -1}
	_, err := scrapeSeriesInto(e, st, n, mine, deadline)
	return st, err
}

// scrapeSeriesInto times up to n back-to-back scrapes into st, stopping early at deadline
// (when not zero).
func scrapeSeriesInto(e *exporter, st *scaleState, n int, mine map[string]bool, deadline time.Time) (int, error) {
	done := 0
	for ; done < n; done++ {
		if !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
		s, err := e.scrape()
		if err != nil {
			return done, err
		}
		st.Wall = append(st.Wall, benchkit.Millis(s.Wall))
		st.Rep = append(st.Rep, s.Reported*1e3)
		st.Namespaces = s.M.value("sockscope_namespaces")
		st.Sockets = s.M.value("sockscope_tcp_sockets")
		st.Bytes, st.Series = s.Bytes, len(s.M)
		if mine != nil {
			tw := timeWaitIn(s.M, mine)
			st.TimeWait = tw
			if st.MinTW < 0 || tw < st.MinTW {
				st.MinTW = tw
			}
		}
	}
	if ps, err := e.status(); err == nil {
		st.RSSKB = ps.RSSKB
	}
	return done, nil
}

// percentile is the nearest-rank percentile (p in 0..100) of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	rank := max(1, min(int(math.Ceil(p/100*float64(len(s))-1e-9)), len(s)))
	return s[rank-1]
}
