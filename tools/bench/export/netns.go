package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// The netns phase: what a scrape costs as the namespaces grow, with the socket gauges kept from
// the transitions against a walk of each namespace's TCP tables at every scrape (--sockets.walk,
// and the binary from before the gauges when -sockscope-before names one), all in one run. The
// namespaces are the harness's own (ip netns add): no container runtime is needed.

// netnsVariant is one way of running the exporter.
type netnsVariant struct {
	label string
	bin   string
	flags []string
}

// netnsPoint is one variant at one number of namespaces.
type netnsPoint struct {
	wall, rep []float64 // ms per scrape: client wall time, sockscope_scrape_duration_seconds
	sockets   float64   // sum of sockscope_tcp_sockets at the last scrape
	walks     float64   // sockscope_tcp_socket_walks_total at the end
	states    map[string]float64
	rssKB     int64
}

type netnsPhase struct {
	counts   []int
	variants []netnsVariant
	points   map[int][]*netnsPoint // by count, by variant
	perNetns int                   // sockets each namespace holds
	ehash    string                // the host's TCP established hash size, from the kernel log
	warnings []string
}

// netnsHeld is what each benchmark namespace holds: a listener and this many connections
// (both ends ESTABLISHED), for the whole phase.
const netnsHeld = 5

func (b *bench) runNetns() (*netnsPhase, error) {
	c := b.cfg
	p := &netnsPhase{points: map[int][]*netnsPoint{}, perNetns: 1 + 2*netnsHeld}
	for _, f := range strings.Split(c.netnsCounts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-netns-counts: %q is not a positive number", f)
		}
		p.counts = append(p.counts, n)
	}
	maxN := 0
	for _, n := range p.counts {
		maxN = max(maxN, n)
	}
	if c.before != "" {
		p.variants = append(p.variants, netnsVariant{"-sockscope-before", c.before, nil})
	}
	p.variants = append(p.variants,
		netnsVariant{"--sockets.walk", c.sockscope, []string{"--sockets.walk"}},
		netnsVariant{"gauges (default)", c.sockscope, nil},
		netnsVariant{"gauges, a reconciling walk every scrape", c.sockscope, []string{"--sockets.reconcile=1ns"}},
	)
	p.ehash = ehashSize()

	benchkit.Logf("netns: creating %d namespaces, each with a listener and %d connections", maxN, netnsHeld)
	paths := make([]string, maxN)
	for i := range paths {
		path, err := benchkit.CreateNetns(fmt.Sprintf("exportbench-%s-%03d", b.runID, i))
		if err != nil {
			return nil, err
		}
		paths[i] = path
		if err := holdConnections(path, netnsHeld); err != nil {
			return nil, fmt.Errorf("netns %s: %w", path, err)
		}
	}
	for _, n := range p.counts {
		args := []string{"--runtime-endpoint=none", "--host=false"}
		for i := range n {
			args = append(args, "--netns", fmt.Sprintf("b%03d=%s", i, paths[i]))
		}
		exps := make([]*exporter, len(p.variants))
		points := make([]*netnsPoint, len(p.variants))
		for v, vr := range p.variants {
			e, err := startExporter(vr.bin, append(append([]string(nil), args...), vr.flags...)...)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", vr.label, err)
			}
			defer e.abort()
			exps[v], points[v] = e, &netnsPoint{}
			// The first scrapes make the gauges' first walks: not timed.
			for range 2 {
				if _, err := e.scrape(); err != nil {
					return nil, err
				}
			}
		}
		for r := range c.netnsRounds {
			for k := range p.variants {
				v := (k + r) % len(p.variants) // rotated from round to round
				for range c.netnsScrapes {
					s, err := exps[v].scrape()
					if err != nil {
						return nil, fmt.Errorf("%s: %w", p.variants[v].label, err)
					}
					pt := points[v]
					pt.wall = append(pt.wall, benchkit.Millis(s.Wall))
					pt.rep = append(pt.rep, s.Reported*1e3)
					pt.sockets, _ = s.M.sum("sockscope_tcp_sockets")
					pt.states = s.M.byLabel("sockscope_tcp_sockets", "state")
					pt.walks = s.M.value("sockscope_tcp_socket_walks_total")
				}
			}
		}
		for v, e := range exps {
			if st, err := e.status(); err == nil {
				points[v].rssKB = st.RSSKB
			}
			if err := e.stop(); err != nil {
				return nil, err
			}
			p.warnings = append(p.warnings, e.warnings()...)
			if want := float64(n * p.perNetns); points[v].sockets != want {
				return nil, fmt.Errorf("%s, %d namespaces: sockscope_tcp_sockets adds up to %v (%v), the namespaces hold %v", p.variants[v].label, n, points[v].sockets, points[v].states, want)
			}
		}
		p.points[n] = points
		benchkit.Logf("netns: %d namespaces: median scrape %s", n, p.medians(n))
	}
	return p, nil
}

func (p *netnsPhase) medians(n int) string {
	var parts []string
	for v, pt := range p.points[n] {
		parts = append(parts, fmt.Sprintf("%s %.1f ms", p.variants[v].label, benchkit.Median(pt.wall)))
	}
	return strings.Join(parts, ", ")
}

// heldListeners keeps the benchmark namespaces' listeners open.
var heldListeners []net.Listener

// holdConnections makes, inside the namespace at path, a listener on 127.0.0.1:8080 and n
// connections to it that stay open for the life of the harness (loopback only).
func holdConnections(path string, n int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		// Sockets belong to the namespace of the thread that creates them, here.
		ln, err := net.Listen("tcp", "127.0.0.1:8080")
		if err != nil {
			errc <- err
			return
		}
		heldListeners = append(heldListeners, ln) // unreachable, its finalizer would close it
		accepted := make(chan net.Conn, n)
		go func() {
			for range n {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		for range n {
			c, err := net.Dial("tcp", "127.0.0.1:8080")
			if err != nil {
				errc <- err
				return
			}
			go io.Copy(io.Discard, c) // held open
		}
		for range n {
			c := <-accepted
			go io.Copy(io.Discard, c)
		}
		errc <- nil
	}()
	return <-errc
}

// ehashSize is the size of the host's TCP established hash (net.ipv4.tcp_ehash_entries, Linux
// 6.1 and later), or "".
func ehashSize() string {
	out, err := os.ReadFile("/proc/sys/net/ipv4/tcp_ehash_entries")
	if err != nil {
		return ""
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return ""
	}
	return benchkit.Thousands(int64(n))
}

func (b *bench) reportNetns(p func(string, ...any), s *netnsPhase) {
	p("#### Scrape time by number of namespaces\n\n")
	hash := "the host's TCP established hash"
	if s.ehash != "" {
		hash += " (" + s.ehash + " buckets here)"
	}
	p("Network namespaces of the harness's own, each holding a listener and %d connections (%d sockets), counted with `--netns`; no container runtime. "+
		"Each variant is an exporter of its own, scraped %d times back to back in each of %d rounds, the order of the variants rotated from round to round; "+
		"the first two scrapes of each (the gauges' first walks) are not timed. `--sockets.walk` walks each namespace's TCP tables at every scrape, which goes through %s once per namespace; "+
		"the gauges read the counters, each namespace's time-wait count and sysctls, and one iterator over the listeners. "+
		"The last variant walks one namespace at every scrape, as a scrape does when a namespace's `--sockets.reconcile` interval is due. Every variant's `sockscope_tcp_sockets` added up to what the namespaces hold.\n\n",
		netnsHeld, s.perNetns, b.cfg.netnsScrapes, b.cfg.netnsRounds, hash)
	base := -1 // the variant ratios are against: --sockets.walk
	for v, vr := range s.variants {
		if vr.label == "--sockets.walk" {
			base = v
		}
	}
	if b.cfg.before != "" {
		p("`-sockscope-before` is %s, run with default flags.\n\n", benchkit.FileID(b.cfg.before, "2006-01-02 15:04 UTC"))
	}
	p("| namespaces | variant | scrape, median (ms) | p90 (ms) | exporter's own figure, median (ms) | vs. `--sockets.walk` | walks made by the gauges | RSS (MB) |\n|---|---|---|---|---|---|---|---|\n")
	for _, n := range s.counts {
		pts := s.points[n]
		for v, pt := range pts {
			ratio := benchkit.Median(pt.wall) / benchkit.Median(pts[base].wall)
			walks := "—"
			if pt.walks >= 0 && v != base && s.variants[v].bin == b.cfg.sockscope {
				walks = fmt.Sprintf("%.0f", pt.walks)
			}
			p("| %d | %s | %.2f | %.2f | %.2f | %.3fx | %s | %.1f |\n", n, s.variants[v].label, benchkit.Median(pt.wall), percentile(pt.wall, 90),
				benchkit.Median(pt.rep), ratio, walks, benchkit.RSSMB(pt.rssKB))
		}
	}
	p("\n")
}
