package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// sample is one line of the Prometheus text exposition.
type sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// parseExposition reads the text exposition format: comment and blank lines are skipped, and a
// line that does not parse is an error.
func parseExposition(r io.Reader) ([]sample, error) {
	var out []sample
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		sm, err := parseSampleLine(line)
		if err != nil {
			return out, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, sm)
	}
	return out, s.Err()
}

// parseSampleLine parses `name{label="value",...} value [timestamp]`.
func parseSampleLine(line string) (sample, error) {
	sm := sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return sm, fmt.Errorf("no value in %q", line)
	}
	sm.Name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " \t,")
			if rest == "" {
				return sm, fmt.Errorf("unterminated labels in %q", line)
			}
			if rest[0] == '}' {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq <= 0 {
				return sm, fmt.Errorf("bad label in %q", line)
			}
			name := strings.TrimSpace(rest[:eq])
			quoted := strings.TrimLeft(rest[eq+1:], " \t")
			if !strings.HasPrefix(quoted, `"`) {
				return sm, fmt.Errorf("bad label in %q", line)
			}
			val, n, err := unquoteLabel(quoted[1:])
			if err != nil {
				return sm, fmt.Errorf("%v in %q", err, line)
			}
			sm.Labels[name] = val
			rest = quoted[1+n:]
		}
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return sm, fmt.Errorf("bad value in %q", line)
	}
	v, err := parseValue(f[0])
	if err != nil {
		return sm, fmt.Errorf("bad value in %q", line)
	}
	sm.Value = v
	return sm, nil
}

// unquoteLabel reads a label value up to its closing quote (the opening one already consumed),
// undoing the format's three escapes; n counts the bytes consumed, closing quote included.
func unquoteLabel(s string) (val string, n int, err error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			if i+1 >= len(s) {
				return "", 0, errors.New("dangling escape")
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case '\\', '"':
				b.WriteByte(s[i])
			default:
				b.WriteByte('\\')
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("unterminated label value")
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(s, 64)
}

// metrics is one scrape's samples.
type metrics []sample

// sum adds the values of the samples called name whose labels include all of match
// ("label", "value" pairs); found tells whether there was any.
func (m metrics) sum(name string, match ...string) (total float64, found bool) {
outer:
	for _, s := range m {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(match); i += 2 {
			if s.Labels[match[i]] != match[i+1] {
				continue outer
			}
		}
		total += s.Value
		found = true
	}
	return total, found
}

func (m metrics) value(name string, match ...string) float64 {
	v, _ := m.sum(name, match...)
	return v
}

// byLabel sums name's samples by the value of one label.
func (m metrics) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m {
		if s.Name == name {
			out[s.Labels[label]] += s.Value
		}
	}
	return out
}

// scrape is the outcome of one GET /metrics.
type scrape struct {
	Wall     time.Duration // request sent to body read
	Reported float64       // sockscope_scrape_duration_seconds
	Bytes    int
	M        metrics
}

// scraper GETs the exporter's /metrics with one keep-alive connection, as Prometheus does.
type scraper struct {
	url    string
	client *http.Client
}

func newScraper(addr string) *scraper {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	return &scraper{url: "http://" + addr + "/metrics", client: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

func (s *scraper) get() (*scrape, error) {
	start := time.Now()
	resp, err := s.client.Get(s.url)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	wall := time.Since(start)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", s.url, resp.Status, benchkit.LastLine(string(body)))
	}
	m, err := parseExposition(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", s.url, err)
	}
	sc := &scrape{Wall: wall, Bytes: len(body), M: m}
	sc.Reported, _ = metrics(m).sum("sockscope_scrape_duration_seconds")
	return sc, nil
}

func (s *scraper) close() { s.client.CloseIdleConnections() }

// exporter is a running `sockscope export`.
type exporter struct {
	c     *benchkit.Proc
	addr  string
	ready time.Duration // exec to the "exporting on" line
	sc    *scraper

	mu   sync.Mutex
	tail benchkit.Tail // last stderr lines
	warn []string      // stderr lines other than the start and stop lines
	eof  chan struct{}
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startExporter runs `sockscope export` on a free loopback port with extra flags and waits for
// its "exporting on" line.
func startExporter(bin string, extra ...string) (*exporter, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, append([]string{"export", "--web.listen-address", addr}, extra...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	c, err := benchkit.StartProc("sockscope export", cmd)
	if err != nil {
		return nil, err
	}
	e := &exporter{c: c, addr: addr, eof: make(chan struct{})}
	ready := make(chan time.Time, 1)
	go func() {
		defer close(e.eof)
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			line := s.Text()
			e.mu.Lock()
			e.tail.Add(line)
			switch {
			case strings.HasPrefix(line, "sockscope: exporting on"):
				select {
				case ready <- time.Now():
				default:
				}
			case line == "sockscope: exporter stopped", strings.HasPrefix(line, "sockscope: naming containers through "):
			default:
				if len(e.warn) < 100 {
					e.warn = append(e.warn, line)
				}
			}
			e.mu.Unlock()
		}
	}()
	select {
	case t := <-ready:
		e.ready = t.Sub(c.Start)
	case <-c.Done:
		<-e.eof
		return nil, fmt.Errorf("sockscope export exited at start (%v): %s", c.Err, e.tailString())
	case <-time.After(30 * time.Second):
		c.Kill()
		return nil, fmt.Errorf("sockscope export printed no 'exporting on' line within 30 s: %s", e.tailString())
	}
	e.sc = newScraper(addr)
	return e, nil
}

func (e *exporter) tailString() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tail.String()
}

func (e *exporter) warnings() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.warn...)
}

func (e *exporter) scrape() (*scrape, error) {
	if e.c.Exited() {
		return nil, fmt.Errorf("sockscope export has exited (%v): %s", e.c.Err, e.tailString())
	}
	return e.sc.get()
}

func (e *exporter) cpu() (float64, error) { return procCPU(e.c.Pid()) }

func (e *exporter) status() (procStatus, error) { return readProcStatus(e.c.Pid()) }

// abort kills the exporter (if it still runs) and waits for it, at most 10 s.
func (e *exporter) abort() {
	e.c.Kill()
	e.c.Wait(10 * time.Second)
}

// stop sends SIGINT and waits for a clean exit.
func (e *exporter) stop() error {
	e.sc.close()
	e.c.Signal(syscall.SIGINT)
	err := e.c.Wait(30 * time.Second)
	select {
	case <-e.eof:
	case <-time.After(5 * time.Second):
	}
	if err != nil {
		return fmt.Errorf("sockscope export after SIGINT: %v: %s", err, e.tailString())
	}
	return nil
}
