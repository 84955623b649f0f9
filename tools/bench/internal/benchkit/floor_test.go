package benchkit

import (
	"net"
	"testing"

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
