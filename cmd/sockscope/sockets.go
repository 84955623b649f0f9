package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader"
)

type socketsFlags struct {
	containers []string
	all        bool
	netns      string
	state      string
	ports      []int
	output     string
	summary    bool
	top        int
	dockerHost string
	read       string
	at         time.Duration
}

func parseSocketsFlags(args []string, stdout io.Writer) (*socketsFlags, bool, error) {
	f := &socketsFlags{}
	fs := newFlagSet("sockscope sockets")
	fs.StringArrayVarP(&f.containers, "container", "c", nil, "list this container's sockets (name or ID prefix); repeatable")
	fs.BoolVar(&f.all, "all", false, "the host and every running container")
	fs.StringVar(&f.netns, "netns", "", "this network namespace: an inode, or a path such as /proc/PID/ns/net or /run/netns/NAME")
	fs.StringVar(&f.state, "state", "", "only sockets in this TCP state (e.g. TIME_WAIT)")
	fs.IntSliceVarP(&f.ports, "port", "p", nil, "only sockets with this local or remote port; repeatable")
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json (one object per line)")
	fs.BoolVar(&f.summary, "summary", false, "per namespace: counts by state, top remote endpoints, ephemeral port use")
	fs.IntVar(&f.top, "top", 10, "remote endpoints to list in --summary")
	fs.StringVar(&f.dockerHost, "docker-host", "", "Docker daemon address (default $DOCKER_HOST or unix:///var/run/docker.sock)")
	fs.StringVarP(&f.read, "read", "r", "", "show a recording's socket snapshots (sockscope record) instead of the live tables")
	fs.DurationVar(&f.at, "at", -1, "with -r: the last snapshot taken this long after the recording started (default: the last one)")
	if helped, err := parseFlags(fs, args, stdout, "sockscope sockets [flags]\n\nThe TCP sockets of the host or of containers, like ss -tan, read from the kernel's tables with a BPF iterator.\nWithout --container, --netns or --all: the host's network namespace.", "containers are given with --container NAME"); err != nil || helped {
		return nil, helped, err
	}
	if f.output != "table" && f.output != "json" {
		return nil, false, usageError{fmt.Sprintf("--output must be table or json, not %q", f.output)}
	}
	for _, p := range f.ports {
		if p < 1 || p > 65535 {
			return nil, false, usageError{fmt.Sprintf("--port must be between 1 and 65535, not %d", p)}
		}
	}
	if f.state != "" {
		if _, ok := events.ParseState(f.state); !ok {
			return nil, false, usageError{fmt.Sprintf("--state %q is not a TCP state; use one of %s", f.state, strings.Join(events.StateNames(), ", "))}
		}
	}
	if f.top < 1 {
		return nil, false, usageError{fmt.Sprintf("--top must be at least 1, not %d", f.top)}
	}
	if f.at >= 0 && f.read == "" {
		return nil, false, usageError{"--at picks a snapshot of a recording: use it with -r FILE"}
	}
	if f.all && (len(f.containers) > 0 || f.netns != "") {
		return nil, false, usageError{"--all already means the host and every container; drop --container and --netns"}
	}
	return f, false, nil
}

// target is one network namespace to list, and the path that enters it.
type target struct {
	name, id string
	inode    uint32
	path     string
}

func runSockets(args []string, stdout, stderr io.Writer) error {
	f, helped, err := parseSocketsFlags(args, stdout)
	if err != nil || helped {
		return err
	}
	if f.read != "" {
		return replaySockets(f, stdout)
	}
	if err := prepare(); err != nil {
		return err
	}
	ctx := context.Background()
	targets, err := socketTargets(ctx, f, stderr)
	if err != nil {
		return err
	}
	it, err := loader.OpenSockets()
	if err != nil {
		return err
	}
	defer it.Close()
	rawOwners, err := it.Owners()
	if err != nil {
		return err
	}
	owners, err := events.DecodeOwners(rawOwners)
	if err != nil {
		return err
	}

	p := newSocketPrinter(f, stdout)
	for _, tg := range targets {
		snap, err := it.Snapshot(tg.path)
		if errors.Is(err, loader.ErrNetnsGone) {
			fmt.Fprintf(stderr, "sockscope: warning: %s exited while being listed; skipped\n", tg.name)
			continue
		}
		if err != nil {
			return err
		}
		socks, err := events.DecodeSockets(snap.Records, tg.inode, owners)
		if err != nil {
			return err
		}
		if err := p.print(tg, socks, snap.PortRange, snap.TWReuse); err != nil {
			return err
		}
	}
	return p.flush()
}

// socketPrinter writes sockets (or their summary) of one namespace after another.
type socketPrinter struct {
	f         *socketsFlags
	w         io.Writer
	out       []byte
	keepState events.State
}

func newSocketPrinter(f *socketsFlags, w io.Writer) *socketPrinter {
	p := &socketPrinter{f: f, w: w}
	if f.state != "" {
		p.keepState, _ = events.ParseState(f.state)
	}
	if f.output == "table" && !f.summary {
		p.out = events.AppendSocketHeader(p.out)
	}
	return p
}

func (p *socketPrinter) print(tg target, socks []events.Socket, portRange [2]int, twReuse int) error {
	f := p.f
	socks = slices.DeleteFunc(socks, func(k events.Socket) bool {
		if p.keepState != 0 && k.State != p.keepState {
			return true
		}
		return len(f.ports) > 0 && !slices.Contains(f.ports, int(k.Sport)) && !slices.Contains(f.ports, int(k.Dport))
	})
	if f.summary {
		s := events.Summarize(socks, portRange, twReuse, f.top)
		if f.output == "json" {
			p.out = appendSummaryJSON(p.out, &s, tg)
		} else {
			p.out = events.AppendSummary(p.out, &s, tg.name, tg.inode)
		}
		return nil
	}
	for i := range socks {
		if f.output == "json" {
			p.out = events.AppendSocketJSON(p.out, &socks[i], tg.name, tg.id)
		} else {
			p.out = events.AppendSocketRow(p.out, &socks[i], tg.name)
		}
		if len(p.out) >= 256<<10 {
			if err := writeAll(p.w, p.out); err != nil {
				return err
			}
			p.out = p.out[:0]
		}
	}
	return nil
}

func (p *socketPrinter) flush() error {
	err := writeAll(p.w, p.out)
	p.out = p.out[:0]
	return err
}

// writeAll writes b; a closed pipe (| head) ends the command quietly.
func writeAll(w io.Writer, b []byte) error {
	if _, err := w.Write(b); err != nil && !isEPIPE(err) {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func appendSummaryJSON(b []byte, s *events.Summary, tg target) []byte {
	type ep struct {
		Endpoint string `json:"endpoint"`
		Count    int    `json:"count"`
	}
	type use struct {
		Endpoint string `json:"endpoint"`
		Used     int    `json:"used"`
		Range    int    `json:"range"`
	}
	eps := func(in []events.EndpointCount) []ep {
		out := []ep{}
		for _, e := range in {
			out = append(out, ep{e.Endpoint.String(), e.Count})
		}
		return out
	}
	states := map[string]int{}
	for st, n := range s.ByState {
		states[st.String()] = n
	}
	uses := []use{}
	for _, u := range s.PortUse {
		uses = append(uses, use{u.Endpoint.String(), u.Used, u.Range})
	}
	v := struct {
		Container   string         `json:"container"`
		ContainerID string         `json:"container_id"`
		Netns       uint32         `json:"netns"`
		Total       int            `json:"total"`
		States      map[string]int `json:"states"`
		PortRange   [2]int         `json:"ip_local_port_range"`
		TWReuse     int            `json:"tcp_tw_reuse"`
		TimeWait    []ep           `json:"time_wait_by_remote"`
		Established []ep           `json:"established_by_remote"`
		PortUse     []use          `json:"ephemeral_ports_by_remote"`
	}{tg.name, tg.id, tg.inode, s.Total, states, s.PortRange, s.TWReuse, eps(s.TimeWait), eps(s.Established), uses}
	j, _ := json.Marshal(v)
	return append(append(b, j...), '\n')
}

// socketTargets resolves the flags into network namespaces, one entry per namespace.
func socketTargets(ctx context.Context, f *socketsFlags, stderr io.Writer) ([]target, error) {
	hostPath, hostIno, err := containers.HostNetnsPath()
	if err != nil {
		return nil, fmt.Errorf("find the host's network namespace: %w", err)
	}
	host := target{name: "host", inode: hostIno, path: hostPath}

	var docker *containers.Client
	if len(f.containers) > 0 || f.all {
		if docker, err = containers.Dial(ctx, f.dockerHost); err != nil {
			if len(f.containers) > 0 {
				return nil, err
			}
			fmt.Fprintf(stderr, "sockscope: warning: %v; listing the host only\n", err)
			docker = nil
		} else {
			defer docker.Close()
		}
	}

	var out []target
	seen := map[uint32]int{}
	add := func(t target) {
		if i, ok := seen[t.inode]; ok {
			if t.name != "" && !slices.Contains(strings.Split(out[i].name, ","), t.name) {
				out[i].name += "," + t.name
				out[i].id += "," + t.id
			}
			return
		}
		seen[t.inode] = len(out)
		out = append(out, t)
	}
	addContainer := func(c containers.Container) {
		if c.Netns == hostIno {
			add(host)
			return
		}
		add(target{name: c.Name, id: c.ShortID(), inode: c.Netns, path: fmt.Sprintf("/proc/%d/ns/net", c.Pid)})
	}

	switch {
	case f.all:
		add(host)
		if docker != nil {
			running, err := docker.Running(ctx)
			if err != nil {
				return nil, err
			}
			slices.SortFunc(running, func(a, b containers.Container) int { return strings.Compare(a.Name, b.Name) })
			for _, c := range running {
				if c.Netns != 0 {
					addContainer(c)
				}
			}
		}
	case len(f.containers) > 0 || f.netns != "":
		for _, q := range f.containers {
			c, err := docker.Find(ctx, q)
			if err != nil {
				return nil, err
			}
			if c.Netns == 0 {
				return nil, fmt.Errorf("container %s is not running: it has no network namespace to list", c.Name)
			}
			addContainer(c)
		}
		if f.netns != "" {
			t, err := netnsTarget(f.netns, host)
			if err != nil {
				return nil, err
			}
			add(t)
		}
	default:
		add(host)
	}
	return out, nil
}

// netnsTarget turns --netns (a path, or an inode some process is in) into a target.
func netnsTarget(s string, host target) (target, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		ino := uint32(n)
		if ino == host.inode {
			return host, nil
		}
		// An inode cannot be entered: find a process that lives in it.
		paths, _ := filepath.Glob("/proc/[0-9]*/ns/net")
		for _, p := range paths {
			if i, err := containers.NetnsInodeOfPath(p); err == nil && i == ino {
				return target{name: strconv.FormatUint(n, 10), inode: ino, path: p}, nil
			}
		}
		return target{}, fmt.Errorf("--netns %d: no process lives in that network namespace; give its path instead (e.g. /run/netns/NAME)", ino)
	}
	ino, err := containers.NetnsInodeOfPath(s)
	if err != nil {
		return target{}, fmt.Errorf("--netns %s: %w", s, err)
	}
	if ino == host.inode {
		return host, nil
	}
	name := s
	if strings.HasPrefix(s, "/run/netns/") {
		name = strings.TrimPrefix(s, "/run/netns/")
	}
	return target{name: name, inode: ino, path: s}, nil
}
