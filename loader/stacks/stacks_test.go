package stacks

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/sockscope/sockscope/internal/testenv"
)

// A child process that makes exactly N getppid calls when told to, then waits.
func init() {
	n, err := strconv.Atoi(os.Getenv("SOCKSCOPE_STACKS_CHILD"))
	if err != nil {
		return
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	for i := 0; i < n; i++ {
		syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
	}
	fmt.Println("done")
	bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

func TestStackSampleLayout(t *testing.T) {
	var s stacksStackSample
	if unsafe.Offsetof(s.StartTime) != 0 || stSize != 584+16384 || stOffStack != 584 || stOffRegs != 56 {
		t.Fatalf("struct stack_sample: size %d, regs at %d, stack at %d", stSize, stOffRegs, stOffStack)
	}
}

// Every getppid of one process is sampled once, with its registers and the top of its stack, and
// nothing else is: the syscall and pid filters hold in the kernel, and the counters agree.
func TestStacksSampleEveryMatchingCall(t *testing.T) {
	testenv.Root(t)
	testenv.BTF(t)
	const n = 500
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "SOCKSCOPE_STACKS_CHILD="+strconv.Itoa(n))
	in, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	out := bufio.NewReader(outPipe)
	if l, _ := out.ReadString('\n'); l != "ready\n" {
		t.Fatalf("child: %q", l)
	}
	s, err := Open(Config{Pid: uint32(child.Process.Pid), Syscalls: []uint32{syscall.SYS_GETPPID}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in.Write([]byte("go\n"))
	if l, _ := out.ReadString('\n'); l != "done\n" {
		t.Fatalf("child: %q", l)
	}
	s.Detach()
	s.SetDeadline(time.Now().Add(time.Second))
	var got int
	var sample Sample
	for {
		err := s.ReadInto(&sample)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got++
		if sample.PID != uint32(child.Process.Pid) || sample.Nr != syscall.SYS_GETPPID || sample.Comm == "" {
			t.Fatalf("sample of pid %d nr %d comm %q", sample.PID, sample.Nr, sample.Comm)
		}
		if len(sample.Regs) != 21*8 {
			t.Fatalf("%d bytes of registers", len(sample.Regs))
		}
		// pt_regs: sp is the 20th word. The copy starts there, ends at a page boundary (the
		// first page that could not be read without faulting it in) or after the first part
		// and three whole pages, and holds at least the rest of sp's page.
		sp := binary.NativeEndian.Uint64(sample.Regs[19*8:])
		first := 4096 - sp%4096
		l := uint64(len(sample.Stack))
		if l < first || ((sp+l)%4096 != 0 && l != first+3*4096) {
			t.Fatalf("stack copy of %d bytes from sp %#x", l, sp)
		}
	}
	in.Write([]byte("exit\n"))
	child.Wait()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got != n || st.Matched != n || st.Sampled != n || st.Lost != 0 || st.Rate != 0 {
		t.Fatalf("read %d samples, counters %+v; want %d of each, none lost", got, st, n)
	}
}
