package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader/syscalls"
	"github.com/sockscope/sockscope/recorder"
	"github.com/sockscope/sockscope/recording"
)

// maxInflateFlag declares --max-inflate, for every command that reads recordings.
func maxInflateFlag(fs *pflag.FlagSet) *string {
	return fs.String("max-inflate", recording.DefaultBudget.String(), "how much a recording may decompress to: a multiple of its size (64x) or a size (8G); a file that asks for more is refused as a DEFLATE bomb")
}

// parseMaxInflate reads --max-inflate: "Nx" times the file's size, or a size with K, M or G.
func parseMaxInflate(s string) (recording.Budget, error) {
	if n, ok := strings.CutSuffix(strings.ToLower(s), "x"); ok {
		r, err := strconv.ParseInt(n, 10, 64)
		if err != nil || r < 1 || r > 1<<20 {
			return recording.Budget{}, usageError{fmt.Sprintf("--max-inflate %q: want a multiple of the file's size from 1x to %dx, or a size such as 8G", s, 1<<20)}
		}
		return recording.Budget{Ratio: r}, nil
	}
	n, err := parseSize(s)
	if err != nil {
		return recording.Budget{}, usageError{fmt.Sprintf("--max-inflate %q: %v, or a multiple of the file's size such as 64x", s, err)}
	}
	return recording.Budget{Max: n}, nil
}

// openRecording opens a recording (-: standard input) and warns about its clock on stderr.
func openRecording(path string, budget recording.Budget, stderr io.Writer) (*recording.File, io.Closer, error) {
	rec, closer, err := recording.OpenPath(path, budget)
	if err != nil {
		return nil, nil, err
	}
	if w := rec.ClockWarning(path); w != "" {
		fmt.Fprintf(stderr, "sockscope: warning: %s\n", w)
	}
	return rec, closer, nil
}

// recordedNetns resolves --container and --netns against a recording: the namespaces the
// named containers had, and --netns as an inode. nil means every namespace.
func recordedNetns(rec *recording.File, queries []string, netns []string) (map[uint32]bool, error) {
	if len(queries) == 0 && len(netns) == 0 {
		return nil, nil
	}
	set := map[uint32]bool{}
	for _, q := range queries {
		inodes, err := rec.FindNetns(q)
		if err != nil {
			return nil, err
		}
		for _, ino := range inodes {
			set[ino] = true
		}
	}
	for _, a := range netns {
		if a == "host" {
			set[rec.Meta.HostNetns] = true
			continue
		}
		n, err := strconv.ParseUint(a, 10, 32)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--netns %q: with -r, give the namespace's inode (a path names a namespace of this machine, not of the recording)", a)}
		}
		set[uint32(n)] = true
	}
	return set, nil
}

// replayTrace prints a recording's events as a live trace with the same flags would have.
func replayTrace(f *traceFlags, stdout, stderr io.Writer) error {
	rec, closer, err := openRecording(f.read, f.budget, stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	filter := f.filter()
	if filter.Netns, err = recordedNetns(rec, f.containers, f.netns); err != nil {
		return err
	}
	clock := rec.Clock()
	names := rec.Namer()
	out := events.NewPrinter(stdout, clock, f.output == "json", f.count)
	errDone := errors.New("done")
	err = rec.Scan(recording.Visitor{Events: func(_ time.Time, evs []events.Event) error {
		for i := range evs {
			ev := &evs[i]
			if !filter.Keep(ev) {
				continue
			}
			name, ok := names.Lookup(ev.Netns, clock.Wall(ev.Mono))
			full := out.Add(ev, name, ok)
			if out.Full() || full {
				if err := out.Flush(); err != nil {
					if isEPIPE(err) {
						return errDone
					}
					return fmt.Errorf("write output: %w", err)
				}
			}
			if full {
				return errDone
			}
		}
		return nil
	}})
	if errors.Is(err, errDone) {
		err = nil
	}
	if err != nil {
		return recording.ScanError(f.read, err) // what is still buffered stays unprinted: a bad file prints one line
	}
	if err := out.Flush(); err != nil && !isEPIPE(err) {
		return fmt.Errorf("write output: %w", err)
	}
	out.Summary(stderr, rec.Lost.Total())
	return nil
}

// replaySockets prints, per recorded namespace, its last snapshot (or the last one up to --at).
func replaySockets(f *socketsFlags, stdout, stderr io.Writer) error {
	rec, closer, err := openRecording(f.read, f.budget, stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	want, err := recordedNetns(rec, f.containers, f.netns)
	if err != nil {
		return err
	}
	var until time.Time
	if f.at >= 0 {
		until = rec.Meta.Start.Add(f.at)
	}
	last, first, err := rec.LastSockets(want, until)
	if err != nil {
		return recording.ScanError(f.read, err)
	}
	if len(last) == 0 {
		if !until.IsZero() && !first.IsZero() {
			return fmt.Errorf("%s: no snapshot in the first %s of the recording (the first was taken %s after the start)", f.read, f.at, first.Sub(rec.Meta.Start).Round(time.Millisecond))
		}
		return fmt.Errorf("%s: no socket snapshot of the selected namespaces in this recording", f.read)
	}
	names := rec.Namer()
	p := newSocketPrinter(f, stdout)
	for _, s := range last {
		ns := s.Netns
		socks, err := s.Decode()
		if err != nil {
			return fmt.Errorf("%s: snapshot of netns %d: %w", f.read, ns, err)
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

// replaySyscalls prints a recording's syscall counts: the whole recording, or with --interval
// one table per interval of the recording.
func replaySyscalls(f *syscallsFlags, stdout, stderr io.Writer) error {
	rec, closer, err := openRecording(f.read, f.budget, stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	n := rec.Counts[recording.BlockSyscalls]
	switch {
	case n == 0:
		return fmt.Errorf("%s: the recording has no syscall counts (it was made with --syscalls=false)", f.read)
	case f.latency && !rec.Meta.Latency:
		return fmt.Errorf("%s: the recording has no syscall latency; drop --latency", f.read)
	case f.paths && !rec.Meta.Paths:
		return fmt.Errorf("%s: the recording has no file paths; drop --paths", f.read)
	}
	want, err := recordedNetns(rec, f.containers, f.netns)
	if err != nil {
		return err
	}
	names := &namerAt{n: rec.Namer()}
	p := newSyscallPrinter(f, names, stdout)
	keep := func(k syscalls.Key) bool {
		return (want == nil || want[k.Netns]) && (f.pid == 0 || k.Tgid == uint32(f.pid))
	}
	printed := rec.Meta.Start
	i := 0
	err = rec.Scan(recording.Visitor{Syscalls: func(at time.Time, s *recording.SyscallCounts) error {
		i++
		last := i == n
		if !last && (f.interval == 0 || at.Sub(printed) < f.interval-f.interval/10) {
			return nil
		}
		snap := recorder.ReplayedSyscalls(s)
		snap.Counts = slices.DeleteFunc(snap.Counts, func(c syscalls.Count) bool { return !keep(c.Key) })
		snap.Errors = slices.DeleteFunc(snap.Errors, func(c syscalls.Errors) bool { return !keep(c.Key) })
		snap.Paths = slices.DeleteFunc(snap.Paths, func(c syscalls.PathCount) bool { return !keep(c.Key) })
		names.at = at
		if err := p.table.Print(snap, at, stderr); err != nil {
			return err
		}
		printed = at
		return nil
	}})
	return recording.ScanError(f.read, err)
}

// namerAt names namespaces as they were at one moment of a recording.
type namerAt struct {
	n  *recording.Namer
	at time.Time
}

func (n *namerAt) Lookup(inode uint32) (containers.Name, bool) { return n.n.Lookup(inode, n.at) }
