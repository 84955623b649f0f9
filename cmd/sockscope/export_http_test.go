package main

// The exporter's HTTP server under hostile or careless clients: idle keep-alive connections are
// closed, and scrapes beyond --web.max-requests get 503 instead of queueing.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

// fds counts the exporter's open file descriptors in /proc/PID/fd. Not its process_open_fds: a
// scrape counts the descriptors its own collection holds open at that moment (the socket
// iterators' among them, which the collectors, gathered in parallel, may or may not hold yet),
// one more or less from scrape to scrape.
func (e *exportProc) fds(t *testing.T) float64 {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", e.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return float64(len(ents))
}

// scrapeOn sends one keep-alive GET /metrics on conn and reads the whole response.
func scrapeOn(conn net.Conn, r *bufio.Reader) (int, error) {
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: sockscope\r\n\r\n"); err != nil {
		return 0, err
	}
	req, _ := http.NewRequest("GET", "/metrics", nil)
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// 60 clients scrape once with keep-alive and then stay idle: each connection is closed by the
// exporter within --web.idle-timeout, and its file descriptors go back to where they were.
func TestExportClosesIdleKeepAliveConnections(t *testing.T) {
	requireTracing(t)
	const clients, idle = 60, 2 * time.Second
	exp := startExport(t, noDocker, "--web.idle-timeout", idle.String())
	base := exp.fds(t)
	type client struct {
		conn   net.Conn
		r      *bufio.Reader
		closed time.Duration // after its scrape
	}
	cs := make([]*client, clients)
	for i := range cs {
		conn, err := net.Dial("tcp", exp.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cs[i] = &client{conn: conn, r: bufio.NewReader(conn)}
		if code, err := scrapeOn(conn, cs[i].r); err != nil || code != 200 {
			t.Fatalf("client %d: %d %v", i, code, err)
		}
	}
	held := exp.fds(t)
	if held < base+clients {
		t.Fatalf("with %d idle clients the exporter has %v descriptors, %v before: they are not held", clients, held, base)
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			c.conn.SetReadDeadline(start.Add(idle + 5*time.Second))
			if _, err := c.r.ReadByte(); err == io.EOF {
				c.closed = time.Since(start)
			}
		}()
	}
	wg.Wait()
	for i, c := range cs {
		// The server's idle timer started when it had written the response, just before ours.
		if c.closed == 0 || c.closed > idle+time.Second {
			t.Errorf("client %d: closed after %v, want within the idle timeout %v (0: not closed)", i, c.closed, idle)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	after := exp.fds(t)
	for after > base+5 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		after = exp.fds(t)
	}
	t.Logf("open descriptors: %v before, %v with %d idle clients, %v after the idle timeout", base, held, clients, after)
	if after > base+5 {
		t.Errorf("%v open descriptors after the idle timeout, want within 5 of %v", after, base)
	}
	exp.stop(t)
}

// 100 scrapes at once against a collector slowed by 300 namespaces to walk: --web.max-requests
// (40) are served, each in full; the 60 beyond get 503 at once, and the exporter counts them.
func TestExportAnswers503BeyondMaxRequests(t *testing.T) {
	requireTracing(t)
	const scrapes, limit = 100, 40
	args := []string{noDocker, "--host=false"}
	for i := range 300 {
		ns := newNetns(t)
		args = append(args, "--netns", fmt.Sprintf("n%d=%s", i, ns.path))
	}
	exp := startExport(t, args...)
	// Every connection first, then every request at once: they all reach the exporter within a
	// few milliseconds, while the first scrape walks 300 namespaces (about a quarter second).
	conns := make([]net.Conn, scrapes)
	for i := range conns {
		c, err := net.Dial("tcp", exp.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	codes := make([]int, scrapes)
	errs := make([]error, scrapes)
	var ready, wg sync.WaitGroup
	ready.Add(1)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Wait()
			codes[i], errs[i] = scrapeOn(c, bufio.NewReader(c))
		}()
	}
	ready.Done()
	wg.Wait()
	by := map[int]int{}
	for i, code := range codes {
		if errs[i] != nil {
			t.Fatalf("scrape %d: %v", i, errs[i])
		}
		by[code]++
	}
	if by[200] != limit || by[503] != scrapes-limit {
		t.Errorf("status codes %v, want %d times 200 and %d times 503", by, limit, scrapes-limit)
	}
	m := exp.metrics(t)
	if got := value(m, `promhttp_metric_handler_requests_total{code="503"}`); got != scrapes-limit {
		t.Errorf("promhttp_metric_handler_requests_total{code=\"503\"} = %v, want %d", got, scrapes-limit)
	}
	t.Logf("a scrape of 300 namespaces took %vs", value(m, "sockscope_scrape_duration_seconds"))
	exp.stop(t)
}

// Probes have a path of their own that reads nothing from the kernel.
func TestExportHealthPath(t *testing.T) {
	requireTracing(t)
	exp := startExport(t, noDocker)
	resp, err := http.Get("http://" + exp.addr + "/-/healthy")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Errorf("/-/healthy: %d %q", resp.StatusCode, b)
	}
	exp.stop(t)
}
