package exporter

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader"
	"github.com/sockscope/sockscope/loader/counters"
	"github.com/sockscope/sockscope/loader/sockets"
	"github.com/sockscope/sockscope/loader/syscalls"
)

// Options are what `sockscope export` is given.
type Options struct {
	Host        bool               // count the host's namespace, as container="host"
	Netns       []string           // more namespaces under a name: NAME=PATH or NAME=INODE
	Runtime     containers.Options // the runtimes that name containers' namespaces
	Web         WebOptions         // the server; Web.Listen is where it listens
	Syscalls    bool               // count syscalls per namespace too
	SyscallsTop int                // syscall series per namespace
	TopRemotes  int                // sockets by remote endpoint, the top K per namespace; 0: off
	Walk        bool               // sockets by state from a walk at every scrape, not from the transitions
	Reconcile   time.Duration      // walk one namespace per scrape whose gauges are older than this; 0: never
	BPFStats    bool               // the kernel keeps BPF programs' run counts and time
	MaxNetns    uint32             // namespaces counted at once
	MaxCounters uint32             // in-kernel counters over all namespaces
	Stderr      io.Writer          // warnings and what the exporter says
	Loaded      func()             // called once the counters are loaded, before the runtimes are asked (the command catches its signals then)
}

// Run exports until ctx ends or the server fails. It listens first (a port in use is the commonest
// failure), then loads the kernel's counters, publishes the fixed namespaces, and follows the
// runtimes' containers while it serves.
func Run(ctx context.Context, o Options) error {
	fixed, host, err := fixedNamespaces(o.Host, o.Netns)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Web.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (choose another with --web.listen-address)", o.Web.Listen, err)
	}
	defer ln.Close()
	if o.BPFStats {
		st, err := ebpf.EnableStats(uint32(0)) // BPF_STATS_RUN_TIME
		if err != nil {
			return fmt.Errorf("enable BPF statistics: %w", err)
		}
		defer st.Close()
	}
	if err := counters.Needs(); err != nil {
		return err
	}
	cs, err := counters.Open(counters.Config{MaxNetns: o.MaxNetns, MaxCounters: o.MaxCounters})
	if err != nil {
		return err
	}
	defer cs.Close()
	for _, w := range cs.Warnings() {
		fmt.Fprintf(o.Stderr, "sockscope: warning: %v\n", w)
	}
	socks, err := sockets.Open()
	if err != nil {
		return err
	}
	defer socks.Close()
	k := Kernel{Counters: cs, Sockets: socks, TopRemotes: o.TopRemotes, MaxNetns: int(o.MaxNetns), Walk: o.Walk, Reconcile: o.Reconcile}
	if o.Syscalls {
		sc, err := syscalls.Open(syscalls.Config{FilterNetns: true, ByNetns: true, MaxNetns: o.MaxNetns})
		if err != nil {
			return err
		}
		defer sc.Close()
		k.Syscalls = NewSyscalls(LoaderSyscalls(sc), o.SyscallsTop)
	}
	loader.ReleaseBTF() // everything is loaded
	coll := New(k, o.Web.Version, o.BPFStats)
	coll.Warn = func(msg string) { fmt.Fprintf(o.Stderr, "sockscope: warning: %s\n", events.Printable(msg)) }
	src := NewSources(coll, fixed, host, o.Stderr)
	if err := src.Publish(); err != nil {
		return err
	}
	if o.Loaded != nil {
		o.Loaded()
	}
	rts, err := src.Discover(ctx, o.Runtime)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		src.Follow(ctx, rts, o.Runtime)
	}()
	web := o.Web
	web.Ready = func() {
		scheme := "http"
		if web.ConfigFile != "" {
			scheme = "http(s)"
		}
		fmt.Fprintf(o.Stderr, "sockscope: exporting on %s://%s%s (%d namespaces)\n", scheme, ln.Addr(), web.Path, len(fixed))
	}
	err = Serve(ctx, ln, coll, web, o.Stderr)
	stop()
	wg.Wait()
	if err == nil {
		fmt.Fprintln(o.Stderr, "sockscope: exporter stopped")
	}
	return err
}

// fixedNamespaces are the host's namespace (with host) and those of --netns NAME=PATH|INODE;
// host is the host's inode.
func fixedNamespaces(withHost bool, netns []string) (fixed []Namespace, host uint32, err error) {
	hostPath, hostIno, err := containers.HostNetnsPath()
	if err != nil {
		return nil, 0, fmt.Errorf("find the host's network namespace: %w", err)
	}
	if withHost {
		fixed = append(fixed, Namespace{Inode: hostIno, Name: containers.HostName, Path: hostPath, Fixed: true})
	}
	hostTarget := containers.Target{Name: containers.HostName, Inode: hostIno, Path: hostPath}
	for _, n := range netns {
		name, arg, _ := strings.Cut(n, "=")
		t, err := containers.ParseNetns(arg, hostTarget)
		if err != nil {
			return nil, 0, err
		}
		if t.Path == "" {
			return nil, 0, fmt.Errorf("--netns %s: no process lives in network namespace %d, so its sockets cannot be counted; give its path instead (e.g. %s=/run/netns/NAME)", n, t.Inode, name)
		}
		fixed = append(fixed, Namespace{Inode: t.Inode, Name: containers.Name{Name: name}, Path: t.Path, Fixed: true})
	}
	return fixed, hostIno, nil
}
