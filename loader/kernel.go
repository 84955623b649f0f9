package loader

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

const tracefsDir = "/sys/kernel/tracing"

// MountTracefs makes the classic tracepoints findable: they are looked up by id in tracefs,
// which a fresh machine may not have mounted. It is left mounted, as other tools expect.
func MountTracefs() error {
	for _, dir := range []string{tracefsDir, "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return nil
		}
	}
	if err := unix.Mount("tracefs", tracefsDir, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at %s failed (%v): run `mount -t tracefs tracefs %s` as root, or give sockscope CAP_SYS_ADMIN", tracefsDir, err, tracefsDir)
	}
	return nil
}

// Capability numbers (linux/capability.h).
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// CheckPrivileges returns one line naming exactly the capabilities sockscope lacks, or nil.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read own capabilities: %w", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	var Missing []string
	if !has(capBPF) && !has(capSysAdmin) {
		Missing = append(Missing, "CAP_BPF")
	}
	if !has(capPerfmon) && !has(capSysAdmin) {
		Missing = append(Missing, "CAP_PERFMON")
	}
	if len(Missing) > 0 {
		return fmt.Errorf("sockscope needs root, or the capabilities CAP_BPF and CAP_PERFMON (plus CAP_SYS_ADMIN where tracefs is not mounted or namespaces are entered); missing: %s", strings.Join(Missing, ", "))
	}
	return nil
}

// CheckBTF returns one line saying what is missing when the kernel has no BTF.
func CheckBTF() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return errors.New("sockscope needs kernel BTF, and /sys/kernel/btf/vmlinux is missing: run Linux 5.11 or newer built with CONFIG_DEBUG_INFO_BTF=y")
	}
	return nil
}

// TracepointArgs returns how many arguments the kernel passes to programs on the BTF tracepoint
// name (its btf_trace_ typedef, less the context pointer): tracepoints gain arguments between
// kernel versions, and a program may read only those that exist.
func TracepointArgs(name string) (int, error) {
	spec, err := btfCache().Kernel()
	if err != nil {
		return 0, fmt.Errorf("kernel BTF: %w", err)
	}
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+name, &td); err != nil {
		return 0, fmt.Errorf("tracepoint %s in the kernel's BTF: %w", name, err)
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return 0, fmt.Errorf("btf_trace_%s is not a function pointer", name)
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		return 0, fmt.Errorf("btf_trace_%s is not a function pointer", name)
	}
	return len(proto.Params) - 1, nil
}
