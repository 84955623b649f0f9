package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/sockets"
	"github.com/sockscope/sockscope/loader"
	ksockets "github.com/sockscope/sockscope/loader/sockets"
	"github.com/sockscope/sockscope/recording"
)

// SocketsOptions say whose sockets are listed and how.
type SocketsOptions struct {
	Scope  containers.Spec // --container, --netns and the runtimes
	All    bool            // the host and every running container
	Print  sockets.Options // what the table, JSON or summary holds
	At     time.Duration   // a replay: the last snapshot this long after the start; <0: the last one
	Stdout io.Writer
	Stderr io.Writer
}

// Sockets lists the sockets of the selected namespaces (the host's, when none is selected), one
// namespace after another, read with the kernel's TCP iterators.
func Sockets(ctx context.Context, o SocketsOptions) error {
	targets, err := socketTargets(ctx, o)
	if err != nil {
		return err
	}
	it, err := ksockets.Open()
	if err != nil {
		return err
	}
	defer it.Close()
	rawOwners, err := it.Owners()
	if err != nil {
		return err
	}
	owners, err := sockets.DecodeOwners(rawOwners)
	if err != nil {
		return err
	}
	p := sockets.NewPrinter(o.Print, o.Stdout)
	for _, tg := range targets {
		snap, err := it.Snapshot(tg.Path)
		if errors.Is(err, loader.ErrNetnsGone) {
			fmt.Fprintf(o.Stderr, "sockscope: warning: %s exited while being listed; skipped\n", events.Printable(tg.Display()))
			continue
		}
		if err != nil {
			return err
		}
		socks, err := sockets.DecodeSockets(snap.Records, tg.Inode, owners)
		if err != nil {
			return err
		}
		if err := p.Print(tg, socks, snap.PortRange, snap.TWReuse); err != nil {
			return err
		}
	}
	return p.Flush()
}

// socketTargets resolves the scope into network namespaces, one entry per namespace.
func socketTargets(ctx context.Context, o SocketsOptions) ([]containers.Target, error) {
	sc, err := openScope(ctx, o.Scope, o.Stderr)
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	named := len(o.Scope.Containers) > 0
	var running []containers.Container
	if o.All || named {
		if running, err = sc.Running(ctx); err != nil {
			if named {
				return nil, err
			}
			fmt.Fprintf(o.Stderr, "sockscope: warning: %s; listing the host only\n", events.Printable(err.Error()))
		}
	}
	if missing := sc.Missing(running); len(missing) > 0 {
		return nil, fmt.Errorf("container %s is not running: it has no network namespace to list", missing[0].Name)
	}
	targets := sc.Targets(running, o.All)
	for _, t := range targets {
		if t.Path == "" {
			return nil, fmt.Errorf("--netns %d: no process lives in that network namespace; give its path instead (e.g. /run/netns/NAME)", t.Inode)
		}
	}
	return targets, nil
}

// ReplaySockets prints, per recorded namespace in netns (nil: all), its last snapshot, or the
// last one up to o.At.
func ReplaySockets(rec *recording.File, file string, netns map[uint32]bool, o SocketsOptions) error {
	var until time.Time
	if o.At >= 0 {
		until = rec.Meta.Start.Add(o.At)
	}
	last, first, err := rec.LastSockets(netns, until)
	if err != nil {
		return recording.ScanError(file, err)
	}
	if len(last) == 0 {
		if !until.IsZero() && !first.IsZero() {
			return fmt.Errorf("%s: no snapshot in the first %s of the recording (the first was taken %s after the start)", file, o.At, first.Sub(rec.Meta.Start).Round(time.Millisecond))
		}
		return fmt.Errorf("%s: no socket snapshot of the selected namespaces in this recording", file)
	}
	names := rec.Namer()
	p := sockets.NewPrinter(o.Print, o.Stdout)
	for _, s := range last {
		ns := s.Netns
		socks, err := s.Decode()
		if err != nil {
			return fmt.Errorf("%s: snapshot of netns %d: %w", file, ns, err)
		}
		tg := containers.Target{Inode: ns}
		var ok bool
		if tg.Name, ok = names.Lookup(ns, s.Time); !ok {
			// Live, sockets names a /run/netns namespace after its file.
			tg.Name.Name = rec.Meta.NetnsNames[ns]
		}
		if err := p.Print(tg, socks, s.PortRange, s.TWReuse); err != nil {
			return err
		}
	}
	return p.Flush()
}
