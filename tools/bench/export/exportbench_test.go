package main

import (
	"math"
	"strings"
	"testing"
)

func TestParseExposition(t *testing.T) {
	in := `# HELP sockscope_tcp_sockets TCP sockets by state.
# TYPE sockscope_tcp_sockets gauge
sockscope_tcp_sockets{container="host",state="TIME_WAIT"} 30012
sockscope_tcp_sockets{container="web,db",state="TIME_WAIT"} 5
sockscope_tcp_sockets{container="host",state="LISTEN"} 2

sockscope_scrape_duration_seconds 0.008163309
sockscope_tcp_connect_duration_seconds_bucket{container="host",le="+Inf"} 1
process_virtual_memory_max_bytes 1.8446744073709552e+19
odd{a="x\"y\\z\nw", b = "}" ,} 3 1700000000000
`
	m, err := parseExposition(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 7 {
		t.Fatalf("%d samples: %+v", len(m), m)
	}
	ms := metrics(m)
	if v := ms.value("sockscope_tcp_sockets", "state", "TIME_WAIT"); v != 30017 {
		t.Errorf("TIME_WAIT sum %v", v)
	}
	if v := ms.value("sockscope_tcp_sockets", "container", "host"); v != 30014 {
		t.Errorf("host sum %v", v)
	}
	if v, ok := ms.sum("sockscope_tcp_sockets", "container", "nope"); ok || v != 0 {
		t.Errorf("no match: %v %v", v, ok)
	}
	if v := ms.value("sockscope_scrape_duration_seconds"); v != 0.008163309 {
		t.Errorf("scrape duration %v", v)
	}
	if got := ms.byLabel("sockscope_tcp_sockets", "container"); got["host"] != 30014 || got["web,db"] != 5 {
		t.Errorf("byLabel %v", got)
	}
	odd := m[6]
	if odd.Name != "odd" || odd.Labels["a"] != "x\"y\\z\nw" || odd.Labels["b"] != "}" || odd.Value != 3 {
		t.Errorf("escapes: %+v", odd)
	}
	if m[4].Labels["le"] != "+Inf" || m[5].Value != 1.8446744073709552e+19 {
		t.Errorf("%+v %+v", m[4], m[5])
	}
}

func TestParseSampleLineRejects(t *testing.T) {
	for _, bad := range []string{
		`novalue`,
		`x{a="b"`,
		`x{a="b} 1`,
		`x{a=b} 1`,
		`x{a="b"} one`,
		`x 1 2 3`,
	} {
		if s, err := parseSampleLine(bad); err == nil {
			t.Errorf("%q parsed as %+v", bad, s)
		}
	}
	s, err := parseSampleLine(`x NaN`)
	if err != nil || !math.IsNaN(s.Value) {
		t.Errorf("NaN: %+v %v", s, err)
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a parenthesis; utime 250, stime 75 ticks.
	stat := "4242 (sock scope) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 123 1000000 5000 18446744073709551615"
	v, err := parseStatCPU(stat)
	if err != nil || v != 3.25 {
		t.Fatalf("got %v %v", v, err)
	}
	if _, err := parseStatCPU("4242 (x) S 1 2"); err == nil {
		t.Fatal("short stat parsed")
	}
}

func TestParseStatus(t *testing.T) {
	s := parseStatus("Name:\tsockscope\nVmHWM:\t   31000 kB\nVmRSS:\t   24512 kB\nThreads:\t9\nSigQ:\t0/1\n")
	if s.RSSKB != 24512 || s.HWMKB != 31000 || s.Threads != 9 {
		t.Fatalf("%+v", s)
	}
}

func TestPercentile(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(100 - i) // 100..1
	}
	for _, c := range []struct{ p, want float64 }{{50, 50}, {99, 99}, {100, 100}, {0, 1}, {1, 1}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("p%v of 1..100 = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(v[:50], 99); got != 100 { // nearest rank of 50: the largest
		t.Errorf("p99 of 50 = %v", got)
	}
}

func TestParseDumpNetns(t *testing.T) {
	in := `[{"key":["0x55","0x01","0x00","0xf0","0x01","0x00","0x02","0x07"],"values":[]},` +
		`{"key":["0xf9","0xff","0xff","0xef"],"value":["0x01"]}]`
	ns, err := parseDumpNetns([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 2 || ns[0] != 4026532181 || ns[1] != 4026531833 {
		t.Fatalf("%v", ns)
	}
	if _, err := parseDumpNetns([]byte(`[{"key":["0x01"]}]`)); err == nil {
		t.Fatal("short key parsed")
	}
}

func TestSpliceReport(t *testing.T) {
	if got := spliceReport("", "R\n"); got != "R\n" {
		t.Errorf("no file: %q", got)
	}
	if got := spliceReport("hand-written\n", "R\n"); got != "R\n" {
		t.Errorf("no markers: %q", got)
	}
	old := "# Title\n\n" + beginMarker + "\nold report\n" + endMarker + "\n\nAnalysis.\n"
	want := "# Title\n\n" + beginMarker + "\nnew report\n" + endMarker + "\n\nAnalysis.\n"
	if got := spliceReport(old, "new report\n"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
