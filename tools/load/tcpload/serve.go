package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

type serveReady struct {
	Ready bool   `json:"ready"`
	PID   int    `json:"pid"`
	Addr  string `json:"addr"`
}

type serveSummary struct {
	Accepted int64 `json:"accepted"`
}

// runServe listens on -addr and accepts connections. By default each connection is read until
// EOF and then closed, so the client closes first (TIME_WAIT is on the client side); with
// -close-first each connection is closed right after accept. It ends after -n accepted
// connections (once their handlers are done) or on SIGTERM/SIGINT.
func runServe(args []string) error {
	fs := newFlagSet("serve")
	addr := fs.String("addr", "", "address to listen on: IPv4:PORT or [IPv6]:PORT (PORT 0 picks one)")
	closeFirst := fs.Bool("close-first", false, "close each connection right after accept (server closes first)")
	n := fs.Int64("n", 0, "exit after this many accepted connections (0: run until SIGTERM/SIGINT)")
	deferAccept := fs.Bool("defer-accept", false, "TCP_DEFER_ACCEPT: a connection that sends no data stays a SYN_RECV request socket")
	backlog := fs.Int("no-accept-backlog", -1, "listen with this backlog and never accept: with 0 the first connection fills the queue and later SYNs are dropped (the clients retransmit, then time out)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *addr == "" {
		return errors.New("-addr is required")
	}
	if *n < 0 {
		return errors.New("-n must be >= 0")
	}
	_, family, ap, err := parseAddr(*addr)
	if err != nil {
		return err
	}
	network := "tcp4"
	if family != syscall.AF_INET {
		network = "tcp6"
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if *backlog >= 0 {
		return listenOnly(family, ap, *backlog, sigs)
	}

	lc := net.ListenConfig{KeepAlive: -1}
	// Plain TCP: since Go 1.24 listeners are MPTCP by default, and an MPTCP listener's TCP
	// subflow socket has no file descriptor of its own.
	lc.SetMultipathTCP(false)
	if *deferAccept {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 60)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := lc.Listen(context.Background(), network, ap.String())
	if err != nil {
		return err
	}
	printJSON(serveReady{Ready: true, PID: os.Getpid(), Addr: ln.Addr().String()})

	var accepted atomic.Int64
	var handlers sync.WaitGroup
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				acceptErr <- err
				return
			}
			got := accepted.Add(1)
			if *closeFirst {
				c.Close()
			} else {
				handlers.Add(1)
				go func() {
					defer handlers.Done()
					io.Copy(io.Discard, c)
					c.Close()
				}()
			}
			if *n > 0 && got >= *n {
				ln.Close()
				handlers.Wait()
				acceptErr <- nil
				return
			}
		}
	}()

	select {
	case <-sigs:
		ln.Close()
	case err := <-acceptErr:
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
	}
	printJSON(serveSummary{Accepted: accepted.Load()})
	return nil
}

// listenOnly listens with the given backlog and accepts nothing until a signal.
func listenOnly(family int, ap netip.AddrPort, backlog int, sigs chan os.Signal) error {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if family == unix.AF_INET6 {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return err
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	port := 0
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		port = b.Port
	case *unix.SockaddrInet6:
		port = b.Port
	}
	printJSON(serveReady{Ready: true, PID: os.Getpid(), Addr: netip.AddrPortFrom(ap.Addr(), uint16(port)).String()})
	<-sigs
	printJSON(serveSummary{})
	return nil
}
