package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollTimeout is the outcome name used when -timeout expires while waiting in poll(); it is not
// an errno (the kernel has not given up on the connection yet).
const pollTimeout = "poll_timeout"

type connectSummary struct {
	PID    int            `json:"pid"`
	OK     int            `json:"ok"`
	Errors map[string]int `json:"errors"`
	// EOFErrors counts failures while waiting for the server's EOF (-close-first=server) on
	// connections that were established (and so are counted in OK).
	EOFErrors   map[string]int `json:"eof_errors,omitempty"`
	Interrupted bool           `json:"interrupted,omitempty"`
	// Slow counts the established connections whose connect() call (with -nonblock: through the
	// poll that saw it complete) took at least -slow. The kernel's handshake lies inside that
	// call, so every other one was faster than -slow in the kernel too.
	Slow int `json:"slow"`
}

type connectHolding struct {
	Holding int `json:"holding"`
	PID     int `json:"pid"`
	Slow    int `json:"slow"`
}

// connector makes the connections of one `tcpload connect` run. Its state is guarded by mu
// because a signal may end the run while a connection is in progress.
type connector struct {
	sa          unix.Sockaddr
	family      int
	nonblock    bool
	serverFirst bool
	hold        bool
	timeout     time.Duration
	syncnt      int
	slow        time.Duration

	mu      sync.Mutex
	sum     connectSummary
	held    []int
	printed bool
}

// runConnect makes -n sequential connections to -addr with raw syscalls: one socket() and one
// connect() per attempt, so every attempt is exactly one connect() call and its errno is the
// kernel's. With -nonblock the socket is non-blocking and the asynchronous outcome is read from
// SO_ERROR after poll() reports it writable. Failures are counted, not fatal.
func runConnect(args []string) error {
	fs := newFlagSet("connect")
	addr := fs.String("addr", "", "address to connect to: IPv4:PORT or [IPv6]:PORT")
	n := fs.Int("n", 1, "number of sequential connections")
	nonblock := fs.Bool("nonblock", false, "non-blocking connect: poll() for writability, then read SO_ERROR")
	closeFirst := fs.String("close-first", "client", "who closes first: client (close right after connect) or server (wait for EOF, then close)")
	hold := fs.Bool("hold", false, "keep established sockets open until SIGTERM/SIGINT (with -close-first=server: after EOF, so they sit in CLOSE_WAIT)")
	syncnt := fs.Int("syncnt", 0, "TCP_SYNCNT: SYN retransmits before connect gives up with ETIMEDOUT (1: after 3 s); 0 = the system's")
	timeout := fs.Duration("timeout", 30*time.Second, "limit of each poll() wait (non-blocking connect, waiting for EOF)")
	slow := fs.Duration("slow", 10*time.Millisecond, "count, as \"slow\", the established connections whose connect took at least this")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *addr == "" {
		return errors.New("-addr is required")
	}
	if *n < 0 {
		return errors.New("-n must be >= 0")
	}
	if *closeFirst != "client" && *closeFirst != "server" {
		return fmt.Errorf("-close-first must be client or server, not %q", *closeFirst)
	}
	if *timeout <= 0 {
		return errors.New("-timeout must be > 0")
	}
	sa, family, _, err := parseAddr(*addr)
	if err != nil {
		return err
	}
	c := &connector{
		sa: sa, family: family, nonblock: *nonblock, serverFirst: *closeFirst == "server",
		hold: *hold, timeout: *timeout, syncnt: *syncnt, slow: *slow,
	}
	c.sum = connectSummary{PID: os.Getpid(), Errors: map[string]int{}, EOFErrors: map[string]int{}}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		for i := 0; i < *n; i++ {
			c.attempt()
		}
		close(done)
	}()

	select {
	case <-done:
	case <-sigs:
		// Interrupted while connecting.
		c.finish(true)
		fmt.Fprintf(os.Stderr, "tcpload connect: interrupted after %d of %d connections\n", c.attempts(), *n)
		os.Exit(1)
	}
	if c.hold {
		c.mu.Lock()
		printJSON(connectHolding{Holding: len(c.held), PID: os.Getpid(), Slow: c.sum.Slow})
		c.mu.Unlock()
		<-sigs
	}
	c.finish(false)
	return nil
}

func (c *connector) attempts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.sum.OK
	for _, v := range c.sum.Errors {
		k += v
	}
	return k
}

// finish closes the held sockets and prints the summary, once.
func (c *connector) finish(interrupted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.printed {
		return
	}
	c.printed = true
	for _, fd := range c.held {
		unix.Close(fd)
	}
	c.held = nil
	c.sum.Interrupted = interrupted
	if len(c.sum.EOFErrors) == 0 {
		c.sum.EOFErrors = nil
	}
	printJSON(c.sum)
}

// attempt makes one connection and records its outcome.
func (c *connector) attempt() {
	start := time.Now()
	fd, outcome := c.connect()
	took := time.Since(start)
	if outcome != "" {
		if fd >= 0 {
			unix.Close(fd)
		}
		c.mu.Lock()
		c.sum.Errors[outcome]++
		c.mu.Unlock()
		return
	}
	var eofErr string
	if c.serverFirst {
		eofErr = c.waitEOF(fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum.OK++
	if took >= c.slow {
		c.sum.Slow++
	}
	if eofErr != "" {
		c.sum.EOFErrors[eofErr]++
	}
	if c.hold && !c.printed {
		c.held = append(c.held, fd)
		return
	}
	unix.Close(fd)
}

// connect opens a socket and connects it with exactly one connect() call. It returns the socket
// and "" on success, or the outcome's errno name.
func (c *connector) connect() (int, string) {
	typ := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
	if c.nonblock {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(c.family, typ, unix.IPPROTO_TCP)
	if err != nil {
		return -1, errnoName(err)
	}
	if c.syncnt > 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, c.syncnt); err != nil {
			return fd, "setsockopt:" + errnoName(err)
		}
	}
	// A blocking connect() interrupted by a signal is restarted by the kernel (Go installs its
	// handlers with SA_RESTART), so this is one call from the program's point of view.
	err = unix.Connect(fd, c.sa)
	if c.nonblock && err == unix.EINPROGRESS {
		if r := c.poll(fd, unix.POLLOUT); r != "" {
			return fd, r
		}
		soerr, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			return fd, "getsockopt:" + errnoName(gerr)
		}
		if soerr != 0 {
			return fd, errnoName(unix.Errno(soerr))
		}
		return fd, ""
	}
	if err != nil {
		return fd, errnoName(err)
	}
	return fd, ""
}

// poll waits until fd reports one of events (or an error/hangup), for at most c.timeout. It
// returns "" when fd is ready, else the reason it is not.
func (c *connector) poll(fd int, events int16) string {
	deadline := time.Now().Add(c.timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return pollTimeout
		}
		ms := int(left / time.Millisecond)
		if ms == 0 {
			ms = 1
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "poll:" + errnoName(err)
		}
		if n > 0 {
			return ""
		}
	}
}

// waitEOF reads from fd until the peer's FIN (read returns 0). It returns "" on EOF, else the
// failure (an errno name, or poll_timeout).
func (c *connector) waitEOF(fd int) string {
	var buf [512]byte
	for {
		if r := c.poll(fd, unix.POLLIN); r != "" {
			return r
		}
		n, err := unix.Read(fd, buf[:])
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err != nil:
			return errnoName(err)
		case n == 0:
			return ""
		}
	}
}
