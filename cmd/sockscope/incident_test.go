package main

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// connectsExposed reads the exporter's connect outcomes of one container from an exposition, by
// result as trace names them ("" for success), and its connect-duration histogram's count and sum.
func connectsExposed(t *testing.T, exposition, container string) (results map[string]float64, count, sum float64) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^(sockscope_tcp_connects_total|sockscope_tcp_connect_duration_seconds_count|sockscope_tcp_connect_duration_seconds_sum)\{([^}]*)\} (\S+)$`)
	results = map[string]float64{}
	for _, m := range re.FindAllStringSubmatch(exposition, -1) {
		if !regexp.MustCompile(`(^|,)container="` + regexp.QuoteMeta(container) + `"`).MatchString(m[2]) {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("bad value in %q", m[0])
		}
		switch m[1] {
		case "sockscope_tcp_connect_duration_seconds_count":
			count += v
		case "sockscope_tcp_connect_duration_seconds_sum":
			sum += v
		default:
			r := regexp.MustCompile(`result="([^"]*)"`).FindStringSubmatch(m[2])
			if r == nil {
				t.Fatalf("connects series without a result: %q", m[0])
			}
			if r[1] == "success" {
				r[1] = ""
			}
			results[r[1]] += v
		}
	}
	return results, count, sum
}

// One incident, one truth: a client runs out of local ports (a 4-port range, tcp_tw_reuse off: 7
// connects, 4 succeed and 3 fail with EADDRNOTAVAIL) and then connects 5 times to a closed port
// (ECONNREFUSED). The live trace, the exporter's counters and the replay of a recording made at
// the same time all come from one definition of a connect's outcome (bpf/connect.h), so they must
// all say exactly {ok: 4, EADDRNOTAVAIL: 3, ECONNREFUSED: 5}; and the exporter's connect-duration
// histogram counts the 4 successes.
func TestOneIncidentGivesTheSameConnectOutcomesInTraceExportAndRecord(t *testing.T) {
	requireTracing(t)
	const ok, exhausted, refused = 4, 3, 5
	want := map[string]int{"": ok, "EADDRNOTAVAIL": exhausted, "ECONNREFUSED": refused}

	ns := newNetns(t)
	ns.sysctl(t, "net.ipv4.tcp_tw_reuse=0") // the default (2) reuses TIME_WAIT ports on loopback
	srv := ns.serve(t, "-addr", "127.0.0.1:8000", "-n", strconv.Itoa(ok))
	// An even number of ports: the kernel's port search steps by two and may skip the last port
	// of an odd-sized range.
	ns.sysctl(t, "net.ipv4.ip_local_port_range=61000 61003")

	// The exporter attaches first: its programs run first on the tracepoint (see the durations).
	exp := startExport(t, noDocker, "--host=false", "--netns", "t="+ns.path)
	live := startTrace(t, "--netns", ns.path)
	rec, file := startRecord(t, "--netns", ns.path)
	before, beforeCount, _ := connectsExposed(t, exp.metrics(t), "t")
	if _, ok := before[""]; !ok {
		t.Fatalf("the exporter shows no sockscope_tcp_connects_total{container=\"t\",result=\"success\"}:\n%s", exp.metrics(t))
	}

	r := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8000", "-n", strconv.Itoa(ok+exhausted))
	if r.OK != ok || r.Errors["EADDRNOTAVAIL"] != exhausted || len(r.Errors) != 1 {
		t.Fatalf("port exhaustion: %+v, want %d ok and %d EADDRNOTAVAIL", r, ok, exhausted)
	}
	srv.waitAccepted(t, ok) // no connection reset from the accept queue
	if r := ns.tcpload(t, "connect", "-addr", "127.0.0.1:9", "-n", strconv.Itoa(refused)); r.Errors["ECONNREFUSED"] != refused || r.OK != 0 {
		t.Fatalf("connects to a closed port: %+v, want %d ECONNREFUSED", r, refused)
	}
	srv.stop(t)

	// Every outcome was decided before tcpload returned: the counters hold them all now.
	after, afterCount, afterSum := connectsExposed(t, exp.metrics(t), "t")
	exported := map[string]int{}
	for result, v := range after {
		if d := v - before[result]; d != 0 {
			exported[result] = int(d)
		}
	}
	// The histogram counts the successful connects.
	if got := afterCount - beforeCount; got != ok {
		t.Errorf("sockscope_tcp_connect_duration_seconds_count increased by %v, want %d", got, ok)
	}

	// The recording holds the incident; it stops before the timed connects below.
	stopRecord(t, rec)

	// Then the durations: three rounds of 200 more connects, with ports to spare, each to a port
	// of its own. The histogram's sum and trace's latencies measure the same interval
	// (bpf/connect.h: from the transition to SYN_SENT to the outcome). Only trace and the
	// exporter are attached then: a program attached between the two on the tracepoint (the
	// recording's) runs inside one program's interval and not the other's. The two still run one
	// after the other on each transition, so the exporter attached first, and reads the clock last
	// in its program, and trace reads it first in its own: the two reads are then as close as two
	// programs allow. (In the other order, a loopback connect of about 7 µs measured 4-8% apart
	// here: trace's program takes about 0.5 µs longer at a connect's start, in memory that is
	// cold after the syscall's entry, than at its end.) An interrupt that runs between the two
	// programs moves one connect; on a busy machine one round of 200 was once 45% apart for it,
	// so the median round is held to 5%, and every count is exact.
	const timed, rounds = 200, 3
	ns.sysctl(t, "net.ipv4.ip_local_port_range=32768 60999")
	var exportedSums [rounds]float64
	sumBefore, countBefore := afterSum, afterCount
	for r := range rounds {
		addr := fmt.Sprintf("127.0.0.1:%d", 8001+r)
		srv2 := ns.serve(t, "-addr", addr, "-n", strconv.Itoa(timed))
		if res := ns.tcpload(t, "connect", "-addr", addr, "-n", strconv.Itoa(timed)); res.OK != timed {
			t.Fatalf("timed connects: %+v, want %d ok", res, timed)
		}
		srv2.waitAccepted(t, timed)
		srv2.stop(t)
		_, count, sum := connectsExposed(t, exp.metrics(t), "t")
		if got := count - countBefore; got != timed {
			t.Errorf("round %d: sockscope_tcp_connect_duration_seconds_count increased by %v, want %d", r+1, got, timed)
		}
		exportedSums[r] = sum - sumBefore
		sumBefore, countBefore = sum, count
	}

	evs, _ := live.stop(t)
	replay := runSockscope(t, "trace", "-r", file, "-o", "json")
	if replay.code != 0 {
		t.Fatalf("trace -r: exit %d\n%s", replay.code, replay.stderr)
	}
	replayed := jsonLines[jsonEvent](t, replay.stdout)

	incident := func(e jsonEvent) bool { return e.Dport < 8001 || e.Dport >= 8001+rounds }
	assertCounts(t, "live trace", connects(evs, incident), want)
	assertCounts(t, "exporter's sockscope_tcp_connects_total increase", exported, want)
	assertCounts(t, "trace -r of the recording", connects(replayed, incident), want)
	if !maps.Equal(connects(evs, incident), connects(replayed, nil)) {
		t.Errorf("live %v, replayed %v", connects(evs, incident), connects(replayed, nil))
	}

	var ratios []float64
	for r := range rounds {
		var traced float64
		n := 0
		for _, e := range evs {
			if e.Type == "connect" && e.Errno == "" && e.Dport == 8001+r {
				traced += float64(e.LatencyNs) / 1e9
				n++
			}
		}
		t.Logf("round %d: connect durations of %d connects: exporter %.3f µs, trace %.3f µs (%d connects)", r+1, timed, exportedSums[r]*1e6, traced*1e6, n)
		if n != timed || traced <= 0 {
			t.Fatalf("round %d: trace saw %d successful connects, want %d", r+1, n, timed)
		}
		ratios = append(ratios, exportedSums[r]/traced)
	}
	slices.Sort(ratios)
	if median := ratios[rounds/2]; math.Abs(median-1) > 0.05 {
		t.Errorf("the exporter's connect durations against trace's latencies, by round: %.3f; the median round is %.1f%% apart, want within 5%%", ratios, 100*math.Abs(median-1))
	}
}
