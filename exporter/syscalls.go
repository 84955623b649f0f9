package exporter

import (
	"os"
	"runtime"
	"slices"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader"
)

var (
	descSyscalls = prometheus.NewDesc("sockscope_syscalls_total",
		"System calls made by the processes of a container, by name; beyond the top K per container they add up in syscall=\"other\".", []string{"container", "syscall"}, nil)
	descSyscallErrors = prometheus.NewDesc("sockscope_syscall_errors_total",
		"Failed system calls by name and errno; beyond the top K per container they add up in syscall=\"other\", errno=\"other\".", []string{"container", "syscall", "errno"}, nil)
)

// Syscalls adds the syscall metrics of `export --syscalls`. Cardinality is bounded per container:
// the first K syscall names (and K syscall/errno pairs) to be seen get series of their own and keep
// them for the namespace's life; the rest add up in "other". Membership never changes, so every
// series only grows, as a counter must.
type Syscalls struct {
	k  *loader.Syscalls
	K  int
	ns map[uint32]*syscallSeries
}

type syscallSeries struct {
	calls  map[uint32]bool    // syscall numbers with a series
	errors map[[2]uint32]bool // (nr, errno) with a series
}

// NewSyscalls wraps attached syscall counters (loader.SyscallConfig{FilterNetns, ByNetns}).
func NewSyscalls(k *loader.Syscalls, topK int) *Syscalls {
	return &Syscalls{k: k, K: topK, ns: map[uint32]*syscallSeries{}}
}

// SetTracked makes the kernel count these namespaces and forgets the others.
func (s *Syscalls) SetTracked(inodes []uint32) error {
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

func (s *Syscalls) collect(ch chan<- prometheus.Metric, nss map[uint32]Namespace) {
	snap, err := s.k.Read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descSyscalls, err)
		return
	}
	type agg struct {
		calls  map[uint32]uint64
		errors map[[2]uint32]uint64
	}
	per := map[uint32]*agg{}
	get := func(ino uint32) *agg {
		a := per[ino]
		if a == nil {
			a = &agg{calls: map[uint32]uint64{}, errors: map[[2]uint32]uint64{}}
			per[ino] = a
		}
		return a
	}
	for _, c := range snap.Counts {
		get(c.Netns).calls[c.Nr] += c.Count
	}
	for _, e := range snap.Errors {
		get(e.Netns).errors[[2]uint32{e.Nr, uint32(e.Errno)}] += e.Count
	}
	for ino, a := range per {
		n, ok := nss[ino]
		if !ok {
			continue
		}
		ser := s.ns[ino]
		if ser == nil {
			ser = &syscallSeries{calls: map[uint32]bool{}, errors: map[[2]uint32]bool{}}
			s.ns[ino] = ser
		}
		calls, other := bound(ser.calls, a.calls, s.K)
		for _, nr := range sortedKeys(calls) {
			ch <- prometheus.MustNewConstMetric(descSyscalls, prometheus.CounterValue, float64(calls[nr]), n.Name, events.SyscallName(runtime.GOARCH, nr))
		}
		if other > 0 {
			ch <- prometheus.MustNewConstMetric(descSyscalls, prometheus.CounterValue, float64(other), n.Name, "other")
		}
		errs, other := bound(ser.errors, a.errors, s.K)
		for _, key := range sortedKeys(errs) {
			ch <- prometheus.MustNewConstMetric(descSyscallErrors, prometheus.CounterValue, float64(errs[key]), n.Name,
				events.SyscallName(runtime.GOARCH, key[0]), events.ErrnoName(syscall.Errno(key[1])))
		}
		if other > 0 {
			ch <- prometheus.MustNewConstMetric(descSyscallErrors, prometheus.CounterValue, float64(other), n.Name, "other", "other")
		}
	}
}

// bound splits one namespace's cumulative counts into those with a series of their own and the
// sum of the rest. members (updated here) holds the keys given a series so far; new keys join,
// biggest first, while there are fewer than k. A member keeps its series for the namespace's
// life, so named series and "other" only grow, as counters must.
func bound[K uint32 | [2]uint32](members map[K]bool, counts map[K]uint64, k int) (map[K]uint64, uint64) {
	named := make(map[K]uint64, min(len(counts), k))
	var other uint64
	for _, key := range byCount(counts) {
		if !members[key] && len(members) < k {
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
func sortedKeys[K uint32 | [2]uint32](m map[K]uint64) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int {
		if keyLess(a, b) {
			return -1
		}
		if keyLess(b, a) {
			return 1
		}
		return 0
	})
	return keys
}

// byCount returns the keys of m, biggest count first (ties in key order, for stable output).
func byCount[K uint32 | [2]uint32](m map[K]uint64) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	less := func(a, b K) bool {
		if m[a] != m[b] {
			return m[a] > m[b]
		}
		return keyLess(a, b)
	}
	for i := 1; i < len(keys); i++ { // insertion sort: a few dozen keys
		for j := i; j > 0 && less(keys[j], keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func keyLess[K uint32 | [2]uint32](a, b K) bool {
	switch x := any(a).(type) {
	case uint32:
		return x < any(b).(uint32)
	case [2]uint32:
		y := any(b).([2]uint32)
		return x[0] < y[0] || (x[0] == y[0] && x[1] < y[1])
	}
	return false
}

var readFile = os.ReadFile
