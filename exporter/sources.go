package exporter

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/sockscope/sockscope/containers"
)

// Sources combines the fixed namespaces (the host, --netns) with the running containers' and
// pods' and hands the whole set to a Collector whenever it changes. Runtimes that are down at
// start, restart, or appear later are followed; their problems are said once each on the writer
// given to NewSources.
type Sources struct {
	coll   *Collector
	fixed  []Namespace
	host   uint32 // containers in it (--network host, hostNetwork pods) are the host's
	stderr io.Writer

	mu       sync.Mutex
	running  []containers.Container
	names    *containers.Names
	lastWarn map[string]string // per runtime endpoint
}

// NewSources serves coll the fixed namespaces and the containers it finds; host is the host's
// namespace, whose containers are counted with it when fixed holds it, and not at all otherwise.
func NewSources(coll *Collector, fixed []Namespace, host uint32, stderr io.Writer) *Sources {
	return &Sources{coll: coll, fixed: fixed, host: host, stderr: stderr}
}

// Publish hands the current set to the collector.
func (s *Sources) Publish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := append([]Namespace(nil), s.fixed...)
	byNs := map[uint32]int{}
	for i, n := range all {
		byNs[n.Inode] = i
	}
	for _, c := range s.running {
		if c.Netns == 0 {
			continue
		}
		if i, ok := byNs[c.Netns]; ok {
			all[i].Containers = append(all[i].Containers, c)
			continue
		}
		if c.Netns == s.host {
			continue // --host=false: not counted, and neither are the containers on its network
		}
		name := containers.DisplayName([]containers.Container{c})
		if s.names != nil {
			if n, ok := s.names.Lookup(c.Netns); ok {
				name = n
			}
		}
		byNs[c.Netns] = len(all)
		all = append(all, Namespace{Inode: c.Netns, Name: name, Path: c.NetnsPath, Containers: []containers.Container{c}})
	}
	return s.coll.SetNamespaces(all)
}

// Discover finds the runtimes at start. A runtime the user named must answer (its error is
// returned otherwise); a probed one that fails is a warning.
func (s *Sources) Discover(ctx context.Context, opts containers.Options) ([]containers.Runtime, error) {
	rts, probes, err := containers.Discover(ctx, opts)
	if err != nil {
		return nil, err
	}
	for _, w := range containers.ProbeWarnings(probes, rts, opts) {
		if len(rts) == 0 {
			w += "; counting the host and --netns namespaces, probing again every 30s"
		}
		fmt.Fprintf(s.stderr, "sockscope: warning: %s\n", w)
	}
	return rts, nil
}

// reprobe is how often an exporter that probes for runtimes looks for one that started after it
// (a node's runtime that comes up late, a second runtime installed later).
const reprobe = 30 * time.Second

// Follow keeps the container set current until ctx ends. A runtime may be down at start or restart later:
// sockscope keeps serving what it knows and reconnects with backoff. Unless the runtimes were
// named, it probes the well-known sockets again every 30 s and follows any runtime that has
// appeared since, so a node whose runtime starts after sockscope is named once it does.
func (s *Sources) Follow(ctx context.Context, rts []containers.Runtime, opts containers.Options) {
	named := len(opts.Endpoints) > 0 || opts.DockerHost != ""
	if named && len(rts) == 0 {
		return // --runtime-endpoint none
	}
	defer func() {
		for _, rt := range rts {
			rt.Close()
		}
	}()
	for {
		for _, rt := range rts {
			fmt.Fprintf(s.stderr, "sockscope: naming containers through %s %s at %s\n", rt.Info().Kind, rt.Info().Version, rt.Info().Endpoint)
		}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		if len(rts) > 0 {
			w := containers.NewWatcher(rts, s.host, nil, nil)
			w.OnRuntime = s.coll.RuntimeUp
			w.OnError = func(rt containers.Info, err error) { s.warn(rt, err.Error()) }
			w.OnUpdate = func(running []containers.Container) {
				s.mu.Lock()
				s.running, s.names = running, w.Names()
				s.mu.Unlock()
				if err := s.Publish(); err != nil {
					fmt.Fprintf(s.stderr, "sockscope: %v\n", err)
				}
			}
			if err := w.Sync(wctx); err != nil {
				s.warn(containers.Info{Kind: "runtime"}, err.Error())
			}
			go func() { defer close(done); w.Run(wctx) }()
		} else {
			close(done)
		}
		added := s.awaitNewRuntimes(ctx, rts, opts, named)
		stop()
		<-done
		if added == nil {
			return // ctx is done
		}
		rts = append(rts, added...)
	}
}

// awaitNewRuntimes probes every reprobe until it finds runtimes that rts does not have, and
// returns them; nil when ctx ends first. With named runtimes it only waits for ctx.
func (s *Sources) awaitNewRuntimes(ctx context.Context, rts []containers.Runtime, opts containers.Options, named bool) []containers.Runtime {
	t := time.NewTicker(reprobe)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if named {
			continue
		}
		found, _, err := containers.Discover(ctx, opts)
		if err != nil {
			continue
		}
		var added []containers.Runtime
		for _, f := range found {
			if slices.ContainsFunc(rts, func(r containers.Runtime) bool { return r.Info().Endpoint == f.Info().Endpoint }) {
				f.Close()
				continue
			}
			added = append(added, f)
		}
		if len(added) > 0 {
			return added
		}
	}
}

// warn prints a runtime's problem once, not at every retry.
func (s *Sources) warn(rt containers.Info, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastWarn == nil {
		s.lastWarn = map[string]string{}
	}
	if s.lastWarn[rt.Endpoint] == msg {
		return
	}
	s.lastWarn[rt.Endpoint] = msg
	fmt.Fprintf(s.stderr, "sockscope: warning: %s: %s\n", rt.Kind, msg)
}
