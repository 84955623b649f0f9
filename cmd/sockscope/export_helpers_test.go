package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// requirePrometheus requires what the exporter needs plus Debian's prometheus and promtool.
func requirePrometheus(t *testing.T) {
	t.Helper()
	requireTracing(t)
	testenv.Command(t, "prometheus")
	testenv.Command(t, "promtool")
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// exportProc is a running `sockscope export`.
type exportProc struct {
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:PORT
	stderr *lockedBuffer
	done   chan error
}

// startExport runs `sockscope export` on a free loopback port with args and waits until it serves.
func startExport(t *testing.T, args ...string) *exportProc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(sockscopeBin, append([]string{"export", "--web.listen-address", addr}, args...)...)
	e := &exportProc{cmd: cmd, addr: addr, stderr: newLockedBuffer(), done: make(chan error, 1)}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.done <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-e.done
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		said := false
		for sc.Scan() {
			e.stderr.Write(append(sc.Bytes(), '\n'))
			if !said && strings.Contains(sc.Text(), "exporting on") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("sockscope export %v exited before serving:\n%s", args, e.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("sockscope export %v did not serve within 20s:\n%s", args, e.stderr.String())
	}
	return e
}

// metrics returns the exposition, fetched directly.
func (e *exportProc) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + e.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v\n%s", resp.StatusCode, err, b)
	}
	return string(b)
}

// value returns the value of the exposition line that starts with series (name{labels}), or -1.
func value(exposition, series string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// stop sends SIGTERM and requires a clean exit.
func (e *exportProc) stop(t *testing.T) {
	t.Helper()
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-e.done:
		e.done <- err
		if err != nil {
			t.Errorf("sockscope export after SIGTERM: %v\n%s", err, e.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("sockscope export did not stop within 10s of SIGTERM:\n%s", e.stderr.String())
	}
	time.Sleep(50 * time.Millisecond) // the stderr copier
	if s := e.stderr.String(); !strings.Contains(s, "exporter stopped") || strings.Contains(s, "panic") {
		t.Errorf("sockscope export stderr after SIGTERM:\n%s", s)
	}
}

// promServer is a real Prometheus server, on loopback, scraping targets every second.
type promServer struct {
	url string
	cmd *exec.Cmd
	log *lockedBuffer
}

// scrapeJob is one scrape_configs entry, in Prometheus's YAML.
type scrapeJob struct {
	name   string
	target string
	extra  string // more YAML under the job (scheme, tls_config, basic_auth), indented 4 spaces
}

func startPrometheus(t *testing.T, jobs ...scrapeJob) *promServer {
	t.Helper()
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n")
	for _, j := range jobs {
		fmt.Fprintf(&cfg, "  - job_name: %s\n    static_configs:\n      - targets: ['%s']\n%s", j.name, j.target, j.extra)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := &promServer{url: "http://" + addr, log: newLockedBuffer()}
	p.cmd = exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
		"--log.level=warn", "--web.enable-lifecycle")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not get ready within 30s:\n%s", p.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string
	T      float64 // seconds since the epoch
	V      float64
}

// query evaluates an instant query at time at (zero: now) through Prometheus's HTTP API.
func (p *promServer) query(t *testing.T, q string, at float64) []sample {
	t.Helper()
	s, err := p.tryQuery(q, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *promServer) tryQuery(q string, at float64) ([]sample, error) {
	v := url.Values{"query": {q}}
	if at != 0 {
		v.Set("time", strconv.FormatFloat(at, 'f', 3, 64))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/api/v1/query?"+v.Encode(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %s, want vector", q, r.Data.ResultType)
	}
	out := make([]sample, 0, len(r.Data.Result))
	for _, e := range r.Data.Result {
		ts, _ := e.Value[0].(float64)
		vs, _ := e.Value[1].(string)
		f, err := strconv.ParseFloat(vs, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q", q, vs)
		}
		out = append(out, sample{Metric: e.Metric, T: ts, V: f})
	}
	return out, nil
}

// waitFor polls q until ok accepts its result; it fails the test after timeout.
func (p *promServer) waitFor(t *testing.T, q string, timeout time.Duration, ok func([]sample) bool) []sample {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []sample
	for {
		s, err := p.tryQuery(q, 0)
		if err == nil && ok(s) {
			return s
		}
		last = s
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last result %+v (err %v)", timeout, q, last, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scrapedAfter waits until Prometheus holds a sample of series taken after instant since, and
// returns that sample's timestamp.
func (p *promServer) scrapedAfter(t *testing.T, series string, since time.Time) float64 {
	t.Helper()
	s := p.waitFor(t, "timestamp("+series+")", 20*time.Second, func(s []sample) bool {
		return len(s) == 1 && s[0].V > float64(since.UnixMilli())/1000
	})
	return s[0].V
}

// logSeries logs every series of each query at time at, zeros included (a loss reason at 0 says
// as much as one above it): what a failed assertion was computed from.
func (p *promServer) logSeries(t *testing.T, at float64, queries ...string) {
	t.Helper()
	for _, q := range queries {
		for _, s := range p.query(t, q, at) {
			t.Logf("%v = %v", s.Metric, s.V)
		}
	}
}

// one returns the single value of q at time at, failing unless there is exactly one.
func (p *promServer) one(t *testing.T, q string, at float64) float64 {
	t.Helper()
	s := p.query(t, q, at)
	if len(s) != 1 {
		t.Fatalf("%s: %d series, want 1: %+v", q, len(s), s)
	}
	return s[0].V
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// ssStates counts the sockets of `ss -tanH` output by sockscope's state names.
func ssStates(t *testing.T, cmd ...string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, tuple := range ssTuplesOf(t, cmd...) {
		state, _, _ := strings.Cut(tuple, " ")
		counts[state]++
	}
	return counts
}
