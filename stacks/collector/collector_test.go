package collector

import (
	"errors"
	"reflect"
	"testing"

	"github.com/sockscope/sockscope/stacks"
)

// One line per reason, not per process: a busy host's thousand short-lived processes must not
// become a thousand "not unwound" reasons.
func TestUnwindFailuresAreCountedWithoutTheirPID(t *testing.T) {
	cases := []struct{ in, out string }{
		{"read /proc/4242/maps: no such file or directory", "the process exited before its first stack was read (its mappings are read from /proc then)"},
		{"process 4242: no mappings", "the process exited before its first stack was read (its mappings are read from /proc then)"},
		{"open /proc/31337/mem: permission denied", "open /proc/PID/mem: permission denied"},
		{"process 7 and process 8: pc 0x0 outside every mapping", "process PID and process PID: pc 0x0 outside every mapping"},
		{"no CFI for pc 0x401000", "no CFI for pc 0x401000"},
	}
	for _, c := range cases {
		if got := unwindFailure(errors.New(c.in)); got != c.out {
			t.Errorf("unwindFailure(%q) = %q, want %q", c.in, got, c.out)
		}
	}
}

func names(fs []stacks.Frame) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Symbol)
	}
	return out
}

func frames(symbols ...string) []stacks.Frame {
	fs := make([]stacks.Frame, len(symbols))
	for i, s := range symbols {
		fs[i].Symbol = s
	}
	return fs
}

// The kernel frames shown start below the syscall's entry: sockscope's own BPF program and the
// tracepoint's path to it are left out.
func TestKernelFramesLeaveOutSockscopesOwnProgram(t *testing.T) {
	cases := []struct{ in, out []string }{
		{[]string{"bpf_prog_123_sys_enter", "__bpf_trace_sys_enter", "syscall_trace_enter.constprop.0", "do_syscall_64", "entry_SYSCALL_64"},
			[]string{"do_syscall_64", "entry_SYSCALL_64"}},
		{[]string{"bpf_get_stack", "__traceiter_sys_enter", "do_syscall_64"}, []string{"do_syscall_64"}},
		{[]string{"do_syscall_64"}, []string{"do_syscall_64"}},
		{[]string{"bpf_prog_1"}, []string{}},
	}
	for _, c := range cases {
		if got := names(kernelFrames(frames(c.in...))); !reflect.DeepEqual(got, c.out) {
			t.Errorf("kernelFrames(%q) = %q, want %q", c.in, got, c.out)
		}
	}
}
