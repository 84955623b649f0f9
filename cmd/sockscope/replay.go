package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader"
	"github.com/sockscope/sockscope/recording"
)

// loadRecording reads a whole recording ("-" reads standard input).
func loadRecording(path string) (*recording.Recording, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	rec, err := recording.Load(bufio.NewReaderSize(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rec, nil
}

// recordedNetns resolves --container and --netns against a recording: the namespaces the
// named containers had, and --netns as an inode. nil means every namespace.
func recordedNetns(rec *recording.Recording, queries []string, netns []string) (map[uint32]bool, error) {
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
	rec, err := loadRecording(f.read)
	if err != nil {
		return err
	}
	filter := f.filter()
	if filter.Netns, err = recordedNetns(rec, f.containers, f.netns); err != nil {
		return err
	}
	clock := rec.Clock()
	names := rec.Namer()
	out := &chunkWriter{w: stdout, buf: make([]byte, 0, writeChunk+4096)}
	eo := &eventOut{f: f, fmtr: events.NewFormatter(clock), out: out}
	if f.output == "table" {
		out.buf = events.AppendTableHeader(out.buf)
	}
	for i := range rec.Events {
		ev := rec.Events[i]
		if !filter.Keep(&ev) {
			continue
		}
		name, ok := names.Lookup(ev.Netns, clock.Wall(ev.Mono))
		full := eo.add(&ev, name, ok)
		if len(out.buf) >= writeChunk || full {
			if err := out.Flush(); err != nil {
				if isEPIPE(err) {
					return nil
				}
				return fmt.Errorf("write output: %w", err)
			}
		}
		if full {
			break
		}
	}
	if err := out.Flush(); err != nil && !isEPIPE(err) {
		return fmt.Errorf("write output: %w", err)
	}
	eo.summary(stderr, rec.Lost.Total())
	return nil
}

// replaySockets prints, per recorded namespace, its last snapshot (or the last one up to --at).
func replaySockets(f *socketsFlags, stdout io.Writer) error {
	rec, err := loadRecording(f.read)
	if err != nil {
		return err
	}
	want, err := recordedNetns(rec, f.containers, f.netns)
	if err != nil {
		return err
	}
	var until time.Time
	if f.at >= 0 {
		until = rec.Meta.Start.Add(f.at)
	}
	last := map[uint32]int{}
	var order []uint32
	for i, s := range rec.Sockets {
		if want != nil && !want[s.Netns] || !until.IsZero() && s.Time.After(until) {
			continue
		}
		if _, ok := last[s.Netns]; !ok {
			order = append(order, s.Netns)
		}
		last[s.Netns] = i
	}
	if len(order) == 0 {
		if !until.IsZero() && len(rec.Sockets) > 0 {
			return fmt.Errorf("%s: no snapshot in the first %s of the recording (the first was taken %s after the start)", f.read, f.at, rec.Sockets[0].Time.Sub(rec.Meta.Start).Round(time.Millisecond))
		}
		return fmt.Errorf("%s: no socket snapshot of the selected namespaces in this recording", f.read)
	}
	names := rec.Namer()
	p := newSocketPrinter(f, stdout)
	for _, ns := range order {
		s := &rec.Sockets[last[ns]]
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
		if err := p.print(tg, socks, s.PortRange, s.TWReuse); err != nil {
			return err
		}
	}
	return p.flush()
}

// replaySyscalls prints a recording's syscall counts: the whole recording, or with --interval
// one table per interval of the recording.
func replaySyscalls(f *syscallsFlags, stdout, stderr io.Writer) error {
	rec, err := loadRecording(f.read)
	if err != nil {
		return err
	}
	switch {
	case len(rec.Syscalls) == 0:
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
	p := &syscallPrinter{f: f, names: names, w: stdout}
	keep := func(k loader.SyscallKey) bool {
		return (want == nil || want[k.Netns]) && (f.pid == 0 || k.Tgid == uint32(f.pid))
	}
	printed := rec.Meta.Start
	for i, s := range rec.Syscalls {
		last := i == len(rec.Syscalls)-1
		if !last && (f.interval == 0 || s.Time.Sub(printed) < f.interval-f.interval/10) {
			continue
		}
		snap := s.Value
		snap.Counts = slices.DeleteFunc(slices.Clone(snap.Counts), func(c loader.SyscallCount) bool { return !keep(c.SyscallKey) })
		snap.Errors = slices.DeleteFunc(slices.Clone(snap.Errors), func(c loader.SyscallErrors) bool { return !keep(c.SyscallKey) })
		snap.Paths = slices.DeleteFunc(slices.Clone(snap.Paths), func(c loader.PathCount) bool { return !keep(c.SyscallKey) })
		names.at = s.Time
		if err := p.print(snap, s.Time, stderr); err != nil {
			return err
		}
		printed = s.Time
	}
	return nil
}

// namerAt names namespaces as they were at one moment of a recording.
type namerAt struct {
	n  *recording.Namer
	at time.Time
}

func (n *namerAt) Lookup(inode uint32) (containers.Name, bool) { return n.n.Lookup(inode, n.at) }
