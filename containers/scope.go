package containers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Target is one network namespace a command works on.
type Target struct {
	Name  Name
	Inode uint32
	// Path is a file that enters the namespace (/proc/PID/ns/net, /run/netns/NAME); empty for
	// a namespace given by inode that no process lives in.
	Path string
}

// Display is the target's name, or its inode when it has none.
func (t Target) Display() string {
	if t.Name.Name != "" {
		return t.Name.Name
	}
	return strconv.FormatUint(uint64(t.Inode), 10)
}

// Scope is what one command looks at: the host, the namespaces given with --netns, and the
// containers and pods given with --container, over the runtimes that name them. Every command
// resolves its flags through it, so that each flag means the same everywhere.
type Scope struct {
	Runtimes []Runtime
	Probes   []Probe
	Host     Target
	Fixed    []Target   // --netns
	Selected []Selector // --container
}

// Spec is what the user asked for.
type Spec struct {
	Runtime    Options
	Containers []string // --container: names, ID prefixes, NAMESPACE/POD, pod names
	Netns      []string // --netns: inodes or paths
}

// NewScope finds the runtimes, resolves --netns and --container, and reports the warnings to
// show (a probed runtime that fails, or none at all). --container needs a runtime; without one,
// names are inodes. A query that matches nothing fails with the closest running names.
func NewScope(ctx context.Context, spec Spec) (*Scope, []string, error) {
	hostPath, hostIno, err := HostNetnsPath()
	if err != nil {
		return nil, nil, fmt.Errorf("find the host's network namespace: %w", err)
	}
	s := &Scope{Host: Target{Name: HostName, Inode: hostIno, Path: hostPath}}
	for _, a := range spec.Netns {
		t, err := ParseNetns(a, s.Host)
		if err != nil {
			return nil, nil, err
		}
		s.Fixed = append(s.Fixed, t)
	}
	rts, probes, err := Discover(ctx, spec.Runtime)
	if err != nil {
		return nil, nil, err
	}
	s.Runtimes, s.Probes = rts, probes
	warnings := ProbeWarnings(probes, rts, spec.Runtime)
	if len(rts) == 0 && len(spec.Containers) > 0 {
		return nil, nil, fmt.Errorf("--container needs a container runtime, and none answers (%s)", lookedAt(probes, spec.Runtime))
	}
	for _, q := range spec.Containers {
		sel, err := Find(ctx, rts, q)
		if err != nil {
			s.Close()
			return nil, nil, err
		}
		if !slices.ContainsFunc(s.Selected, func(o Selector) bool { return o.ID == sel.ID && o.Pod == sel.Pod }) {
			s.Selected = append(s.Selected, sel)
		}
	}
	return s, warnings, nil
}

// ProbeWarnings are the lines to show about runtimes that were probed and failed, or about finding
// none. A containerd without CRI next to a Docker that answers is Docker's own, and says nothing.
func ProbeWarnings(probes []Probe, rts []Runtime, opts Options) []string {
	var out []string
	for _, p := range probes {
		if p.Err == nil || p.Explicit {
			continue
		}
		if errors.Is(p.Err, ErrCRIDisabled) && slices.ContainsFunc(rts, func(r Runtime) bool { k := r.Info().Kind; return k == "docker" || k == "podman" }) {
			continue
		}
		out = append(out, p.Err.Error())
	}
	if len(rts) == 0 && !(len(opts.Endpoints) == 1 && opts.Endpoints[0] == NoRuntimes) {
		out = append(out, fmt.Sprintf("no container runtime answers (%s); showing network namespace inodes instead of names", lookedAt(probes, opts)))
	}
	return out
}

func lookedAt(probes []Probe, opts Options) string {
	if len(probes) == 0 {
		root := ""
		if opts.HostRoot != "" {
			root = " under " + opts.HostRoot
		}
		return "no runtime socket at the well-known places" + root + "; name one with --runtime-endpoint"
	}
	var es []string
	for _, p := range probes {
		es = append(es, p.Endpoint)
	}
	return "tried " + strings.Join(es, ", ")
}

// Close releases the runtimes.
func (s *Scope) Close() {
	for _, rt := range s.Runtimes {
		rt.Close()
	}
	s.Runtimes = nil
}

// Filtered reports whether the command keeps to some namespaces (--container, --netns) rather
// than the whole host.
func (s *Scope) Filtered() bool { return len(s.Selected) > 0 || len(s.Fixed) > 0 }

// FixedInodes are the --netns namespaces' inodes.
func (s *Scope) FixedInodes() []uint32 {
	out := make([]uint32, len(s.Fixed))
	for i, t := range s.Fixed {
		out[i] = t.Inode
	}
	return out
}

// Describe says what the scope covers, for "attached, tracing ..." lines.
func (s *Scope) Describe() string {
	var parts []string
	for _, sel := range s.Selected {
		parts = append(parts, sel.Name)
	}
	for _, t := range s.Fixed {
		parts = append(parts, "netns "+t.Display())
	}
	if len(parts) == 0 {
		return "all network namespaces"
	}
	return strings.Join(parts, ", ")
}

// NewWatcher returns a watcher over the scope's runtimes that follows the selected containers
// (or all, for naming); onChange receives the selected namespaces plus the --netns ones.
func (s *Scope) NewWatcher(onChange func(netns []uint32)) *Watcher {
	fixed := s.FixedInodes()
	var cb func([]uint32)
	if onChange != nil {
		cb = func(ns []uint32) {
			all := append(slices.Clone(fixed), ns...)
			slices.Sort(all)
			onChange(slices.Compact(all))
		}
	}
	return NewWatcher(s.Runtimes, s.Host.Inode, s.Selected, cb)
}

// Running lists what every runtime runs now (for commands that look once).
func (s *Scope) Running(ctx context.Context) ([]Container, error) {
	var out []Container
	for _, rt := range s.Runtimes {
		cs, err := rt.Running(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}

// Targets are the namespaces to look into given what runs: the --netns ones, the selected
// containers' and pods' (or, with all or without a filter, the host and every container's), each
// once, named. A selected container that does not run has no namespace and is left out; the
// caller says so (see Missing).
func (s *Scope) Targets(running []Container, all bool) []Target {
	var out []Target
	seen := map[uint32]int{}
	add := func(t Target) {
		if _, ok := seen[t.Inode]; ok {
			return
		}
		seen[t.Inode] = len(out)
		out = append(out, t)
	}
	filtered := s.Filtered() && !all
	if !filtered {
		add(s.Host)
	}
	for _, t := range s.Fixed {
		add(t)
	}
	groups := map[uint32][]Container{}
	for _, c := range running {
		if c.Netns == 0 || c.NetnsPath == "" {
			continue
		}
		if filtered && !slices.ContainsFunc(s.Selected, func(sel Selector) bool { return sel.Matches(c) }) {
			continue
		}
		groups[c.Netns] = append(groups[c.Netns], c)
	}
	var cts []Target
	for ns, cs := range groups {
		if ns == s.Host.Inode {
			if filtered {
				add(s.Host) // an explicitly selected container on the host's network
			}
			continue
		}
		slices.SortFunc(cs, func(a, b Container) int { return strings.Compare(a.ID, b.ID) })
		cts = append(cts, Target{Name: DisplayName(cs), Inode: ns, Path: cs[0].NetnsPath})
	}
	slices.SortFunc(cts, func(a, b Target) int {
		return cmp.Or(strings.Compare(a.Name.Name, b.Name.Name), cmp.Compare(a.Inode, b.Inode))
	})
	for _, t := range cts {
		add(t)
	}
	return out
}

// Missing returns the selected containers and pods that have no running namespace in running.
func (s *Scope) Missing(running []Container) []Selector {
	var out []Selector
	for _, sel := range s.Selected {
		if !slices.ContainsFunc(running, func(c Container) bool { return c.Netns != 0 && sel.Matches(c) }) {
			out = append(out, sel)
		}
	}
	return out
}

// ParseNetns reads --netns: an inode, or the path of a namespace file (/proc/PID/ns/net,
// /run/netns/NAME). An inode is entered through its /run/netns file or a process that lives in
// it, when there is one; either way a namespace pinned by ip netns is named after its file.
func ParseNetns(arg string, host Target) (Target, error) {
	if n, err := strconv.ParseUint(arg, 10, 32); err == nil {
		ino := uint32(n)
		if ino == 0 {
			return Target{}, fmt.Errorf("--netns 0: not a network namespace inode (see: ls -iL /proc/PID/ns/net)")
		}
		if ino == host.Inode {
			return host, nil
		}
		t := Target{Inode: ino, Path: pathOf(ino)}
		if name, ok := strings.CutPrefix(t.Path, "/run/netns/"); ok {
			t.Name = Name{Name: name}
		}
		return t, nil
	}
	if !strings.HasPrefix(arg, "/") {
		return Target{}, fmt.Errorf("--netns %q: want an inode (ls -iL /proc/PID/ns/net) or a path such as /proc/PID/ns/net or /run/netns/NAME", arg)
	}
	ino, err := NetnsInodeOfPath(arg)
	if err != nil {
		return Target{}, fmt.Errorf("--netns %s: %w", arg, err)
	}
	if ino == host.Inode {
		return host, nil
	}
	t := Target{Inode: ino, Path: arg}
	if name, ok := strings.CutPrefix(arg, "/run/netns/"); ok {
		t.Name = Name{Name: name}
	}
	return t, nil
}

// pathOf returns a file that enters the namespace with that inode: one that `ip netns` pinned
// under /run/netns, or /proc/PID/ns/net of some process in it; "" when there is none.
func pathOf(ino uint32) string {
	pinned, _ := filepath.Glob("/run/netns/*")
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range append(pinned, procs...) {
		if i, err := NetnsInodeOfPath(p); err == nil && i == ino {
			return p
		}
	}
	return ""
}
