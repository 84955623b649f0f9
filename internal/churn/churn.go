// Package churn makes the loopback traffic of the tests that check the twin programs
// (bpf/nested.h): short connections in a network namespace of the test's own, whose loopback
// steers received packets to every CPU (receive packet steering). A packet steered to another
// CPU reaches it by an interrupt, whose exit runs the TCP receive work there as a softirq: if a
// state program was running on that CPU in task context, the transitions made in that softirq
// nest in it and the kernel skips the program for them. That is the case the twins exist for,
// made common enough to test.
package churn

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/loader"
)

var made atomic.Int32

// Netns is a network namespace of the test's own, with loopback up and steered to every CPU.
type Netns struct {
	Path  string
	Inode uint32
}

// New creates the namespace and registers its deletion. It needs root and two CPUs.
func New(t testing.TB) Netns {
	t.Helper()
	if runtime.NumCPU() < 2 {
		t.Fatalf("needs two CPUs: packets steered to another CPU are what nests")
	}
	name := fmt.Sprintf("sockscope-churn-%d-%d", os.Getpid(), made.Add(1))
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run("-n", name, "link", "set", "lo", "up")
	path := filepath.Join("/run/netns", name)
	all := fmt.Sprintf("%x", (uint64(1)<<runtime.NumCPU())-1)
	// /sys shows the namespace's own devices only to a process that mounted it there: write the
	// mask from a shell inside the namespace, with its own sysfs.
	if out, err := exec.Command("ip", "netns", "exec", name, "sh", "-c",
		"echo "+all+" > /sys/class/net/lo/queues/rx-0/rps_cpus").CombinedOutput(); err != nil {
		t.Fatalf("steer the namespace's loopback to every CPU: %v: %s", err, out)
	}
	ino, err := containers.NetnsInodeOfPath(path)
	if err != nil {
		t.Fatal(err)
	}
	return Netns{Path: path, Inode: ino}
}

// Connections makes n loopback connections in the namespace, one after another: the client
// writes a byte and closes first; the server reads to the end and closes. Each connection makes
// exactly ten transitions (CLOSE -> SYN_SENT -> ESTABLISHED -> FIN_WAIT1 -> FIN_WAIT2 -> CLOSE on
// the client, LISTEN -> SYN_RECV -> ESTABLISHED -> CLOSE_WAIT -> LAST_ACK -> CLOSE on the
// server) and the listener two (CLOSE -> LISTEN -> CLOSE). It returns once every socket is
// closed; the last ACKs, steered to another CPU, may still be on their way.
func (ns Netns) Connections(n int) error {
	return loader.InNetns(ns.Path, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		var served sync.WaitGroup
		accepted := make(chan error, 1)
		go func() {
			for i := 0; i < n; i++ {
				c, err := ln.Accept()
				if err != nil {
					accepted <- err
					return
				}
				served.Add(1)
				go func() {
					defer served.Done()
					io.Copy(io.Discard, c)
					c.Close()
				}()
			}
			accepted <- nil
		}()
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				ln.Close()
				return err
			}
			c.Write([]byte{1})
			c.Close()
		}
		err = <-accepted
		served.Wait()
		ln.Close()
		return err
	})
}

// UntilSkipped makes rounds of 500 connections until skipped (the main program's recursion
// misses, read after each round) reaches 20, and fails the test if 40 rounds do not get there.
// after, when not nil, runs after each round (a reader draining its ring). It returns the
// connections and rounds made.
func (ns Netns) UntilSkipped(t testing.TB, skipped func() (uint64, error), after func()) (conns, rounds int) {
	t.Helper()
	const perRound, want, maxRounds = 500, 20, 40
	var n uint64
	for rounds < maxRounds && n < want {
		if err := ns.Connections(perRound); err != nil {
			t.Fatal(err)
		}
		conns += perRound
		rounds++
		if after != nil {
			after()
		}
		var err error
		if n, err = skipped(); err != nil {
			t.Fatal(err)
		}
	}
	if n < want {
		t.Fatalf("the kernel skipped the program %d times in %d connections; the test needs %d to prove anything", n, conns, want)
	}
	return conns, rounds
}

// Transitions is what conns connections made in rounds of Connections make, by (from, to) TCP
// state numbers.
func Transitions(conns, rounds int) map[[2]uint8]int {
	const (
		established, synSent, synRecv, finWait1, finWait2 = 1, 2, 3, 4, 5
		closed, closeWait, lastAck, listen                = 7, 8, 9, 10
	)
	return map[[2]uint8]int{
		{closed, synSent}: conns, {synSent, established}: conns, {established, finWait1}: conns,
		{finWait1, finWait2}: conns, {finWait2, closed}: conns, {listen, synRecv}: conns,
		{synRecv, established}: conns, {established, closeWait}: conns, {closeWait, lastAck}: conns,
		{lastAck, closed}: conns, {closed, listen}: rounds, {listen, closed}: rounds,
	}
}
