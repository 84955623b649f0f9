package syscalls

import "github.com/sockscope/sockscope/events"

// pathSyscalls are the calls whose path argument Config.Paths counts, with its position.
var pathSyscalls = []struct {
	name string
	arg  uint8
}{
	{"open", 0}, {"creat", 0}, {"openat", 1}, {"openat2", 1}, {"unlink", 0}, {"unlinkat", 1},
	{"rename", 0}, {"renameat", 1}, {"renameat2", 1}, {"mkdir", 0}, {"mkdirat", 1}, {"truncate", 0},
}

// PathSyscallsFor is Config.PathSyscalls for arch (a GOARCH): the calls that open,
// create, rename, remove or truncate a file by name, as far as arch has them.
func PathSyscallsFor(arch string) []PathSyscall {
	var out []PathSyscall
	for _, p := range pathSyscalls {
		if nr, ok := events.SyscallNumber(arch, p.name); ok {
			out = append(out, PathSyscall{Nr: nr, Arg: p.arg})
		}
	}
	return out
}
