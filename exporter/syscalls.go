package exporter

import (
	"cmp"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader/syscalls"
)

// SyscallCounter is the kernel side of the syscall metrics: the counts per namespace and syscall,
// and the calls that could not be counted because a map had no room for their key.
type SyscallCounter interface {
	// SetNetns makes the kernel count these namespaces only.
	SetNetns(inodes []uint32) error
	// Prune deletes the counts of every namespace not in keep.
	Prune(keep map[uint32]bool) error
	// Read returns the counts since the start, per namespace and syscall.
	Read() (syscalls.Snapshot, error)
	// Drops returns, per map that had no room ("counts", "errors", ...), the calls not counted
	// since the start. Called after Read in each scrape.
	Drops() (map[string]uint64, error)
}

// LoaderSyscalls is the SyscallCounter of attached syscalls.Counter (syscalls.Config{FilterNetns,
// ByNetns}): its drops are the snapshot's Dropped, read with the counts.
func LoaderSyscalls(s *syscalls.Counter) SyscallCounter { return &loaderSyscalls{Counter: s} }

type loaderSyscalls struct {
	*syscalls.Counter
	dropped syscalls.Drops // of the last Read
}

func (l *loaderSyscalls) Read() (syscalls.Snapshot, error) {
	snap, err := l.Counter.Read()
	if err == nil {
		l.dropped = snap.Dropped
	}
	return snap, err
}

func (l *loaderSyscalls) Drops() (map[string]uint64, error) {
	return map[string]uint64{"counts": l.dropped.CountsFull, "errors": l.dropped.ErrorsFull, "paths": l.dropped.PathsFull}, nil
}

var (
	descSyscallDrops = prometheus.NewDesc("sockscope_syscalls_dropped_total",
		"With --syscalls: system calls not counted because the kernel's map had no room for their key, by map (counts, errors): the syscall counts of some namespaces are too low.", []string{"map"}, nil)
	descSyscalls = prometheus.NewDesc("sockscope_syscalls_total",
		"System calls made by the processes of a container, by name; beyond the top K per container they add up in syscall=\"other\".", nsLabelNames("syscall"), nil)
	descSyscallErrors = prometheus.NewDesc("sockscope_syscall_errors_total",
		"Failed system calls by name and errno; beyond the top K per container they add up in syscall=\"other\", errno=\"other\".", nsLabelNames("syscall", "errno"), nil)
)

// Syscalls adds the syscall metrics of `export --syscalls`. Cardinality is bounded per container:
// the first K syscall names (and K syscall/errno pairs) to be seen get series of their own and keep
// them for the namespace's life; the rest add up in "other". Membership never changes, so every
// series only grows, as a counter must.
type Syscalls struct {
	k  SyscallCounter
	K  int
	ns map[uint32]*syscallSeries
}

type syscallSeries struct {
	calls  map[scKey]bool // syscalls with a series (errno 0)
	errors map[scKey]bool // (syscall, errno) pairs with a series
}

// scKey is a syscall number, with the errno for failures (0 for plain counts).
type scKey struct{ nr, errno uint32 }

func (a scKey) compare(b scKey) int {
	if c := cmp.Compare(a.nr, b.nr); c != 0 {
		return c
	}
	return cmp.Compare(a.errno, b.errno)
}

// NewSyscalls wraps attached syscall counters (LoaderSyscalls).
func NewSyscalls(k SyscallCounter, topK int) *Syscalls {
	return &Syscalls{k: k, K: topK, ns: map[uint32]*syscallSeries{}}
}

// SetNetns makes the kernel count these namespaces and forgets the others.
func (s *Syscalls) SetNetns(inodes []uint32) error {
	if err := s.k.SetNetns(inodes); err != nil {
		return err
	}
	keep := make(map[uint32]bool, len(inodes))
	for _, ino := range inodes {
		keep[ino] = true
	}
	for ino := range s.ns {
		if !keep[ino] {
			delete(s.ns, ino)
		}
	}
	return s.k.Prune(keep)
}

func (s *Syscalls) collect(ch chan<- prometheus.Metric, nss map[uint32]Namespace) error {
	snap, err := s.k.Read()
	if err != nil {
		return fmt.Errorf("read the syscall counts: %w", err)
	}
	var dropsErr error
	if drops, err := s.k.Drops(); err != nil {
		dropsErr = fmt.Errorf("read the syscall drops: %w", err)
	} else {
		for _, m := range slices.Sorted(maps.Keys(drops)) {
			ch <- prometheus.MustNewConstMetric(descSyscallDrops, prometheus.CounterValue, float64(drops[m]), m)
		}
	}
	type agg struct{ calls, errors map[scKey]uint64 }
	per := map[uint32]*agg{}
	get := func(ino uint32) *agg {
		a := per[ino]
		if a == nil {
			a = &agg{calls: map[scKey]uint64{}, errors: map[scKey]uint64{}}
			per[ino] = a
		}
		return a
	}
	for _, c := range snap.Counts {
		get(c.Netns).calls[scKey{nr: c.Nr}] += c.Count
	}
	for _, e := range snap.Errors {
		get(e.Netns).errors[scKey{e.Nr, uint32(e.Errno)}] += e.Count
	}
	for ino, a := range per {
		n, ok := nss[ino]
		if !ok {
			continue
		}
		ser := s.ns[ino]
		if ser == nil {
			ser = &syscallSeries{calls: map[scKey]bool{}, errors: map[scKey]bool{}}
			s.ns[ino] = ser
		}
		calls, other := bound(ser.calls, a.calls, s.K)
		for _, key := range sortedKeys(calls) {
			ch <- prometheus.MustNewConstMetric(descSyscalls, prometheus.CounterValue, float64(calls[key]), n.labels(events.SyscallName(runtime.GOARCH, key.nr))...)
		}
		if other > 0 {
			ch <- prometheus.MustNewConstMetric(descSyscalls, prometheus.CounterValue, float64(other), n.labels("other")...)
		}
		errs, other := bound(ser.errors, a.errors, s.K)
		for _, key := range sortedKeys(errs) {
			ch <- prometheus.MustNewConstMetric(descSyscallErrors, prometheus.CounterValue, float64(errs[key]),
				n.labels(events.SyscallName(runtime.GOARCH, key.nr), events.ErrnoName(syscall.Errno(key.errno)))...)
		}
		if other > 0 {
			ch <- prometheus.MustNewConstMetric(descSyscallErrors, prometheus.CounterValue, float64(other), n.labels("other", "other")...)
		}
	}
	return dropsErr
}

// bound splits one namespace's cumulative counts into those with a series of their own and the
// sum of the rest. members (updated here) holds the keys given a series so far; new keys join,
// biggest first, while there are fewer than k. A member keeps its series for the namespace's
// life, so named series and "other" only grow, as counters must.
func bound(members map[scKey]bool, counts map[scKey]uint64, k int) (map[scKey]uint64, uint64) {
	keys := sortedKeys(counts)
	// Biggest first; ties in key order, so the same counts give the same series.
	slices.SortStableFunc(keys, func(a, b scKey) int { return cmp.Compare(counts[b], counts[a]) })
	named := make(map[scKey]uint64, min(len(counts), k))
	var other uint64
	for _, key := range keys {
		// The kernel's own "other" row (a namespace's calls past its budget of rows) never gets a
		// series of its own: it would repeat the series of syscall="other".
		if key.nr != syscalls.Other && !members[key] && len(members) < k {
			members[key] = true
		}
		if members[key] {
			named[key] = counts[key]
		} else {
			other += counts[key]
		}
	}
	return named, other
}

// sortedKeys returns m's keys in key order, for a stable exposition.
func sortedKeys(m map[scKey]uint64) []scKey {
	return slices.SortedFunc(maps.Keys(m), scKey.compare)
}
