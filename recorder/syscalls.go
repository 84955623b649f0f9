package recorder

import (
	"github.com/sockscope/sockscope/loader/syscalls"
	"github.com/sockscope/sockscope/recording"
)

// RecordedSyscalls is the loader's syscall counts as a recording stores them: the file format
// has its own types, so that renaming a loader field does not change what files say.
func RecordedSyscalls(s syscalls.Snapshot) recording.SyscallCounts {
	key := func(k syscalls.Key) recording.SyscallKey {
		return recording.SyscallKey{Netns: k.Netns, Tgid: k.Tgid, Nr: k.Nr, Comm: k.Comm}
	}
	out := recording.SyscallCounts{
		Dropped:    recording.SyscallDrops{CountsFull: s.Dropped.CountsFull, ErrorsFull: s.Dropped.ErrorsFull, PathsFull: s.Dropped.PathsFull},
		OverBudget: s.Dropped.OverBudget,
	}
	if s.Counts != nil {
		out.Counts = make([]recording.SyscallCount, len(s.Counts))
		for i, c := range s.Counts {
			out.Counts[i] = recording.SyscallCount{SyscallKey: key(c.Key), Count: c.Count, Errors: c.Errors, LatTotal: c.LatTotal, LatMax: c.LatMax}
		}
	}
	if s.Errors != nil {
		out.Errors = make([]recording.SyscallErrors, len(s.Errors))
		for i, e := range s.Errors {
			out.Errors[i] = recording.SyscallErrors{SyscallKey: key(e.Key), Errno: e.Errno, Count: e.Count}
		}
	}
	if s.Paths != nil {
		out.Paths = make([]recording.SyscallPath, len(s.Paths))
		for i, p := range s.Paths {
			out.Paths[i] = recording.SyscallPath{SyscallKey: key(p.Key), Path: p.Path, Count: p.Count}
		}
	}
	return out
}

// ReplayedSyscalls is a recording's syscall counts as the live syscall table prints them.
func ReplayedSyscalls(s *recording.SyscallCounts) syscalls.Snapshot {
	key := func(k recording.SyscallKey) syscalls.Key {
		return syscalls.Key{Netns: k.Netns, Tgid: k.Tgid, Nr: k.Nr, Comm: k.Comm}
	}
	out := syscalls.Snapshot{
		Dropped: syscalls.Drops{CountsFull: s.Dropped.CountsFull, ErrorsFull: s.Dropped.ErrorsFull, PathsFull: s.Dropped.PathsFull, OverBudget: s.OverBudget},
	}
	if s.Counts != nil {
		out.Counts = make([]syscalls.Count, len(s.Counts))
		for i, c := range s.Counts {
			out.Counts[i] = syscalls.Count{Key: key(c.SyscallKey), Count: c.Count, Errors: c.Errors, LatTotal: c.LatTotal, LatMax: c.LatMax}
		}
	}
	if s.Errors != nil {
		out.Errors = make([]syscalls.Errors, len(s.Errors))
		for i, e := range s.Errors {
			out.Errors[i] = syscalls.Errors{Key: key(e.SyscallKey), Errno: e.Errno, Count: e.Count}
		}
	}
	if s.Paths != nil {
		out.Paths = make([]syscalls.PathCount, len(s.Paths))
		for i, p := range s.Paths {
			out.Paths[i] = syscalls.PathCount{Key: key(p.SyscallKey), Path: p.Path, Count: p.Count}
		}
	}
	return out
}
