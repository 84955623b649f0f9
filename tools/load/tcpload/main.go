// Command tcpload generates loopback TCP traffic for sockscope's integration tests and for the
// trace benchmark (tools/bench/trace).
//
// Subcommands:
//
//	tcpload serve   -addr IP:PORT [-close-first] [-n N] [-defer-accept]
//	tcpload connect -addr IP:PORT -n N [-nonblock] [-close-first=client|server] [-hold] [-timeout D]
//	tcpload storm   -port P -duration D [-warmup W]
//
// Each subcommand writes one JSON summary line to stdout when it ends (serve also writes a
// {"ready":...} line once it listens, connect -hold a {"holding":...} line once all its
// connections are made). On an error it writes one line to stderr and exits with status 1.
//
// Addresses are IP literals (127.0.0.1:PORT, [::1]:PORT); host names are not resolved. Run it
// only against loopback inside a network namespace of your own (ip netns exec NS tcpload ...).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

const usage = `usage:
  tcpload serve   -addr IP:PORT [-close-first] [-n N] [-defer-accept]
  tcpload connect -addr IP:PORT -n N [-nonblock] [-close-first=client|server] [-hold] [-timeout D]
  tcpload storm   -port P -duration D [-warmup W]
`

func main() {
	if len(os.Args) < 2 {
		fail("", errors.New("missing subcommand (serve, connect or storm)"))
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "serve":
		err = runServe(args)
	case "connect":
		err = runConnect(args)
	case "storm":
		err = runStorm(args)
	case "help", "-h", "-help", "--help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown subcommand %q (want serve, connect or storm)", cmd)
		cmd = ""
	}
	if err != nil {
		fail(cmd, err)
	}
}

// fail writes err as a single stderr line and exits with status 1.
func fail(cmd string, err error) {
	prefix := "tcpload"
	if cmd != "" {
		prefix += " " + cmd
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	fmt.Fprintf(os.Stderr, "%s: %s\n", prefix, msg)
	os.Exit(1)
}

// newFlagSet returns a flag set that reports parse errors as a returned error (one line) instead
// of printing the usage text; -h prints the usage text to stdout.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args and rejects positional arguments. A -h request prints the usage and
// exits 0.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fmt.Print(usage)
			fs.PrintDefaults()
			os.Exit(0)
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// printJSON writes v as one JSON line to stdout. os.Stdout is unbuffered, so the line is out
// when this returns.
func printJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fail("", err)
	}
	os.Stdout.Write(append(b, '\n'))
}

// parseAddr turns an IP:PORT literal into a socket address and its address family.
func parseAddr(s string) (unix.Sockaddr, int, netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, 0, ap, fmt.Errorf("bad -addr %q: want IPv4:PORT or [IPv6]:PORT", s)
	}
	a := ap.Addr()
	if a.Zone() != "" {
		return nil, 0, ap, fmt.Errorf("bad -addr %q: zones are not supported", s)
	}
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, unix.AF_INET, ap, nil
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}, unix.AF_INET6, ap, nil
}

// errnoName names an error from a syscall by its errno constant (ECONNREFUSED, ...).
func errnoName(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
		return fmt.Sprintf("errno%d", int(e))
	}
	return err.Error()
}
