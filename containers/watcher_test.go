package containers

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// sockProxy forwards a unix socket of its own to the real daemon's socket, so that a test can break
// the watcher's connection to the real daemon (cut) and bring it back (listen).
type sockProxy struct {
	path, upstream string

	accepted atomic.Int32

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func (p *sockProxy) listen(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			up, err := net.Dial("unix", p.upstream)
			if err != nil {
				down.Close()
				continue
			}
			p.mu.Lock()
			p.conns[down], p.conns[up] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(up, down); up.Close() }()
			go func() { defer p.wg.Done(); io.Copy(down, up); down.Close() }()
		}
	}()
}

// cut stops listening (removing the socket file) and closes every forwarded connection.
func (p *sockProxy) cut() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
}

// TestWatcherReconnects breaks the event stream, starts a selected container while the watcher
// cannot reach the daemon, and checks that the watcher reports the failure, reconnects, re-syncs
// and so picks the container up although it missed its start event.
func TestWatcherReconnects(t *testing.T) {
	t.Parallel()
	needDocker(t)
	p := &sockProxy{path: t.TempDir() + "/docker.sock", upstream: testenv.DockerSocket(t), conns: map[net.Conn]bool{}}
	p.listen(t)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := DialDocker(ctx, "unix://"+p.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Host() != "unix://"+p.path {
		t.Errorf("Host() = %q", c.Host())
	}

	name := uniqueName(t, "reconnect")
	id := createContainer(t, name)
	host, err := HostNetns()
	if err != nil {
		t.Fatal(err)
	}
	ch := &changes{}
	w := NewWatcher([]Runtime{c}, host, []Selector{{ID: id}}, ch.record)
	var failures atomic.Int32
	w.OnError = func(_ Info, err error) {
		failures.Add(1)
		t.Logf("OnError: %v", err)
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Once Run has subscribed, break the link. The client keeps one connection for Dial and Sync,
	// which the event stream then takes over; Run's re-sync after subscribing needs a second one.
	waitFor(t, 10*time.Second, "Run to subscribe to events", func() bool { return p.accepted.Load() >= 2 })
	p.cut()
	waitFor(t, 10*time.Second, "OnError after the connection to the daemon was cut", func() bool { return failures.Load() >= 1 })

	docker(t, "start", name)
	ns := statIno(t, fmt.Sprintf("/proc/%d/ns/net", inspectPid(t, id)))
	// (The inode may still carry the name of another test's stopped container: the kernel reuses
	// namespace inodes, and a stopped container's netns stays named until one claims it.)
	if got, ok := w.Names().Lookup(ns); ok && got.Name == name {
		t.Fatal("the watcher named the container while it could not reach the daemon")
	}

	p.listen(t)
	waitFor(t, 20*time.Second, fmt.Sprintf("onChange([%d]) after reconnecting", ns), func() bool { return ch.lastIs(ns) })
	if got, ok := w.Names().Lookup(ns); !ok || got.Name != name {
		t.Errorf("Lookup(%d) = %+v, %v; want %q", ns, got, ok, name)
	}

	// And the new stream works: a stop arrives as an event.
	docker(t, "stop", "-t", "0", name)
	waitFor(t, 10*time.Second, "onChange([]) after docker stop", func() bool { return ch.lastIs() })
}
