package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Each loopback connection where the client closes first makes exactly ten transitions, five
// per side; the client's TIME_WAIT never shows (FIN_WAIT2 -> CLOSE instead).
func clientClosesFirst(n int) map[string]int {
	return map[string]int{
		"CLOSE->SYN_SENT":         n,
		"SYN_SENT->ESTABLISHED":   n,
		"ESTABLISHED->FIN_WAIT1":  n,
		"FIN_WAIT1->FIN_WAIT2":    n,
		"FIN_WAIT2->CLOSE":        n,
		"LISTEN->SYN_RECV":        n,
		"SYN_RECV->ESTABLISHED":   n,
		"ESTABLISHED->CLOSE_WAIT": n,
		"CLOSE_WAIT->LAST_ACK":    n,
		"LAST_ACK->CLOSE":         n,
		"CLOSE->LISTEN":           1,
		"LISTEN->CLOSE":           1,
	}
}

// teardown adjusts the server side of clientClosesFirst to what the kernel of ns says happened.
// Normally the server closes after the client's FIN (CLOSE_WAIT -> LAST_ACK -> CLOSE), but on a
// busy CI machine some server sockets were reset while in CLOSE_WAIT (CLOSE_WAIT -> CLOSE). The
// kernel counts every ESTABLISHED/CLOSE_WAIT -> CLOSE in the netns's EstabResets, so the split is
// still exact; the abort counters are logged to tell why it happened.
func (ns netns) teardown(t *testing.T, want, got map[string]int) map[string]int {
	t.Helper()
	resets := int(ns.nstat(t, "TcpEstabResets"))
	if resets == 0 {
		return want
	}
	t.Logf("the kernel reset %d connections in CLOSE_WAIT; its counters: %s", resets,
		strings.Join(strings.Fields(sh(t, "ip", "netns", "exec", ns.name, "sh", "-c",
			"nstat -asz | grep -E 'Rst|Reset|Abort|Overflow|Orphan|Drop' | grep -v ' 0 '")), " "))
	want["CLOSE_WAIT->CLOSE"] = resets
	want["CLOSE_WAIT->LAST_ACK"] -= resets
	want["LAST_ACK->CLOSE"] -= resets
	// A server's reset that reaches its client before the ACK of the client's FIN (delayed)
	// ends the client's socket in FIN_WAIT1. No counter tells those from the resets that reach a
	// client in FIN_WAIT2, so the trace's split is taken, bounded by the resets: every client
	// socket still goes through exactly one of the two ends.
	if x := got["FIN_WAIT1->CLOSE"]; x > 0 {
		if x > resets {
			t.Errorf("%d client sockets ended in FIN_WAIT1, more than the %d resets the kernel counted", x, resets)
		}
		want["FIN_WAIT1->CLOSE"] = x
		want["FIN_WAIT1->FIN_WAIT2"] -= x
		want["FIN_WAIT2->CLOSE"] -= x
	}
	return want
}

func TestConnectionsAreOwnedByTheirClientAndServerProcesses(t *testing.T) {
	requireTracing(t)
	for _, tc := range []struct{ family, addr, saddr string }{
		{"ipv4", "127.0.0.1:8080", "127.0.0.1"},
		{"ipv6", "[::1]:8080", "::1"},
	} {
		t.Run(tc.family, func(t *testing.T) {
			const n = 200
			ns, other := newNetns(t), newNetns(t)
			tr := startTrace(t, "--netns", ns.path)

			// Traffic in another namespace at the same time must not show up.
			otherSrv := other.serve(t, "-addr", tc.addr)
			other.tcpload(t, "connect", "-addr", tc.addr, "-n", "50")
			otherSrv.stop(t)

			srv := ns.serve(t, "-addr", tc.addr, "-n", strconv.Itoa(n))
			client := ns.tcpload(t, "connect", "-addr", tc.addr, "-n", strconv.Itoa(n))
			srv.stop(t)
			evs, _ := tr.stop(t)

			if client.OK != n {
				t.Fatalf("tcpload made %d connections, want %d: %+v", client.OK, n, client)
			}
			for _, e := range evs {
				if e.Netns != ns.inode {
					t.Fatalf("event from netns %d, want only %d: %+v", e.Netns, ns.inode, e)
				}
				if e.Family != tc.family || e.Saddr != tc.saddr || e.Daddr != tc.saddr && e.Daddr != "::" && e.Daddr != "0.0.0.0" {
					t.Errorf("unexpected addresses: %+v", e)
				}
			}
			assertCounts(t, "transitions", transitions(evs, nil), ns.teardown(t, clientClosesFirst(n), transitions(evs, nil)))

			byClient := func(e jsonEvent) bool { return e.Pid == client.Pid && e.Comm == "tcpload" }
			byServer := func(e jsonEvent) bool { return e.Pid == srv.pid && e.Comm == "tcpload" }
			if got := transitions(evs, byClient)["SYN_SENT->ESTABLISHED"]; got != n {
				t.Errorf("SYN_SENT->ESTABLISHED owned by the client (pid %d): %d, want %d", client.Pid, got, n)
			}
			if got := transitions(evs, byServer)["SYN_RECV->ESTABLISHED"]; got != n {
				t.Errorf("SYN_RECV->ESTABLISHED owned by the server (pid %d): %d, want %d", srv.pid, got, n)
			}
			assertCounts(t, "connects by the client", connects(evs, byClient), map[string]int{"": n})
			for _, e := range evs {
				if e.Type == "connect" && (e.Dport != 8080 || e.LatencyUs < 0 || e.LatencyUs > 1e6) {
					t.Errorf("connect event with unexpected port or latency: %+v", e)
				}
				if e.Type == "state" && e.OldState != "CLOSE" && e.OldState != "LISTEN" && e.PrevStateUs > 10e6 {
					t.Errorf("implausible time in previous state: %+v", e)
				}
			}
		})
	}
}

func TestConnectToAClosedPortFailsWithECONNREFUSED(t *testing.T) {
	requireTracing(t)
	for _, mode := range []string{"blocking", "nonblocking"} {
		t.Run(mode, func(t *testing.T) {
			const n = 30
			ns := newNetns(t)
			tr := startTrace(t, "--netns", ns.path, "--connect-errors")
			args := []string{"connect", "-addr", "127.0.0.1:9", "-n", strconv.Itoa(n)}
			if mode == "nonblocking" {
				args = append(args, "-nonblock")
			}
			client := ns.tcpload(t, args...)
			evs, _ := tr.stop(t)
			assertCounts(t, "tcpload outcomes", client.Errors, map[string]int{"ECONNREFUSED": n})
			assertCounts(t, "connect errors", connects(evs, func(e jsonEvent) bool { return e.Pid == client.Pid && e.Dport == 9 }), map[string]int{"ECONNREFUSED": n})
			if len(evs) != n {
				t.Errorf("--connect-errors printed %d events, want only the %d failures", len(evs), n)
			}
		})
	}
}

// The nginx -> upstream incident: the client closes first, TIME_WAIT holds every local port of a
// narrow range, and the next connect() fails inside the kernel with EADDRNOTAVAIL.
func TestConnectFailsWithEADDRNOTAVAILWhenPortRangeIsExhausted(t *testing.T) {
	requireTracing(t)
	// Both modes must agree: by default the errno is inferred from the transition back to CLOSE
	// with no segment sent (bpf/connect.h); --connect-syscall takes the syscall's return value.
	for _, mode := range [][]string{nil, {"--connect-syscall"}} {
		t.Run(fmt.Sprint("flags", mode), func(t *testing.T) {
			const ports, extra = 10, 7
			ns := newNetns(t)
			ns.sysctl(t, "net.ipv4.ip_local_port_range=40000 40009")
			ns.sysctl(t, "net.ipv4.tcp_tw_reuse=0") // the default (2) reuses TIME_WAIT on loopback
			tr := startTrace(t, append([]string{"--netns", ns.path}, mode...)...)
			srv := ns.serve(t, "-addr", "127.0.0.1:8080")
			client := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", strconv.Itoa(ports+extra))
			srv.stop(t)
			evs, _ := tr.stop(t)

			// The truth trace must match is what the client saw. Once in CI (1 run in ~150) the
			// kernel freed one port early and an 11th connect succeeded; the incident is still
			// there, so the test goes on with the client's counts and logs the netns's TCP
			// counters to tell why. More than one port freed fails.
			failed := client.Errors["EADDRNOTAVAIL"]
			if client.OK < ports || client.OK > ports+1 || client.OK+failed != ports+extra || len(client.Errors) != 1 {
				t.Fatalf("tcpload: %+v, want %d ok (or one more) and the rest of %d EADDRNOTAVAIL", client, ports, ports+extra)
			}
			if client.OK != ports {
				t.Logf("tcpload: %+v, %d ports held by TIME_WAIT expected; the netns's counters:\n%s", client, ports,
					sh(t, "ip", "netns", "exec", ns.name, "nstat", "-asz", "TcpExtTW*", "TcpExtTCPTimeWait*", "TcpExtTCPAbort*", "TcpOutRsts", "TcpEstabResets"))
			}
			mine := func(e jsonEvent) bool { return e.Pid == client.Pid }
			assertCounts(t, "connects", connects(evs, mine), map[string]int{"": client.OK, "EADDRNOTAVAIL": failed})
			for _, e := range evs {
				if e.Type == "connect" && e.Errno == "EADDRNOTAVAIL" && (e.Daddr != "127.0.0.1" || e.Dport != 8080) {
					t.Errorf("EADDRNOTAVAIL event names the wrong destination: %+v", e)
				}
			}
			// Each failed attempt still passed through SYN_SENT and back to CLOSE.
			if got := transitions(evs, mine)["SYN_SENT->CLOSE"]; got != failed {
				t.Errorf("SYN_SENT->CLOSE: %d, want %d", got, failed)
			}
		})
	}
}

// A connect() that fails before any state change (no route) makes no transition: only the
// syscall's return shows it, which trace reads with --connect-syscall. Without it (the default,
// which leaves every other syscall of the machine on the fast path) trace sees nothing at all.
func TestConnectWithoutARouteFailsWithENETUNREACH(t *testing.T) {
	requireTracing(t)
	for _, tc := range []struct {
		mode  string
		flags []string
		want  map[string]int
	}{
		{"connect-syscall", []string{"--connect-syscall"}, map[string]int{"ENETUNREACH": 5}},
		{"default", nil, map[string]int{}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			const n = 5
			ns := newNetnsWithoutLoopback(t)
			tr := startTrace(t, append([]string{"--netns", ns.path}, tc.flags...)...)
			client := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", strconv.Itoa(n))
			evs, _ := tr.stop(t)
			assertCounts(t, "tcpload outcomes", client.Errors, map[string]int{"ENETUNREACH": n})
			assertCounts(t, "connects", connects(evs, func(e jsonEvent) bool { return e.Pid == client.Pid && e.Dport == 8080 }), tc.want)
			assertCounts(t, "transitions", transitions(evs, nil), map[string]int{})
			if want := tc.want["ENETUNREACH"]; len(evs) != want {
				t.Errorf("%d events, want %d: %+v", len(evs), want, evs)
			}
		})
	}
}

func TestFiltersByPortFamilyPidAndState(t *testing.T) {
	requireTracing(t)
	ns := newNetns(t)
	// Two servers and two clients; each filter must keep exactly its share.
	srvA := ns.serve(t, "-addr", "127.0.0.1:7001")
	srvB := ns.serve(t, "-addr", "[::1]:7002")
	trPort := startTrace(t, "--netns", ns.path, "--port", "7001")
	trFamily := startTrace(t, "--netns", ns.path, "--family", "6")
	trState := startTrace(t, "--netns", ns.path, "--state", "syn-recv")
	ns.tcpload(t, "connect", "-addr", "127.0.0.1:7001", "-n", "11")
	ns.tcpload(t, "connect", "-addr", "[::1]:7002", "-n", "13")
	srvA.stop(t)
	srvB.stop(t)

	evs, _ := trPort.stop(t)
	for _, e := range evs {
		if e.Sport != 7001 && e.Dport != 7001 {
			t.Errorf("--port 7001 let through %+v", e)
		}
	}
	assertCounts(t, "--port 7001 connects", connects(evs, nil), map[string]int{"": 11})

	evs, _ = trFamily.stop(t)
	for _, e := range evs {
		if e.Family != "ipv6" {
			t.Errorf("--family 6 let through %+v", e)
		}
	}
	assertCounts(t, "--family 6 connects", connects(evs, nil), map[string]int{"": 13})

	evs, _ = trState.stop(t)
	assertCounts(t, "--state SYN_RECV transitions", transitions(evs, nil), map[string]int{"LISTEN->SYN_RECV": 24, "SYN_RECV->ESTABLISHED": 24})

	// --pid keeps the sockets of one process: here the server's side of its connections.
	srvC := ns.serve(t, "-addr", "127.0.0.1:7003")
	srvD := ns.serve(t, "-addr", "127.0.0.1:7004")
	trPid := startTrace(t, "--netns", ns.path, "--pid", strconv.Itoa(srvC.pid))
	ns.tcpload(t, "connect", "-addr", "127.0.0.1:7003", "-n", "5")
	ns.tcpload(t, "connect", "-addr", "127.0.0.1:7004", "-n", "5")
	srvC.stop(t)
	srvD.stop(t)
	evs, _ = trPid.stop(t)
	for _, e := range evs {
		if e.Pid != srvC.pid {
			t.Errorf("--pid %d let through %+v", srvC.pid, e)
		}
	}
	assertCounts(t, "--pid transitions", transitions(evs, nil), map[string]int{
		"LISTEN->SYN_RECV": 5, "SYN_RECV->ESTABLISHED": 5, "ESTABLISHED->CLOSE_WAIT": 5,
		"CLOSE_WAIT->LAST_ACK": 5, "LAST_ACK->CLOSE": 5, "LISTEN->CLOSE": 1,
	})
}

// DTrace's /execname == "nginx"/ for sockets: --comm keeps the sockets of processes with those
// names, in the kernel. Most transitions run in softirq, where the current process is not the
// owner, so the kernel must remember which sockets are wanted: those a wanted process connects or
// listens on (before or after the trace starts), and those its listeners accept. A recording made
// with --comm at the same time and replayed without any filter shows exactly the same: the
// kernel, not the replay, left the others out. Its syscall counts hold the wanted processes only.
func TestCommKeepsTheSocketsOfThoseProcessesInTheKernel(t *testing.T) {
	requireTracing(t)
	ns := newNetns(t)
	dir := t.TempDir()
	link := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(tcploadBin, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvName, cliName := link("srv-wanted"), link("cli-wanted")
	other := link("srv-other")
	early := ns.serveBin(t, srvName, "-addr", "127.0.0.1:7005") // its listener comes from the owner walk
	unwanted := ns.serveBin(t, other, "-addr", "127.0.0.1:7006")
	filter := []string{"--netns", ns.path, "--comm", "srv-wanted", "--comm", "cli-wanted"}
	tr := startTrace(t, filter...)
	rec, file := startRecord(t, filter...)
	late := ns.serveBin(t, srvName, "-addr", "[::1]:7007") // its listen() is seen by the kernel

	ns.tcpload(t, "connect", "-addr", "127.0.0.1:7005", "-n", "5")
	ns.tcpload(t, "connect", "-addr", "[::1]:7007", "-n", "4")
	out := sh(t, "ip", "netns", "exec", ns.name, cliName, "connect", "-addr", "127.0.0.1:7006", "-n", "7")
	if !strings.Contains(out, `"ok":7`) {
		t.Fatalf("cli-wanted connect: %s", out)
	}
	ns.tcpload(t, "connect", "-addr", "127.0.0.1:7006", "-n", "3")
	early.stop(t)
	late.stop(t)
	unwanted.stop(t)
	evs, _ := tr.stop(t)
	stopRecord(t, rec)

	want := map[string]int{
		// the wanted servers' side of their 9 connections
		"LISTEN->SYN_RECV": 9, "SYN_RECV->ESTABLISHED": 9, "ESTABLISHED->CLOSE_WAIT": 9,
		"CLOSE_WAIT->LAST_ACK": 9, "LAST_ACK->CLOSE": 9, "CLOSE->LISTEN": 1, "LISTEN->CLOSE": 2,
		// the wanted client's side of its 7
		"CLOSE->SYN_SENT": 7, "SYN_SENT->ESTABLISHED": 7, "ESTABLISHED->FIN_WAIT1": 7,
		"FIN_WAIT1->FIN_WAIT2": 7, "FIN_WAIT2->CLOSE": 7,
	}
	replay := jsonLines[jsonEvent](t, runSockscope(t, "trace", "-r", file, "-o", "json").stdout)
	for _, run := range []struct {
		what string
		evs  []jsonEvent
	}{{"trace --comm", evs}, {"trace -r of record --comm, unfiltered", replay}} {
		for _, e := range run.evs {
			if e.Comm != "srv-wanted" && e.Comm != "cli-wanted" {
				t.Errorf("%s: an event of %q: %+v", run.what, e.Comm, e)
			}
		}
		assertCounts(t, run.what+" transitions", transitions(run.evs, nil), want)
		assertCounts(t, run.what+" connects", connects(run.evs, nil), map[string]int{"": 7})
	}

	sys := runSockscope(t, "syscalls", "-r", file, "--by", "comm,syscall", "--top", "1000", "-o", "json")
	connectCalls := map[string]uint64{}
	for _, r := range jsonLines[sysRowJSON](t, sys.stdout) {
		if r.Comm != "srv-wanted" && r.Comm != "cli-wanted" {
			t.Errorf("record --comm counted the syscalls of %q: %+v", r.Comm, r)
		}
		if r.Syscall == "connect" {
			connectCalls[r.Comm] += r.Count
		}
	}
	if connectCalls["cli-wanted"] != 7 || len(connectCalls) != 1 {
		t.Errorf("connect calls by process: %v; want cli-wanted's 7 only\n%s\n%s", connectCalls, sys.stdout, sys.stderr)
	}
}
