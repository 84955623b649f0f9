package main

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The exporter's socket gauges follow the transitions, not a walk per scrape: four namespaces,
// one with sockets from before the exporter started (its first walk counts them), one with a
// single IPv6 listener, then every
// namespace's population changes while the exporter runs (listeners, established connections
// held open, CLOSE_WAIT, TIME_WAIT, handshakes stuck in SYN_SENT, request sockets in SYN_RECV,
// connections that close again). At each step sockscope_tcp_sockets equals ss -tan in each
// namespace, state by state, and equals what the test made; and the exporter walked each
// namespace's TCP tables exactly once (--sockets.reconcile=0), so the numbers after the changes
// came from the transitions, the time-wait count and the listeners' queues alone.
func TestExportSocketGaugesFollowTransitionsInEveryNetns(t *testing.T) {
	requireTracing(t)
	a, b, c, d := newNetns(t), newNetns(t), newNetns(t), newNetns(t)
	for _, ns := range []netns{a, b, c} {
		ns.sysctl(t, "net.ipv4.tcp_tw_reuse=0")
	}
	// d: one socket, an IPv6 listener (a walk of exactly one socket once read as none).
	d.serve(t, "-addr", "[::1]:8000")
	// Before the exporter: in a, a listener with 3 connections held open and 4 closed by the
	// client (TIME_WAIT on its side).
	a.serve(t, "-addr", "127.0.0.1:8000")
	a.hold(t, "-addr", "127.0.0.1:8000", "-n", "3")
	if r := a.tcpload(t, "connect", "-addr", "127.0.0.1:8000", "-n", "4"); r.OK != 4 {
		t.Fatalf("4 connects: %+v", r)
	}
	a.settle(t)

	all := map[string]netns{"a": a, "b": b, "c": c, "d": d}
	nsFlags := []string{"--netns", "a=" + a.path, "--netns", "b=" + b.path, "--netns", "c=" + c.path, "--netns", "d=" + d.path}
	exp := startExport(t, append([]string{noDocker, "--host=false", "--sockets.reconcile=0"}, nsFlags...)...)
	// Another exporter checks its gauges with a walk at every scrape (one namespace each time):
	// a walk during which no socket moved must find exactly what the transitions say.
	checked := startExport(t, append([]string{noDocker, "--host=false", "--sockets.reconcile=1ns"}, nsFlags...)...)
	checked.metrics(t) // its first walks, before the changes below
	want := map[string]map[string]int{
		"a": {"LISTEN": 1, "ESTABLISHED": 6, "TIME_WAIT": 4},
		"b": {},
		"c": {},
		"d": {"LISTEN": 1},
	}
	assertSocketGauges(t, exp, want, all, 4)
	// --sockets.walk walks every namespace at every scrape: exactly ss's states (orphaned
	// FIN_WAIT2 ends in the time-wait table as FIN_WAIT2), and an empty namespace walked after a
	// busy one reads 0, not the busy one's counts.
	walker := startExport(t, append([]string{noDocker, "--host=false", "--sockets.walk"}, nsFlags...)...)
	assertWalkEqualsSs(t, walker, all)

	// a: 5 more held open, 6 more closed by the client.
	a.hold(t, "-addr", "127.0.0.1:8000", "-n", "5")
	if r := a.tcpload(t, "connect", "-addr", "127.0.0.1:8000", "-n", "6"); r.OK != 6 {
		t.Fatalf("6 connects: %+v", r)
	}
	// b: a server that closes each connection right after accept, and a client that holds its
	// end after the server's FIN: 4 CLOSE_WAIT, and the server's 4 orphaned FIN_WAIT2 ends,
	// which wait in the time-wait table. A listener with TCP_DEFER_ACCEPT and 3 clients that
	// send nothing: 3 request sockets (SYN_RECV), 3 ESTABLISHED clients.
	b.serve(t, "-addr", "127.0.0.1:8001", "-close-first")
	b.hold(t, "-addr", "127.0.0.1:8001", "-close-first=server", "-n", "4")
	b.serve(t, "-addr", "127.0.0.1:8002", "-defer-accept")
	b.hold(t, "-addr", "127.0.0.1:8002", "-n", "3")
	// c: a listener that never accepts, with backlog 0: one held connection fills its queue,
	// and the SYNs of 2 more clients are dropped, so they stay in SYN_SENT (retransmitting for
	// two minutes). Then a listener that comes and goes, with 2 connections that close.
	c.serve(t, "-addr", "127.0.0.1:8003", "-no-accept-backlog", "0")
	c.hold(t, "-addr", "127.0.0.1:8003", "-n", "1")
	for range 2 {
		cmd := exec.Command("ip", "netns", "exec", c.name, tcploadBin, "connect", "-addr", "127.0.0.1:8003")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	gone := c.serve(t, "-addr", "127.0.0.1:8004", "-n", "2", "-close-first")
	if r := c.tcpload(t, "connect", "-addr", "127.0.0.1:8004", "-n", "2", "-close-first=server"); r.OK != 2 {
		t.Fatalf("2 connects: %+v", r)
	}
	gone.waitAccepted(t, 2)
	gone.halt()
	waitFor(t, 10*time.Second, "2 SYN_SENT in c", func() bool { return ssGaugeStates(t, c)["SYN_SENT"] == 2 })
	a.settle(t) // b's request sockets are SYN_RECV until the client sends data: settle would wait
	want = map[string]map[string]int{
		// 8 clients and 8 server ends held open; 10 client ends in TIME_WAIT.
		"a": {"LISTEN": 1, "ESTABLISHED": 16, "TIME_WAIT": 10},
		// The time-wait table: 4 orphaned FIN_WAIT2 server ends (ss: FIN-WAIT-2, timer timewait).
		"b": {"LISTEN": 2, "CLOSE_WAIT": 4, "TIME_WAIT": 4, "SYN_RECV": 3, "ESTABLISHED": 3},
		// The held connection (both ends, its server end in the accept queue), 2 SYN_SENT, and
		// the 2 connections the server closed first: their client ends in TIME_WAIT.
		"c": {"LISTEN": 1, "ESTABLISHED": 2, "SYN_SENT": 2, "TIME_WAIT": 2},
		"d": {"LISTEN": 1},
	}
	assertSocketGauges(t, exp, want, all, 4)

	assertWalkEqualsSs(t, walker, all)
	if after := ssStates(t, "ip", "netns", "exec", b.name, "ss", "-tanH"); after["FIN_WAIT2"] != 4 {
		t.Errorf("b: ss shows %d FIN_WAIT2, want the 4 orphaned server ends", after["FIN_WAIT2"])
	}
	if strings.Contains(walker.metrics(t), "sockscope_tcp_socket_walks_total") {
		t.Error("--sockets.walk exposes sockscope_tcp_socket_walks_total")
	}
	for range 2 * len(all) { // every namespace reconciled at least once, after the changes
		checked.metrics(t)
	}
	m := checked.metrics(t)
	if w := value(m, "sockscope_tcp_socket_walks_total"); w < float64(len(all)+2*len(all)) {
		t.Errorf("--sockets.reconcile=1ns: %v walks after %d scrapes, want at least %d", w, 2*len(all)+1, 3*len(all))
	}
	if c := value(m, "sockscope_tcp_socket_corrections_total"); c != 0 {
		t.Errorf("--sockets.reconcile=1ns: the walks corrected %v sockets of the gauges kept from the transitions, want 0", c)
	}
	checked.stop(t)
	walker.stop(t)
	exp.stop(t)
}

// assertSocketGauges compares each namespace's sockscope_tcp_sockets with what the test made
// and with ss in that namespace, at a scrape between two equal ss runs; and requires walks
// walks of the TCP tables in all, and no correction.
func assertSocketGauges(t *testing.T, exp *exportProc, want map[string]map[string]int, nss map[string]netns, walks float64) {
	t.Helper()
	for name, ns := range nss {
		for attempt := 0; ; attempt++ {
			before := ssGaugeStates(t, ns)
			m := exp.metrics(t)
			after := ssGaugeStates(t, ns)
			if fmt.Sprint(before) != fmt.Sprint(after) {
				if attempt == 5 {
					t.Fatalf("%s: ss kept changing: %v then %v", name, before, after)
				}
				continue
			}
			got := map[string]int{}
			for _, st := range []string{"ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
				"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"} {
				series := fmt.Sprintf(`sockscope_tcp_sockets{container=%q,namespace="",pod="",state=%q}`, name, st)
				v := value(m, series)
				if v < 0 {
					t.Fatalf("%s: no series %s in\n%s", name, series, m)
				}
				if v != 0 {
					got[st] = int(v)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(after) {
				t.Errorf("%s: sockscope_tcp_sockets = %v, ss shows %v", name, got, after)
			}
			if fmt.Sprint(got) != fmt.Sprint(want[name]) {
				t.Errorf("%s: sockscope_tcp_sockets = %v, the test made %v", name, got, want[name])
			}
			if w := value(m, "sockscope_tcp_socket_walks_total"); w != walks {
				t.Errorf("sockscope_tcp_socket_walks_total = %v, want %v (one per namespace)", w, walks)
			}
			if c := value(m, "sockscope_tcp_socket_corrections_total"); c != 0 {
				t.Errorf("sockscope_tcp_socket_corrections_total = %v, want 0", c)
			}
			break
		}
	}
}

// ssGaugeStates counts ns's sockets per state as ss -tano lists them, except that a FIN-WAIT-2
// socket with a timewait timer is an orphan that waits in the time-wait table: the gauges count
// it in TIME_WAIT, as the kernel's time-wait count does (README, sockscope export).
func ssGaugeStates(t *testing.T, ns netns) map[string]int {
	t.Helper()
	names := map[string]string{"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
		"FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT", "CLOSE-WAIT": "CLOSE_WAIT",
		"LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN", "CLOSING": "CLOSING"}
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(sh(t, "ip", "netns", "exec", ns.name, "ss", "-tanoH")), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		st, ok := names[f[0]]
		if !ok {
			t.Fatalf("ss state %q in %q", f[0], line)
		}
		if st == "FIN_WAIT2" && strings.Contains(line, "timer:(timewait") {
			st = "TIME_WAIT"
		}
		counts[st]++
	}
	return counts
}

// waitFor polls ok until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertWalkEqualsSs compares sockscope_tcp_sockets of an exporter run with --sockets.walk with
// ss -tan in each namespace, at a scrape between two equal ss runs.
func assertWalkEqualsSs(t *testing.T, walker *exportProc, nss map[string]netns) {
	t.Helper()
	for name, ns := range nss {
		for attempt := 0; ; attempt++ {
			before := ssStates(t, "ip", "netns", "exec", ns.name, "ss", "-tanH")
			m := walker.metrics(t)
			after := ssStates(t, "ip", "netns", "exec", ns.name, "ss", "-tanH")
			if fmt.Sprint(before) != fmt.Sprint(after) && attempt < 5 {
				continue
			}
			got := map[string]int{}
			for _, line := range strings.Split(m, "\n") {
				rest, ok := strings.CutPrefix(line, fmt.Sprintf(`sockscope_tcp_sockets{container=%q,namespace="",pod="",state="`, name))
				if !ok {
					continue
				}
				st, v, _ := strings.Cut(rest, `"} `)
				if v != "0" {
					got[st], _ = strconv.Atoi(v)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(after) {
				t.Errorf("--sockets.walk, %s: sockscope_tcp_sockets = %v, ss shows %v", name, got, after)
			}
			break
		}
	}
}
