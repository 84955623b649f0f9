package main

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// noDocker turns naming off: the tests that do not need a container runtime
// do not depend on it (the exporter warns once and counts the host and --netns namespaces).
const noDocker = "--runtime-endpoint=none"

// The incidents of a client netns, reproduced with exact counts: connects that succeed, that are
// refused (no listener), that fail with EADDRNOTAVAIL (four local ports, all in TIME_WAIT) and
// that time out against a listener whose accept queue is full (one SYN retransmit each). A real
// Prometheus scrapes sockscope every second; every number is asserted through its query API.
func TestExportCountsExactlyWhatANetnsDid(t *testing.T) {
	requirePrometheus(t)
	ns := newNetns(t)
	ns.sysctl(t, "net.ipv4.tcp_tw_reuse=0")
	// --bpf-stats: if a count falls short, the programs' run counts tell whether the kernel ran
	// them for the events (see the end of the checks).
	exp := startExport(t, noDocker, "--host=false", "--netns", "t="+ns.path, "--bpf-stats")
	remotes := startExport(t, noDocker, "--host=false", "--netns", "t="+ns.path, "--top-remotes", "1")
	prom := startPrometheus(t, scrapeJob{name: "sockscope", target: exp.addr})
	prom.waitFor(t, `sockscope_tcp_connects_total{container="t"}`, 30*time.Second,
		func(s []sample) bool { return len(s) == 6 && s[0].V == 0 })

	// Port exhaustion: four ports above the default range, tcp_tw_reuse off. (An even number: the
	// kernel's port search steps by two and may skip the last port of an odd-sized range.)
	srv := ns.serve(t, "-addr", "127.0.0.1:8000", "-n", "54")
	ns.sysctl(t, "net.ipv4.ip_local_port_range=61000 61003")
	r := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8000", "-n", "7")
	if r.OK != 4 || r.Errors["EADDRNOTAVAIL"] != 3 {
		t.Fatalf("port exhaustion setup: %+v, want 4 ok and 3 EADDRNOTAVAIL", r)
	}
	slow := r.Slow // connects that took 10 ms or more, as the client timed them
	ns.sysctl(t, "net.ipv4.ip_local_port_range=32768 60999")
	r = ns.tcpload(t, "connect", "-addr", "127.0.0.1:8000", "-n", "50")
	if r.OK != 50 {
		t.Fatalf("50 connects: %+v", r)
	}
	slow += r.Slow
	srv.waitAccepted(t, 4+50) // no reset from its accept queue
	if r := ns.tcpload(t, "connect", "-addr", "127.0.0.1:9", "-n", "7"); r.Errors["ECONNREFUSED"] != 7 {
		t.Fatalf("7 refused connects: %+v", r)
	}
	// A listener that never accepts, with backlog 0: the first connection fills its queue (and
	// stays, held by the client); later SYNs are dropped, so each of three clients retransmits
	// its SYN once (TCP_SYNCNT=1) and gives up with ETIMEDOUT after 3 s.
	ns.serve(t, "-addr", "127.0.0.1:8001", "-no-accept-backlog", "0")
	slow += ns.hold(t, "-addr", "127.0.0.1:8001", "-n", "1")
	var wg sync.WaitGroup
	errs := make([]string, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, _ := exec.Command("ip", "netns", "exec", ns.name, tcploadBin, "connect", "-addr", "127.0.0.1:8001", "-syncnt", "1").CombinedOutput()
			errs[i] = string(out)
		}()
	}
	wg.Wait()
	for _, out := range errs {
		if !strings.Contains(out, `"ETIMEDOUT":1`) {
			t.Fatalf("a connect to the full listener did not time out: %s", out)
		}
	}
	srv.stop(t)
	end := time.Now()
	if n := ns.nstat(t, "TcpRetransSegs"); n < 3 {
		t.Fatalf("TcpRetransSegs = %v: the SYNs to the full listener were not retransmitted", n)
	}
	// One per refused connect, and more where a late duplicate found its connection closed (a
	// slow guest's retransmitted FIN): each answers a segment that no socket wanted.
	if n := ns.nstat(t, "TcpOutRsts"); n < 7 {
		t.Fatalf("TcpOutRsts = %v, want at least 7 (one per refused connect)", n)
	}
	// Kernels before 6.10 trace only the resets that full sockets send (sockscope version and
	// the exporter say so), and this test's are all answers to segments no socket wanted.
	resetsSent := ns.nstat(t, "TcpOutRsts")
	if !kernelHas(t, "tcp_send_reset, every reset") {
		resetsSent = 0
	}

	const success = 4 + 50 + 1
	at := prom.scrapedAfter(t, `sockscope_tcp_connects_total{container="t",result="ETIMEDOUT"}`, end)
	// The success series started at 0 with the namespace, so increase() over a window that holds
	// its first sample, evaluated at its last sample, is exact: no extrapolation.
	for result, n := range map[string]float64{"success": success, "EADDRNOTAVAIL": 3, "ECONNREFUSED": 7, "ETIMEDOUT": 3} {
		q := fmt.Sprintf(`increase(sockscope_tcp_connects_total{container="t",result=%q}[10m])`, result)
		if got := prom.one(t, q, at); !near(got, n) {
			t.Errorf("%s = %v, want %v", q, got, n)
		}
	}
	want := map[string]float64{
		`sockscope_tcp_connects_total{container="t",result="success"}`:           success,
		`sockscope_tcp_connects_total{container="t",result="EADDRNOTAVAIL"}`:     3,
		`sockscope_tcp_connects_total{container="t",result="ECONNREFUSED"}`:      7,
		`sockscope_tcp_connects_total{container="t",result="ETIMEDOUT"}`:         3,
		`count(sockscope_tcp_connects_total{container="t"})`:                     6, // the four, ECONNABORTED and EHOSTUNREACH at 0
		`sockscope_tcp_connects_total{container="t",result="ECONNABORTED"}`:      0,
		`sockscope_tcp_connect_duration_seconds_count{container="t"}`:            success,
		`sockscope_tcp_connect_duration_seconds_bucket{container="t",le="+Inf"}`: success,
		// The kernel's own MIB counters of the netns are the ground truth: the SYN of a
		// TCP_SYNCNT=1 connect is sent again twice (at 1 s and 3 s) before ETIMEDOUT.
		`sockscope_tcp_retransmits_total{container="t"}`:                                        ns.nstat(t, "TcpRetransSegs"),
		`sockscope_tcp_resets_sent_total{container="t"}`:                                        resetsSent,
		`sockscope_tcp_resets_received_total{container="t"}`:                                    7,
		`sockscope_tcp_state_transitions_total{container="t",from="CLOSE",to="SYN_SENT"}`:       success + 3 + 7 + 3,
		`sockscope_tcp_state_transitions_total{container="t",from="SYN_SENT",to="ESTABLISHED"}`: success,
		`sockscope_tcp_state_transitions_total{container="t",from="SYN_SENT",to="CLOSE"}`:       3 + 7 + 3,
		`sockscope_tcp_ephemeral_ports{container="t"}`:                                          60999 - 32768 + 1,
		`sockscope_tcp_tw_reuse{container="t"}`:                                                 0,
		`sockscope_container_info{container="t",container_id="",image=""}`:                      1,
	}
	for q, w := range want {
		if got := prom.one(t, q, at); !near(got, w) {
			t.Errorf("%s = %v, want %v", q, got, w)
		}
	}
	if t.Failed() {
		logRunsAgainstKernelCounts(t, prom, ns, at)
	}
	// Loopback handshakes take microseconds: all below 10 ms. The kernel times the handshake
	// inside the client's connect() call, so each connect the client timed under 10 ms is in this
	// bucket, and only those the client saw take longer (a guest's vCPU descheduled under qemu's
	// TCG) may be missing from it: exact when the client saw none.
	if got := prom.one(t, `sockscope_tcp_connect_duration_seconds_bucket{container="t",le="0.01"}`, at); got < float64(success-slow)-0.001 || got > success+0.001 {
		t.Errorf("connects faster than 10 ms: %v, want %d (%d of them took 10 ms or more as the client timed them)", got, success, slow)
	} else if slow > 0 {
		t.Logf("connects faster than 10 ms: %v of %d; the client timed %d at 10 ms or more", got, success, slow)
	}

	// The socket gauges equal ss in the netns, state by state, at a scrape between two equal ss runs.
	assertGaugesEqualSs(t, prom, "t", "ip", "netns", "exec", ns.name, "ss", "-tanH")

	// --top-remotes 1: the busiest destination by state, the rest in "other", as ss shows them.
	assertRemotesEqualSs(t, remotes, ns)
	remotes.stop(t)

	// The exposition passes promtool's checks.
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(exp.metrics(t))
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	exp.stop(t)
}

// logRunsAgainstKernelCounts says, after a count fell short, how often the kernel ran the programs
// behind the timer's events: count_retransmit against the namespace's TcpRetransSegs. The run
// counts are the host's (every namespace's, and on newer kernels the retransmits that failed to be
// sent too), so fewer runs than the namespace's own segments means that the kernel ran no BPF
// program for some of them, with no recursion miss (docs/performance.md, "Timer events short
// too"); more runs tell nothing either way.
func logRunsAgainstKernelCounts(t *testing.T, prom *promServer, ns netns, at float64) {
	t.Helper()
	prom.logSeries(t, at, `sockscope_bpf_program_runs_total`, `sockscope_lost_events_total`, `sockscope_bpf_stats_enabled`)
	runs := prom.query(t, `sockscope_bpf_program_runs_total{program="count_retransmit"}`, at)
	if segs := ns.nstat(t, "TcpRetransSegs"); len(runs) == 1 && runs[0].V < segs {
		t.Logf("count_retransmit ran %v times on the whole host, fewer than the %v segments the namespace retransmitted: the kernel ran no BPF program for %v of them", runs[0].V, segs, segs-runs[0].V)
	}
}

// assertGaugesEqualSs compares sockscope_tcp_sockets{container} with ss's counts per state, at a
// scrape taken while ss showed the same counts before and after.
func assertGaugesEqualSs(t *testing.T, prom *promServer, container string, ssCmd ...string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		before := ssStates(t, ssCmd...)
		at := prom.scrapedAfter(t, fmt.Sprintf(`sockscope_tcp_sockets{container=%q,state="TIME_WAIT"}`, container), time.Now())
		after := ssStates(t, ssCmd...)
		if fmt.Sprint(before) != fmt.Sprint(after) {
			if attempt == 5 {
				t.Fatalf("ss kept changing: %v then %v", before, after)
			}
			continue
		}
		got := map[string]int{}
		for _, s := range prom.query(t, fmt.Sprintf(`sockscope_tcp_sockets{container=%q}`, container), at) {
			if s.V != 0 {
				got[s.Metric["state"]] = int(s.V)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(after) {
			t.Errorf("sockscope_tcp_sockets{container=%q} = %v, ss shows %v", container, got, after)
			// What the gauges were kept from, to tell a lost transition from a wrong base.
			prom.logSeries(t, at, fmt.Sprintf(`sockscope_tcp_state_transitions_total{container=%q}`, container),
				`sockscope_lost_events_total`, `sockscope_tcp_socket_walks_total`, `sockscope_tcp_socket_corrections_total`)
		}
		if after["TIME_WAIT"] == 0 && container == "t" {
			t.Errorf("no TIME_WAIT socket to compare")
		}
		return
	}
}

// nstat returns one of the kernel's SNMP counters of ns (absolute, since the netns was made).
func (ns netns) nstat(t *testing.T, name string) float64 {
	t.Helper()
	out := sh(t, "ip", "netns", "exec", ns.name, "nstat", "-asz", name)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("nstat %s: %q", name, line)
			}
			return v
		}
	}
	t.Fatalf("nstat: no %s in\n%s", name, out)
	return 0
}

// assertRemotesEqualSs compares sockscope_tcp_remote_sockets{container="t"} of an exporter run
// with --top-remotes 1 with ss's sockets by peer and state (listeners left out).
func assertRemotesEqualSs(t *testing.T, e *exportProc, ns netns) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		before := ssTuples(t, ns)
		m := e.metrics(t)
		after := ssTuples(t, ns)
		if fmt.Sprint(before) != fmt.Sprint(after) {
			if attempt == 5 {
				t.Fatalf("ss kept changing")
			}
			continue
		}
		byPeer := map[string]map[string]int{}
		total := map[string]int{}
		for _, tuple := range after {
			f := strings.Fields(tuple) // STATE local peer
			if f[0] == "LISTEN" {
				continue
			}
			if byPeer[f[2]] == nil {
				byPeer[f[2]] = map[string]int{}
			}
			byPeer[f[2]][f[0]]++
			total[f[2]]++
		}
		top := ""
		for peer := range byPeer {
			if top == "" || total[peer] > total[top] || (total[peer] == total[top] && peer < top) {
				top = peer
			}
		}
		want := map[string]int{}
		for peer, states := range byPeer {
			name := "other"
			if peer == top {
				name = peer
			}
			for st, n := range states {
				want[name+" "+st] += n
			}
		}
		got := map[string]int{}
		for _, line := range strings.Split(m, "\n") {
			rest, ok := strings.CutPrefix(line, `sockscope_tcp_remote_sockets{container="t",namespace="",pod="",remote="`)
			if !ok {
				continue
			}
			remote, rest, _ := strings.Cut(rest, `",state="`)
			st, v, _ := strings.Cut(rest, `"} `)
			n, _ := strconv.Atoi(v)
			got[remote+" "+st] = n
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("sockscope_tcp_remote_sockets = %v, ss shows %v", got, want)
		}
		if top != "127.0.0.1:8000" {
			t.Errorf("busiest peer per ss: %s, want 127.0.0.1:8000 (the TIME_WAIT sockets)", top)
		}
		return
	}
}
