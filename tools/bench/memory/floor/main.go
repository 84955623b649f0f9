// Command floor is the memory floor of a tracer (tools/bench/memory): it loads one empty tp_btf
// program on inet_sock_set_state against the kernel's BTF, maps a ring buffer of trace's size
// through a reader, as trace does, and returns the memory used to parse the BTF, as sockscope
// does after loading. Built with -tags designpkgs it also links the packages the design names
// (packages.go) and uses none of them beyond their initialization. It prints "floor: attached"
// and waits for SIGINT or SIGTERM. It needs root.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

func main() {
	ringSize := flag.Int("ring", 4<<20, "ring buffer size in bytes (trace's is 4 MiB)")
	flag.Parse()
	if err := run(*ringSize); err != nil {
		fmt.Fprintf(os.Stderr, "floor: %v\n", err)
		os.Exit(1)
	}
}

func run(ringSize int) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return err
	}
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: uint32(ringSize)})
	if err != nil {
		return fmt.Errorf("ring buffer: %w", err)
	}
	defer ring.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "inet_sock_set_state",
		License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	defer l.Close()
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		return fmt.Errorf("ring reader: %w", err)
	}
	defer rd.Close()
	debug.FreeOSMemory()
	fmt.Fprintln(os.Stderr, "floor: attached")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}
