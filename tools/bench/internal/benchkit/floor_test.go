package benchkit

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/internal/testenv"
)

// The floors load and attach on every hook the benchmarks name, and the writer floor writes a
// record for each transition: at least the four of a loopback handshake per connection, plus
// the listener's CLOSE->LISTEN (other connections on the machine may add more).
func TestFloorsAttachAndTheWriterWritesEveryTransition(t *testing.T) {
	testenv.Root(t)
	testenv.BTF(t)
	f, err := AttachFloor(HookState, HookState, HookConnectEnter, HookSysEnter, HookSysExit, HookStateWriter)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		s.Close()
	}
	ln.Close()
	f.Close()
	if f.Records < 4*n+1 {
		t.Errorf("the writer floor wrote %d records for %d loopback connections, want at least %d", f.Records, n, 4*n+1)
	}
	if _, err := AttachFloor("kprobe/tcp_connect"); err == nil {
		t.Error("an unknown hook kind was accepted")
	}
}

// The counting floors count exactly the namespace they are given: the transitions of n loopback
// connections made in a fresh namespace, by new state, and at least the connect calls made there.
func TestCountingFloorsCountTheirNamespaceExactly(t *testing.T) {
	testenv.Root(t)
	testenv.BTF(t)
	testenv.Command(t, "ip")
	name := fmt.Sprintf("sockscope-floortest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	ino, err := containers.NetnsInodeOfPath("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	at := fmt.Sprintf("@%d", ino)
	if _, err := AttachFloor(HookStateCounter+at, HookSysExitFilter+at); err == nil {
		t.Error("two counting floors in one Floor were accepted")
	}
	states, err := AttachFloor(HookStateCounter + at)
	if err != nil {
		t.Fatal(err)
	}
	defer states.Close()
	sys, err := AttachFloor(HookSysExitFilter + at)
	if err != nil {
		t.Fatal(err)
	}

	const n = 20
	errc := make(chan error, 1)
	go func() {
		// This thread enters the namespace and is never given back (no UnlockOSThread).
		runtime.LockOSThread()
		errc <- func() error {
			fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				return err
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer ln.Close()
			for range n {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return err
				}
				s, err := ln.Accept()
				if err != nil {
					return err
				}
				c.Close()
				s.Close()
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Each connection moves into ESTABLISHED twice (client, server) and into SYN_SENT, SYN_RECV,
	// FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT and LAST_ACK once. (CLOSE and LISTEN are left out: Go's
	// first use of the network probes the stack with sockets of its own, which close.)
	want := map[uint32]uint64{1: 2 * n, 2: n, 3: n, 4: n, 5: n, 8: n, 9: n}
	perState := func() map[uint32]uint64 {
		got := map[uint32]uint64{}
		for state := range want {
			var per []uint64
			if err := states.counts.Lookup(state, &per); err != nil {
				t.Fatal(err)
			}
			for _, c := range per {
				got[state] += c
			}
		}
		return got
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if maps.Equal(perState(), want) {
			break
		}
	}
	time.Sleep(100 * time.Millisecond)
	sys.Close()
	if got := perState(); !maps.Equal(got, want) {
		t.Errorf("the state counting floor counted, by new state, %v in the namespace of %d loopback connections; want %v", got, n, want)
	}
	if sys.Counts < n {
		t.Errorf("the syscall filter floor counted %d calls in that namespace, want at least the %d connect calls", sys.Counts, n)
	}
}
