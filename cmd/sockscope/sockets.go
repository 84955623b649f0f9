package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sockscope/sockscope/console"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/sockets"
	"github.com/sockscope/sockscope/recording"
)

type socketsFlags struct {
	containers []string
	all        bool
	netns      []string
	state      string
	ports      []int
	output     string
	summary    bool
	top        int
	runtimes   runtimeFlags
	read       string
	at         time.Duration
	budget     recording.Budget
}

func parseSocketsFlags(args []string, stdout io.Writer) (*socketsFlags, bool, error) {
	f := &socketsFlags{}
	fs := newFlagSet("sockscope sockets")
	fs.StringArrayVarP(&f.containers, "container", "c", nil, "list the sockets of this container or pod: a name, an ID prefix, NAMESPACE/POD, or a pod name; repeatable")
	fs.BoolVar(&f.all, "all", false, "the host and every running container and pod")
	fs.StringArrayVar(&f.netns, "netns", nil, "this network namespace: an inode, or a path such as /proc/PID/ns/net or /run/netns/NAME; repeatable")
	fs.StringVar(&f.state, "state", "", "only sockets in this TCP state (e.g. TIME_WAIT)")
	fs.IntSliceVarP(&f.ports, "port", "p", nil, "only sockets with this local or remote port; repeatable")
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json (one object per line)")
	fs.BoolVar(&f.summary, "summary", false, "per namespace: counts by state, top remote endpoints, ephemeral port use")
	fs.IntVar(&f.top, "top", 10, "remote endpoints to list in --summary")
	f.runtimes.add(fs)
	fs.StringVarP(&f.read, "read", "r", "", "show a recording's socket snapshots (sockscope record) instead of the live tables")
	fs.DurationVar(&f.at, "at", -1, "with -r: the last snapshot taken this long after the recording started (default: the last one)")
	maxInflate := maxInflateFlag(fs)
	if helped, err := parseFlags(fs, args, stdout, "sockscope sockets [flags]\n\nThe TCP sockets of the host or of containers, like ss -tan, read from the kernel's tables with a BPF iterator.\nWithout --container, --netns or --all: the host's network namespace.", "containers are given with --container NAME"); err != nil || helped {
		return nil, helped, err
	}
	if err := oneOf("output", f.output, "table", "json"); err != nil {
		return nil, false, err
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
	if f.all && (len(f.containers) > 0 || len(f.netns) > 0) {
		return nil, false, usageError{"--all already means the host and every container; drop --container and --netns"}
	}
	budget, err := parseMaxInflate(*maxInflate)
	if err != nil {
		return nil, false, err
	}
	f.budget = budget
	return f, false, nil
}

func runSockets(args []string, stdout, stderr io.Writer) error {
	f, helped, err := parseSocketsFlags(args, stdout)
	if err != nil || helped {
		return err
	}
	o := console.SocketsOptions{Scope: f.runtimes.spec(f.containers, f.netns), All: f.all, At: f.at, Stdout: stdout, Stderr: stderr,
		Print: sockets.Options{Ports: f.ports, Summary: f.summary, Top: f.top, JSON: f.output == "json"}}
	o.Print.State, _ = events.ParseState(f.state)
	if f.read != "" {
		return replay(f.read, f.budget, f.containers, f.netns, stderr, func(rec *recording.File, netns map[uint32]bool) error {
			return console.ReplaySockets(rec, f.read, netns, o)
		})
	}
	if err := prepare(); err != nil {
		return err
	}
	return console.Sockets(context.Background(), o)
}
