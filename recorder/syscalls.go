package recorder

import (
	"github.com/sockscope/sockscope/loader"
	"github.com/sockscope/sockscope/recording"
)

// RecordedSyscalls is the loader's syscall counts as a recording stores them: the file format
// has its own types, so that renaming a loader field does not change what files say.
func RecordedSyscalls(s loader.SyscallSnapshot) recording.SyscallCounts {
	key := func(k loader.SyscallKey) recording.SyscallKey {
		return recording.SyscallKey{Netns: k.Netns, Tgid: k.Tgid, Nr: k.Nr, Comm: k.Comm}
	}
	out := recording.SyscallCounts{
		Dropped:    recording.SyscallDrops{CountsFull: s.Dropped[0], ErrorsFull: s.Dropped[1], PathsFull: s.Dropped[2]},
		OverBudget: s.OverBudget,
	}
	if s.Counts != nil {
		out.Counts = make([]recording.SyscallCount, len(s.Counts))
		for i, c := range s.Counts {
			out.Counts[i] = recording.SyscallCount{SyscallKey: key(c.SyscallKey), Count: c.Count, Errors: c.Errors, LatTotal: c.LatTotal, LatMax: c.LatMax}
		}
	}
	if s.Errors != nil {
		out.Errors = make([]recording.SyscallErrors, len(s.Errors))
		for i, e := range s.Errors {
			out.Errors[i] = recording.SyscallErrors{SyscallKey: key(e.SyscallKey), Errno: e.Errno, Count: e.Count}
		}
	}
	if s.Paths != nil {
		out.Paths = make([]recording.SyscallPath, len(s.Paths))
		for i, p := range s.Paths {
			out.Paths[i] = recording.SyscallPath{SyscallKey: key(p.SyscallKey), Path: p.Path, Count: p.Count}
		}
	}
	return out
}

// ReplayedSyscalls is a recording's syscall counts as the live syscall table prints them.
func ReplayedSyscalls(s *recording.SyscallCounts) loader.SyscallSnapshot {
	key := func(k recording.SyscallKey) loader.SyscallKey {
		return loader.SyscallKey{Netns: k.Netns, Tgid: k.Tgid, Nr: k.Nr, Comm: k.Comm}
	}
	out := loader.SyscallSnapshot{
		Dropped:    [3]uint64{s.Dropped.CountsFull, s.Dropped.ErrorsFull, s.Dropped.PathsFull},
		OverBudget: s.OverBudget,
	}
	if s.Counts != nil {
		out.Counts = make([]loader.SyscallCount, len(s.Counts))
		for i, c := range s.Counts {
			out.Counts[i] = loader.SyscallCount{SyscallKey: key(c.SyscallKey), Count: c.Count, Errors: c.Errors, LatTotal: c.LatTotal, LatMax: c.LatMax}
		}
	}
	if s.Errors != nil {
		out.Errors = make([]loader.SyscallErrors, len(s.Errors))
		for i, e := range s.Errors {
			out.Errors[i] = loader.SyscallErrors{SyscallKey: key(e.SyscallKey), Errno: e.Errno, Count: e.Count}
		}
	}
	if s.Paths != nil {
		out.Paths = make([]loader.PathCount, len(s.Paths))
		for i, p := range s.Paths {
			out.Paths[i] = loader.PathCount{SyscallKey: key(p.SyscallKey), Path: p.Path, Count: p.Count}
		}
	}
	return out
}
