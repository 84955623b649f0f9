package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/loader"
)

// prepare is what every kernel-facing command checks and sets first: kernel BTF and the
// capabilities (one clear line each when missing), and one P for the Go runtime. One goroutine
// does the per-event work; with more Ps the runtime's idle threads spin looking for work on
// every wakeup, on whichever CPU the traced workload runs (measured for trace: 7.3 -> 5.8 µs of
// sockscope CPU per connection, and a faster storm). GOMAXPROCS set by the user wins.
func prepare() error {
	if err := loader.CheckBTF(); err != nil {
		return err
	}
	if err := loader.CheckPrivileges(); err != nil {
		return err
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	return nil
}

// namer names network namespaces; containers.Names, or just the host without Docker.
type namer interface {
	Lookup(inode uint32) (name, id string, ok bool)
}

type hostOnly uint32

func (h hostOnly) Lookup(inode uint32) (string, string, bool) {
	if inode == uint32(h) {
		return "host", "", true
	}
	return "", "", false
}

// scope is what `trace` and `syscalls` watch: the containers named with --container (resolved
// before anything is loaded, so a typo costs nothing) plus --netns, or every namespace.
type scope struct {
	docker   *containers.Client
	selected []string // container IDs
	fixed    []uint32 // from --netns
	host     uint32
}

// newScope resolves --container queries. Docker is required for them and optional otherwise:
// without it namespaces show their inodes, with a warning.
func newScope(ctx context.Context, dockerHost string, queries []string, fixed []uint32, stderr io.Writer) (*scope, error) {
	host, err := containers.HostNetns()
	if err != nil {
		return nil, fmt.Errorf("find the host's network namespace: %w", err)
	}
	s := &scope{fixed: fixed, host: host}
	docker, err := containers.Dial(ctx, dockerHost)
	if err != nil {
		if len(queries) > 0 {
			return nil, err
		}
		fmt.Fprintf(stderr, "sockscope: warning: %v; showing network namespace inodes instead of container names\n", err)
		return s, nil
	}
	s.docker = docker
	for _, q := range queries {
		c, err := docker.Find(ctx, q)
		if err != nil {
			docker.Close()
			return nil, err
		}
		s.selected = append(s.selected, c.ID)
	}
	return s, nil
}

// filtered reports whether the kernel side must keep to a set of namespaces.
func (s *scope) filtered() bool { return len(s.selected) > 0 || len(s.fixed) > 0 }

// follow names namespaces from now on and, with --container, keeps the kernel's netns filter
// equal to the selected containers' namespaces (plus --netns) as they start, restart and stop.
// setup, when not nil, configures the watcher's hooks before its first sync.
func (s *scope) follow(ctx context.Context, setNetns func([]uint32) error, stderr io.Writer, setup ...func(*containers.Watcher)) (namer, error) {
	if s.docker == nil {
		return hostOnly(s.host), nil
	}
	var mu sync.Mutex
	w := containers.NewWatcher(s.docker, s.host, s.selected, func(netns []uint32) {
		if len(s.selected) == 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if err := setNetns(append(append([]uint32(nil), s.fixed...), netns...)); err != nil {
			fmt.Fprintf(stderr, "sockscope: %v\n", err)
		}
	})
	w.OnError = func(err error) {
		fmt.Fprintf(stderr, "sockscope: warning: Docker: %v (retrying)\n", err)
	}
	for _, f := range setup {
		f(w)
	}
	if err := w.Sync(ctx); err != nil {
		if len(s.selected) > 0 {
			return nil, err
		}
		fmt.Fprintf(stderr, "sockscope: warning: %v\n", err)
	}
	go w.Run(ctx)
	return w.Names(), nil
}

func (s *scope) Close() {
	if s.docker != nil {
		s.docker.Close()
	}
}

// parseNetns reads --netns: an inode, or a namespace file's path.
func parseNetns(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	ino, err := containers.NetnsInodeOfPath(s)
	if err != nil {
		return 0, fmt.Errorf("--netns %s: %w", s, err)
	}
	return ino, nil
}
