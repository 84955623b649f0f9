package console

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events/syscalls"
	"github.com/sockscope/sockscope/loader"
	ksyscalls "github.com/sockscope/sockscope/loader/syscalls"
	"github.com/sockscope/sockscope/recorder"
	"github.com/sockscope/sockscope/recording"
	"github.com/sockscope/sockscope/stacks/collector"
)

// SyscallsOptions say what syscalls counts and how it prints.
type SyscallsOptions struct {
	Scope    containers.Spec    // --container, --netns and the runtimes
	Config   ksyscalls.Config   // the kernel's filters and what is measured; its namespaces come from Scope
	Stacks   *collector.Options // also collect stacks; nil: no
	Table    syscalls.Options   // what the tables hold; Table.Interval prints one every interval
	Output   string             // table, json, or folded (only the stacks)
	Until    time.Duration      // stop after this long; 0: when ctx ends
	Stdout   io.Writer
	Stderr   io.Writer
	Attached func(what string) // called once attached, with what is counted (the command catches its signals then)
}

// Syscalls counts live until ctx ends or Until passes, printing every Table.Interval and at the
// end.
func Syscalls(ctx context.Context, o SyscallsOptions) error {
	// ctx ends the count; naming goes on until the last print.
	watchCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	sc, err := openScope(watchCtx, o.Scope, o.Stderr)
	if err != nil {
		return err
	}
	defer sc.Close()
	cfg := o.Config
	cfg.FilterNetns, cfg.Netns = sc.Filtered(), sc.FixedInodes()
	counter, err := ksyscalls.Open(cfg)
	if err != nil {
		return err
	}
	defer counter.Close()
	var col *collector.Collector
	if o.Stacks != nil {
		// The sampler starts before the watcher, so the watcher's first namespaces reach it too.
		if col, err = collector.Open(*o.Stacks, sc, o.Stderr); err != nil {
			return err
		}
		defer col.Close()
	}
	loader.ReleaseBTF() // everything is loaded
	setNetns := func(inodes []uint32) error {
		if err := counter.SetNetns(inodes); err != nil {
			return err
		}
		if col != nil {
			return col.SetNetns(inodes)
		}
		return nil
	}
	w, err := containers.Follow(watchCtx, sc, setNetns, o.Stderr)
	if err != nil {
		return err
	}
	if o.Attached != nil {
		o.Attached(sc.Describe())
	}
	var end <-chan time.Time
	if o.Until > 0 {
		end = time.After(o.Until)
	}
	var tick <-chan time.Time
	if o.Table.Interval > 0 {
		t := time.NewTicker(o.Table.Interval)
		defer t.Stop()
		tick = t.C
	}
	names := w.Names()
	table := syscalls.NewTable(o.Table, names, o.Stdout)
	print := func() error {
		if o.Output != "folded" {
			cur, err := counter.Read()
			if err != nil {
				return err
			}
			if err := table.Print(cur, time.Now(), o.Stderr); err != nil {
				return err
			}
		}
		if col == nil {
			return nil
		}
		return col.Print(o.Output, o.Table.Top, names, o.Stdout, o.Stderr)
	}
	for {
		select {
		case <-tick:
			if err := print(); err != nil {
				return err
			}
			continue
		case <-ctx.Done():
		case <-end:
		}
		if col != nil {
			col.Stop()
		}
		return print()
	}
}

// ReplaySyscalls prints a recording's syscall counts of the namespaces in netns (nil: all) and of
// o.Config.Pid (0: all): the whole recording, or with Table.Interval one table per interval of
// the recording.
func ReplaySyscalls(rec *recording.File, file string, netns map[uint32]bool, o SyscallsOptions) error {
	n := rec.Counts[recording.BlockSyscalls]
	switch {
	case n == 0:
		return fmt.Errorf("%s: the recording has no syscall counts (it was made with --syscalls=false)", file)
	case o.Config.Latency && !rec.Meta.Latency:
		return fmt.Errorf("%s: the recording has no syscall latency; drop --latency", file)
	case o.Config.Paths && !rec.Meta.Paths:
		return fmt.Errorf("%s: the recording has no file paths; drop --paths", file)
	}
	names := &namerAt{n: rec.Namer()}
	table := syscalls.NewTable(o.Table, names, o.Stdout)
	keep := func(k ksyscalls.Key) bool {
		return (netns == nil || netns[k.Netns]) && (o.Config.Pid == 0 || k.Tgid == o.Config.Pid)
	}
	interval := o.Table.Interval
	printed := rec.Meta.Start
	i := 0
	err := rec.Scan(recording.Visitor{Syscalls: func(at time.Time, s *recording.SyscallCounts) error {
		i++
		last := i == n
		if !last && (interval == 0 || at.Sub(printed) < interval-interval/10) {
			return nil
		}
		snap := recorder.ReplayedSyscalls(s)
		snap.Counts = slices.DeleteFunc(snap.Counts, func(c ksyscalls.Count) bool { return !keep(c.Key) })
		snap.Errors = slices.DeleteFunc(snap.Errors, func(c ksyscalls.Errors) bool { return !keep(c.Key) })
		snap.Paths = slices.DeleteFunc(snap.Paths, func(c ksyscalls.PathCount) bool { return !keep(c.Key) })
		names.at = at
		if err := table.Print(snap, at, o.Stderr); err != nil {
			return err
		}
		printed = at
		return nil
	}})
	return recording.ScanError(file, err)
}

// namerAt names namespaces as they were at one moment of a recording.
type namerAt struct {
	n  *recording.Namer
	at time.Time
}

func (n *namerAt) Lookup(inode uint32) (containers.Name, bool) { return n.n.Lookup(inode, n.at) }
