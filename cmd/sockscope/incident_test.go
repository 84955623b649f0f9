package main

import (
	"maps"
	"math"
	"regexp"
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

	live := startTrace(t, "--netns", ns.path)
	rec, file := startRecord(t, "--netns", ns.path)
	exp := startExport(t, noDocker, "--host=false", "--netns", "t="+ns.path)
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

	// Then the durations: 200 more connects, with ports to spare, to another port. The
	// histogram's sum and trace's latencies measure the same interval (bpf/connect.h: from the
	// transition to SYN_SENT to the outcome, each program reading the clock at the same point),
	// so they agree within 5%. Only trace and the exporter are attached then: a program attached
	// between the two on the tracepoint (the recording's) runs inside one program's interval and
	// not the other's, and costs more at a connect's start than at its end (7% apart once, on a
	// busy machine).
	const timed = 200
	ns.sysctl(t, "net.ipv4.ip_local_port_range=32768 60999")
	srv2 := ns.serve(t, "-addr", "127.0.0.1:8001", "-n", strconv.Itoa(timed))
	if r := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8001", "-n", strconv.Itoa(timed)); r.OK != timed {
		t.Fatalf("timed connects: %+v, want %d ok", r, timed)
	}
	srv2.waitAccepted(t, timed)
	srv2.stop(t)
	_, timedCount, timedSum := connectsExposed(t, exp.metrics(t), "t")

	evs, _ := live.stop(t)
	replay := runSockscope(t, "trace", "-r", file, "-o", "json")
	if replay.code != 0 {
		t.Fatalf("trace -r: exit %d\n%s", replay.code, replay.stderr)
	}
	replayed := jsonLines[jsonEvent](t, replay.stdout)

	incident := func(e jsonEvent) bool { return e.Dport != 8001 }
	assertCounts(t, "live trace", connects(evs, incident), want)
	assertCounts(t, "exporter's sockscope_tcp_connects_total increase", exported, want)
	assertCounts(t, "trace -r of the recording", connects(replayed, incident), want)
	if !maps.Equal(connects(evs, incident), connects(replayed, nil)) {
		t.Errorf("live %v, replayed %v", connects(evs, incident), connects(replayed, nil))
	}

	if got := timedCount - afterCount; got != timed {
		t.Errorf("sockscope_tcp_connect_duration_seconds_count increased by %v over the timed connects, want %d", got, timed)
	}
	var traced float64
	n := 0
	for _, e := range evs {
		if e.Type == "connect" && e.Errno == "" && e.Dport == 8001 {
			traced += float64(e.LatencyNs) / 1e9
			n++
		}
	}
	exportedSum := timedSum - afterSum
	t.Logf("connect durations of %d connects: exporter %.3f µs, trace %.3f µs (%d connects)", timed, exportedSum*1e6, traced*1e6, n)
	if n != timed || traced <= 0 || math.Abs(exportedSum-traced) > 0.05*traced {
		t.Errorf("the exporter's connect durations sum to %.3f µs, trace's latencies of %d connects to %.3f µs: want within 5%%", exportedSum*1e6, n, traced*1e6)
	}
}
