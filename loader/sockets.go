package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Sockets reads the kernel's TCP socket tables with BPF iterators: every TCP socket of a network
// namespace, time-wait and request sockets included, and the processes that own them.
type Sockets struct {
	objs   socketsObjects
	tcp    *link.Iter
	owners *link.Iter
	count  *link.Iter
	// count_tcp keeps one walk's counts in global variables: one walk at a time.
	countMu sync.Mutex
}

// OpenSockets loads and attaches the iterators; they are opened once per snapshot.
func OpenSockets() (*Sockets, error) {
	if err := memlock(); err != nil {
		return nil, err
	}
	s := &Sockets{}
	if err := loadSocketsObjects(&s.objs, nil); err != nil {
		return nil, missing("load the socket iterators", err, featBTF, featIterTCP, featIterTaskFile)
	}
	var err error
	if s.tcp, err = link.AttachIter(link.IterOptions{Program: s.objs.DumpTcp}); err != nil {
		s.Close()
		return nil, missing("attach iter/tcp", err, featIterTCP)
	}
	if s.owners, err = link.AttachIter(link.IterOptions{Program: s.objs.DumpOwners}); err != nil {
		s.Close()
		return nil, missing("attach iter/task_file", err, featIterTaskFile)
	}
	if s.count, err = link.AttachIter(link.IterOptions{Program: s.objs.CountTcp}); err != nil {
		s.Close()
		return nil, fmt.Errorf("attach iter/tcp: %w", err)
	}
	return s, nil
}

// Close detaches the iterators.
func (s *Sockets) Close() error {
	for _, l := range []*link.Iter{s.tcp, s.owners, s.count} {
		if l != nil {
			l.Close()
		}
	}
	return s.objs.Close()
}

// NetnsSnapshot is what one network namespace holds: its TCP sockets as raw sock_records
// (see events.DecodeSocket) and the sysctls that decide how many local ports a client has.
type NetnsSnapshot struct {
	Records   []byte
	PortRange [2]int // net.ipv4.ip_local_port_range
	TWReuse   int    // net.ipv4.tcp_tw_reuse
	Somaxconn int    // net.core.somaxconn
}

// ErrNetnsGone means the namespace's file no longer exists (its container exited).
var ErrNetnsGone = errors.New("network namespace is gone")

// Snapshot lists the TCP sockets of the network namespace at nsPath (e.g. /proc/PID/ns/net).
// A BPF iterator sees the namespace of the thread that opens it, so a locked OS thread enters
// the namespace, opens the iterator and reads the sysctls there, and returns to where it was.
func (s *Sockets) Snapshot(nsPath string) (NetnsSnapshot, error) {
	var snap NetnsSnapshot
	rd, err := openIn(nsPath, s.tcp, &snap.PortRange, &snap.TWReuse, &snap.Somaxconn)
	if err != nil {
		return snap, err
	}
	defer rd.Close()
	if snap.Records, err = readAll(rd); err != nil {
		return snap, fmt.Errorf("read iter/tcp: %w", err)
	}
	return snap, nil
}

// openIn opens an iterator inside the network namespace at nsPath and reads the namespace's port
// sysctls there. The iterator is bound to the namespace once open: it can be read from any thread.
func openIn(nsPath string, it *link.Iter, portRange *[2]int, twReuse *int, somaxconn *int) (io.ReadCloser, error) {
	var rd io.ReadCloser
	err := inNetns(nsPath, func() error {
		var err error
		if rd, err = it.Open(); err != nil {
			return fmt.Errorf("open iter/tcp: %w", err)
		}
		*portRange, *twReuse = readPortSysctls()
		if somaxconn != nil {
			*somaxconn = readIntSysctl("/proc/sys/net/core/somaxconn")
		}
		return nil
	})
	return rd, err
}

// NetnsCounts is how many TCP sockets a network namespace has in each state (indexed by the
// kernel's state number, as ss shows them: time-wait sockets by substate, request sockets as
// SYN_RECV), and its port sysctls.
type NetnsCounts struct {
	States    [16]uint32
	PortRange [2]int
	TWReuse   int
}

// Count counts the TCP sockets of the network namespace at nsPath by state. The kernel does the
// counting; one 64-byte record comes back, whatever the number of sockets.
func (s *Sockets) Count(nsPath string) (NetnsCounts, error) {
	var c NetnsCounts
	s.countMu.Lock()
	defer s.countMu.Unlock()
	rd, err := openIn(nsPath, s.count, &c.PortRange, &c.TWReuse, nil)
	if err != nil {
		return c, err
	}
	defer rd.Close()
	var buf [64]byte
	if _, err := io.ReadFull(rd, buf[:]); err != nil {
		return c, fmt.Errorf("read iter/tcp counts: %w", err)
	}
	for i := range c.States {
		c.States[i] = binary.NativeEndian.Uint32(buf[4*i:])
	}
	return c, nil
}

// Owners returns the owner records of every process's TCP socket files, laid out as recordings
// keep them (events.OwnerRecordSize bytes each: inode, pid, comm).
func (s *Sockets) Owners() ([]byte, error) {
	rd, err := s.owners.Open()
	if err != nil {
		return nil, fmt.Errorf("open iter/task_file: %w", err)
	}
	defer rd.Close()
	b, err := readAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read iter/task_file: %w", err)
	}
	// The first 24 bytes of each owner_record (bpf/owner.h) are the recorded layout.
	out := b[:0]
	for ; len(b) >= OwnerRecordSize; b = b[OwnerRecordSize:] {
		out = append(out, b[:recordedOwnerSize]...)
	}
	return out, nil
}

// recordedOwnerSize is events.OwnerRecordSize: inode, pid, comm.
const recordedOwnerSize = 24

// readAll reads an iterator to its end in large reads: the kernel fills as much of each read as
// it can, so 1 MiB reads take a few syscalls where io.ReadAll's small first reads take many.
func readAll(r io.Reader) ([]byte, error) {
	const chunk = 1 << 20
	b := make([]byte, 0, chunk)
	for {
		if cap(b)-len(b) < chunk/2 {
			b = append(b, make([]byte, chunk)...)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF || (err == nil && n == 0) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// readPortSysctls reads the current thread's namespace's port range and tcp_tw_reuse; net
// sysctls answer for the namespace of whoever opens them. -1 where unreadable.
func readPortSysctls() ([2]int, int) {
	rng := [2]int{-1, -1}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			rng[0], _ = strconv.Atoi(f[0])
			rng[1], _ = strconv.Atoi(f[1])
		}
	}
	return rng, readIntSysctl("/proc/sys/net/ipv4/tcp_tw_reuse")
}

// readIntSysctl reads a one-number sysctl; -1 where unreadable.
func readIntSysctl(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// inNetns runs fn on a locked OS thread inside the network namespace at path.
func inNetns(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", path, ErrNetnsGone)
		}
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is unlocked only once it is back in its own namespace; otherwise the
		// runtime ends it with the goroutine, so no other goroutine runs in a foreign netns.
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer self.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			if errors.Is(err, unix.EPERM) {
				errc <- fmt.Errorf("enter network namespace %s: %w (sockscope needs CAP_SYS_ADMIN for this)", path, err)
			} else {
				errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			}
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to own network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
