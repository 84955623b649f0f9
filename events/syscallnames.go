package events

//go:generate go run ../tools/gen/syscalls -out syscallnames_gen.go

import (
	"slices"
	"strconv"
	"sync"
)

// syscallTable returns the number-indexed name table of arch ("amd64" or "arm64"; the kernel's
// names "x86_64" and "aarch64" are accepted too), or nil for an unknown arch.
func syscallTable(arch string) []string {
	switch arch {
	case "amd64", "x86_64":
		return syscallNamesAMD64[:]
	case "arm64", "aarch64":
		return syscallNamesARM64[:]
	}
	return nil
}

// The kernel side's rows that are no syscall of their own (loader.SyscallInvalid, SyscallOther).
const (
	syscallInvalid = 0xffffffff
	syscallOther   = 0xfffffffe
)

// SyscallName returns the name of syscall nr on arch ("amd64" or "arm64"), or "syscall_N" when
// unknown. "invalid" counts every number the kernel has no syscall for, and "other" a
// namespace's calls beyond its budget of rows. Known names are returned without allocating.
func SyscallName(arch string, nr uint32) string {
	if t := syscallTable(arch); uint64(nr) < uint64(len(t)) && t[nr] != "" {
		return t[nr]
	}
	switch nr {
	case syscallInvalid:
		return "invalid"
	case syscallOther:
		return "other"
	}
	return "syscall_" + strconv.FormatUint(uint64(nr), 10)
}

type syscallIndex struct {
	numbers map[string]uint32
	names   []string // sorted
}

func newSyscallIndex(table []string) syscallIndex {
	ix := syscallIndex{numbers: make(map[string]uint32, len(table))}
	for nr, name := range table {
		if name != "" {
			ix.numbers[name] = uint32(nr)
			ix.names = append(ix.names, name)
		}
	}
	slices.Sort(ix.names)
	return ix
}

var syscallIndexes = sync.OnceValue(func() map[string]syscallIndex {
	amd64, arm64 := newSyscallIndex(syscallNamesAMD64[:]), newSyscallIndex(syscallNamesARM64[:])
	return map[string]syscallIndex{"amd64": amd64, "x86_64": amd64, "arm64": arm64, "aarch64": arm64}
})

// SyscallNumber returns the number of a syscall by name on arch; ok=false when arch has no such
// call (arm64 has no open, unlink or rename, only openat, unlinkat and renameat) or arch is
// unknown.
func SyscallNumber(arch, name string) (nr uint32, ok bool) {
	nr, ok = syscallIndexes()[arch].numbers[name]
	return nr, ok
}

// SyscallNames lists the names known on arch, sorted (for error messages: closest names). It
// returns nil for an unknown arch; the caller owns the slice.
func SyscallNames(arch string) []string {
	return slices.Clone(syscallIndexes()[arch].names)
}
