package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/sockscope/sockscope/exporter"
)

// webTimeouts are the HTTP server's deadlines.
type webTimeouts struct{ read, write, idle time.Duration }

// defaultListen is sockscope's exporter port: 9890, outside the ports of the well-known exporters
// (node 9100, blackbox 9115, cAdvisor 8080, ...).
const defaultListen = ":9890"

type exportFlags struct {
	listen      string
	path        string
	webConfig   string
	maxRequests int
	timeouts    webTimeouts
	runtimes    runtimeFlags
	netns       []string
	syscalls    bool
	syscallsTop int
	bpfStats    bool
	maxNetns    uint32
	maxCounters uint32
	host        bool
	topRemotes  int
	walk        bool
	reconcile   time.Duration
}

func parseExportFlags(args []string, stdout io.Writer) (*exportFlags, bool, error) {
	f := &exportFlags{}
	fs := newFlagSet("sockscope export")
	fs.StringVar(&f.listen, "web.listen-address", defaultListen, "address to serve metrics on")
	fs.StringVar(&f.path, "web.telemetry-path", "/metrics", "path of the metrics")
	fs.StringVar(&f.webConfig, "web.config.file", "", "exporter-toolkit web configuration file: TLS and basic auth")
	fs.IntVar(&f.maxRequests, "web.max-requests", 40, "scrapes served at once; more get 503 Service Unavailable (0: no limit)")
	fs.DurationVar(&f.timeouts.read, "web.read-timeout", 30*time.Second, "time a client has to send its whole request")
	fs.DurationVar(&f.timeouts.write, "web.write-timeout", 2*time.Minute, "time a response may take, the scrape included (a scrape of thousands of namespaces takes seconds)")
	fs.DurationVar(&f.timeouts.idle, "web.idle-timeout", time.Minute, "time an idle keep-alive connection is kept open")
	f.runtimes.add(fs)
	fs.BoolVar(&f.host, "host", true, "count the host's network namespace (container=\"host\"); --host=false for containers only")
	fs.StringArrayVar(&f.netns, "netns", nil, "also count this network namespace under a name: NAME=PATH or NAME=INODE (e.g. blue=/run/netns/blue); repeatable")
	fs.BoolVar(&f.syscalls, "syscalls", false, "also count syscalls per container (sockscope_syscalls_total); costs every syscall on the machine a few hundred ns")
	fs.IntVar(&f.syscallsTop, "syscalls.top", 20, "syscall series per container (and syscall/errno pairs); the rest add up in \"other\"")
	fs.IntVar(&f.topRemotes, "top-remotes", 0, "also break sockets down by remote endpoint (address:port), the top K per container plus \"other\" (sockscope_tcp_remote_sockets); 0 = off")
	fs.BoolVar(&f.walk, "sockets.walk", false, "count sockscope_tcp_sockets with a walk of each namespace's TCP tables at every scrape (exactly ss's states, at a cost that grows with the host's TCP hash times the namespaces) instead of from the transitions")
	fs.DurationVar(&f.reconcile, "sockets.reconcile", 10*time.Minute, "walk one namespace per scrape whose gauges were last checked longer ago than this, and correct them (sockscope_tcp_socket_corrections_total); 0 never")
	fs.BoolVar(&f.bpfStats, "bpf-stats", false, "make the kernel keep run counts and run time of BPF programs (sockscope_bpf_program_*); costs about 20 ns per program run")
	fs.Uint32Var(&f.maxNetns, "max-netns", 4096, "network namespaces counted at once; past it, those seen last wait (sockscope_namespaces_untracked)")
	fs.Uint32Var(&f.maxCounters, "max-counters", 65536, "in-kernel counters over all namespaces (about 40 per busy namespace)")
	if helped, err := parseFlags(fs, args, stdout, "sockscope export [flags]\n\nA Prometheus exporter: TCP state transitions, connect outcomes and latency, sockets by state,\nretransmits and resets per container, counted in the kernel. Metrics at http://ADDRESS/metrics.", ""); err != nil || helped {
		return nil, helped, err
	}
	if !strings.HasPrefix(f.path, "/") || f.path == "/" {
		return nil, false, usageError{fmt.Sprintf("--web.telemetry-path must start with / and not be / itself (the landing page), not %q", f.path)}
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return nil, false, usageError{fmt.Sprintf("--web.listen-address %q: want HOST:PORT or :PORT (%v)", f.listen, err)}
	}
	if f.maxRequests < 0 {
		return nil, false, usageError{fmt.Sprintf("--web.max-requests must be 0 (no limit) or more, not %d", f.maxRequests)}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--web.read-timeout", f.timeouts.read}, {"--web.write-timeout", f.timeouts.write}, {"--web.idle-timeout", f.timeouts.idle}} {
		if d.v <= 0 {
			return nil, false, usageError{fmt.Sprintf("%s must be positive, not %s", d.name, d.v)}
		}
	}
	if f.topRemotes < 0 {
		return nil, false, usageError{fmt.Sprintf("--top-remotes must be 0 (off) or more, not %d", f.topRemotes)}
	}
	if f.reconcile < 0 {
		return nil, false, usageError{fmt.Sprintf("--sockets.reconcile must be 0 (never) or more, not %s", f.reconcile)}
	}
	if f.syscallsTop < 1 {
		return nil, false, usageError{fmt.Sprintf("--syscalls.top must be at least 1, not %d", f.syscallsTop)}
	}
	if f.maxNetns < 1 || f.maxCounters < 64 {
		return nil, false, usageError{"--max-netns must be at least 1 and --max-counters at least 64"}
	}
	for _, n := range f.netns {
		name, path, ok := strings.Cut(n, "=")
		if !ok || name == "" || path == "" {
			return nil, false, usageError{fmt.Sprintf("--netns %q: want NAME=PATH or NAME=INODE, e.g. blue=/run/netns/blue", n)}
		}
		if name == "host" {
			return nil, false, usageError{"--netns: the name \"host\" is the host's namespace; choose another"}
		}
	}
	if f.webConfig != "" {
		if err := web.Validate(f.webConfig); err != nil {
			return nil, false, usageError{fmt.Sprintf("--web.config.file %s: %v", f.webConfig, oneLine(err))}
		}
	}
	return f, false, nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func runExport(args []string, stdout, stderr io.Writer) error {
	f, helped, err := parseExportFlags(args, stdout)
	if err != nil || helped {
		return err
	}
	if err := prepare(); err != nil {
		return err
	}
	ctx, catch, release := catchSignals()
	defer release()
	return exporter.Run(ctx, exporter.Options{Loaded: catch, Host: f.host, Netns: f.netns, Runtime: f.runtimes.options(),
		Web: exporter.WebOptions{Path: f.path, Listen: f.listen, ConfigFile: f.webConfig, MaxRequests: f.maxRequests,
			ReadTimeout: f.timeouts.read, WriteTimeout: f.timeouts.write, IdleTimeout: f.timeouts.idle, Version: version},
		Syscalls: f.syscalls, SyscallsTop: f.syscallsTop, TopRemotes: f.topRemotes, Walk: f.walk, Reconcile: f.reconcile,
		BPFStats: f.bpfStats, MaxNetns: f.maxNetns, MaxCounters: f.maxCounters, Stderr: stderr})
}
