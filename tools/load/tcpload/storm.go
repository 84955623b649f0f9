package main

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type stormSummary struct {
	Connections int64   `json:"connections"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	// Total counts every completed connection from the first to the last, warmup included:
	// a tracer attached for the whole run sees 10*Total+2 state transitions (the +2 are the
	// listener's CLOSE->LISTEN and LISTEN->CLOSE).
	Total int64 `json:"total"`
	// Errors counts failed connect() calls by errno name (a healthy storm has none).
	Errors map[string]int64 `json:"errors"`
	// MaxConnMS is the slowest connection (socket to close) in milliseconds; a SYN
	// retransmission shows up as about 1000.
	MaxConnMS float64 `json:"max_conn_ms"`
}

// storm is one connect/accept/close storm on loopback: a server thread that accepts and closes
// at once and a client thread that connects, reads until EOF and closes. The server closes
// first, so the TIME_WAIT sockets are on the server side (127.0.0.1:port <- 127.0.0.1:eph) and
// hold no client port; a later SYN from a reused client port recycles such a TIME_WAIT socket.
//
// Both threads use raw syscalls (no runtime entersyscall/exitsyscall): measured here, going
// through the runtime's syscall path cost about 30% more CPU per connection (more context
// switches: sysmon wakes up and Ps are handed over), which would make the storm a benchmark of
// the Go scheduler rather than of the kernel. A raw syscall keeps its P while it blocks, so the
// process must never stop the world while the storm runs: the GC is off (nothing in the loops
// allocates) and GOMAXPROCS is set before the threads start.
type storm struct {
	port int
	lfd  int

	done     atomic.Int64 // completed connections
	stop     atomic.Bool
	maxNanos atomic.Int64
	errs     [256]atomic.Int64 // failed connect() calls by errno (other errnos in errs[0])
	fatal    chan error
	finished chan struct{}
}

func runStorm(args []string) error {
	fs := newFlagSet("storm")
	port := fs.Int("port", 0, "TCP port to listen on at 127.0.0.1 (required)")
	duration := fs.Duration("duration", 5*time.Second, "length of the measured window")
	warmup := fs.Duration("warmup", time.Second, "time to run before the measured window starts")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *port <= 0 || *port > 65535 {
		return errors.New("-port is required (1..65535)")
	}
	if *duration <= 0 || *warmup < 0 {
		return errors.New("-duration must be > 0 and -warmup >= 0")
	}

	// Two Ps are held by the storm threads for the whole run; the rest serve the main
	// goroutine's timers. Under taskset -c 0 GOMAXPROCS would otherwise be 1.
	if runtime.GOMAXPROCS(0) < 4 {
		runtime.GOMAXPROCS(4)
	}
	debug.SetGCPercent(-1) // also stops the periodic forced GC

	s := &storm{port: *port, fatal: make(chan error, 2), finished: make(chan struct{})}
	if err := s.listen(); err != nil {
		return err
	}
	go s.server()
	go s.client()

	var c0, c1 int64
	var t0, t1 time.Time
	timer := time.NewTimer(*warmup)
	select {
	case err := <-s.fatal:
		return err
	case <-timer.C:
	}
	c0, t0 = s.done.Load(), time.Now()
	timer.Reset(*duration)
	select {
	case err := <-s.fatal:
		return err
	case <-timer.C:
	}
	c1, t1 = s.done.Load(), time.Now()

	// Stop cleanly so that Total is exact: the client finishes its current connection, then
	// shutdown() wakes the server thread out of accept().
	s.stop.Store(true)
	timer.Reset(10 * time.Second)
	select {
	case <-s.finished:
	case err := <-s.fatal:
		return err
	case <-timer.C:
		return errors.New("client thread did not stop within 10s")
	}
	unix.Shutdown(s.lfd, unix.SHUT_RDWR)

	secs := t1.Sub(t0).Seconds()
	sum := stormSummary{
		Connections: c1 - c0,
		Seconds:     math.Round(secs*1e6) / 1e6,
		PerSecond:   math.Round(float64(c1-c0)/secs*10) / 10,
		Total:       s.done.Load(),
		Errors:      map[string]int64{},
		MaxConnMS:   math.Round(float64(s.maxNanos.Load())/1e3) / 1e3,
	}
	for i := range s.errs {
		if v := s.errs[i].Load(); v > 0 {
			name := "other"
			if i > 0 {
				name = errnoName(unix.Errno(i))
			}
			sum.Errors[name] += v
		}
	}
	printJSON(sum)
	return nil
}

func (s *storm) listen() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: s.port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind 127.0.0.1:%d: %w", s.port, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.lfd = fd
	return nil
}

// server accepts and closes at once, on its own OS thread, without allocating.
func (s *storm) server() {
	runtime.LockOSThread()
	for {
		nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(s.lfd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
		if e != 0 {
			switch {
			case s.stop.Load():
				return // woken by shutdown()
			case e == unix.EINTR || e == unix.ECONNABORTED:
				continue
			}
			s.fatal <- fmt.Errorf("accept: %w", e)
			return
		}
		unix.RawSyscall(unix.SYS_CLOSE, nfd, 0, 0)
	}
}

// client connects, reads until EOF and closes, on its own OS thread, without allocating.
func (s *storm) client() {
	runtime.LockOSThread()
	defer close(s.finished)
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{127, 0, 0, 1}}
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(s.port>>8), byte(s.port) // network byte order
	var buf [64]byte
	var maxNanos int64
	for !s.stop.Load() {
		start := time.Now()
		fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if e != 0 {
			s.fatal <- fmt.Errorf("socket: %w", e)
			return
		}
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4)
		if e != 0 {
			unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
			if int(e) >= len(s.errs) {
				e = 0
			}
			s.errs[e].Add(1)
			continue
		}
		for {
			n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			if e == unix.EINTR || (e == 0 && n > 0) {
				continue
			}
			break // EOF (or an error, which ends the connection just the same)
		}
		unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
		if d := int64(time.Since(start)); d > maxNanos {
			maxNanos = d
			s.maxNanos.Store(d)
		}
		s.done.Add(1)
	}
}
