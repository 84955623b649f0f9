package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/tools/internal/benchkit"
)

func TestParseSummary(t *testing.T) {
	s, ok := parseSummary("sockscope: 1203 events (1100 state, 103 connect), 7 lost")
	if !ok || *s != (summary{Events: 1203, State: 1100, Connect: 103, Lost: 7}) {
		t.Fatalf("got %+v %v", s, ok)
	}
	for _, bad := range []string{"sockscope: attached", "sockscope: 3 lost", ""} {
		if _, ok := parseSummary(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestStderrLog(t *testing.T) {
	l := &stderrLog{attachPrefix: "sockscope: attached", attached: make(chan struct{})}
	l.line("sockscope: loading", timeZero)
	l.line("sockscope: attached (netns 4026532)", timeZero)
	l.line("sockscope: ring buffer full, 12 events lost", timeZero)
	l.line("sockscope: 5 events (4 state, 1 connect), 12 lost", timeZero)
	select {
	case <-l.attached:
	default:
		t.Fatal("attached not seen")
	}
	if l.summary == nil || l.summary.Lost != 12 {
		t.Fatalf("summary %+v", l.summary)
	}
	if len(l.lost) != 1 || !strings.Contains(l.lost[0], "ring buffer") {
		t.Fatalf("lost lines %q", l.lost)
	}
}

func TestCountEvents(t *testing.T) {
	in := `{"type":"state","old":"CLOSE","new":"SYN_SENT"}
{"type": "state", "old":"SYN_SENT"}
{"type":"connect","errno":"ECONNREFUSED"}

{"comm":"x","type":"connect"}
not json
{"type":"other"}
` + `{"type":"state","pad":"` + strings.Repeat("x", 3<<20) + `"}` // longer than the reader's buffer, no final newline
	state, conn, other, err := countEventsReader(strings.NewReader(in))
	if err != nil || state != 3 || conn != 2 || other != 2 {
		t.Fatalf("state %d connect %d other %d err %v", state, conn, other, err)
	}
}

func TestCountBpftrace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out")
	os.WriteFile(p, []byte("Attaching 1 probe...\n12 7 2\n12 2 7\nLost 40 events\n\n13 10 3\nLost 2 events\n"), 0o644)
	ev, lost, other, err := countBpftrace(p)
	if err != nil || ev != 3 || lost != 42 || other != 1 {
		t.Fatalf("events %d lost %d other %d err %v", ev, lost, other, err)
	}
}

func TestProgStats(t *testing.T) {
	progs, err := parseBpftoolProgs([]byte(`[
	 {"id":7,"type":"tracing","name":"on_state","run_time_ns":5000,"run_cnt":10},
	 {"id":8,"type":"tracing","name":"on_state","run_time_ns":1000,"run_cnt":10},
	 {"id":9,"type":"tracepoint","name":"on_connect_exit","run_time_ns":300,"run_cnt":3},
	 {"id":10,"type":"tracing","name":"foreign"}]`))
	if err != nil {
		t.Fatal(err)
	}
	acc := map[string]*progStat{}
	if n := addProgStats(acc, progs, map[uint32]bool{7: true, 8: true, 9: true}); n != 3 {
		t.Fatalf("matched %d programs", n)
	}
	s := sortedStats(acc)
	if len(s) != 2 || s[0].Name != "on_state" || s[0].nsPerRun() != 300 || s[1].nsPerRun() != 100 {
		t.Fatalf("%+v", s)
	}
}

func TestProgIDsOfSelf(t *testing.T) {
	// This process holds no BPF programs; the scan must just come back empty.
	if ids := progIDsOf(os.Getpid()); len(ids) != 0 {
		t.Fatalf("ids %v", ids)
	}
}

func TestReport(t *testing.T) {
	b := &bench{cfg: config{rounds: 1, cpu: "0", sockscope: "/nonexistent"}, statsOrig: "0",
		foreign: map[string]map[uint32]bool{"on_state (tracing)": {1: true, 2: true}}}
	b.rounds = []*round{
		{Pair: 1, Mode: modeBaseline, Storm: benchkit.StormResult{PerSecond: 20000, Total: 120000}},
		{Pair: 1, Mode: modeSockscope, Storm: benchkit.StormResult{PerSecond: 19700, Total: 118000},
			AttachMS: 80, CPUMicros: 118000 * 4, MaxRSSKB: 20000, StateLines: 1180002, ConnLines: 118000,
			Summary: &summary{Lost: 0}},
	}
	b.statsRound = &round{Pair: 2, Mode: modeStats, Storm: benchkit.StormResult{PerSecond: 19000, Total: 118000},
		Progs: map[string]*progStat{"on_state": {Name: "on_state", RunTimeNS: 1180000 * 150, RunCnt: 1180000}}}
	rep, missed := b.report()
	if missed {
		t.Errorf("a target is reported missed:\n%s", rep)
	}
	for _, want := range []string{"| connections/s traced (median) | 19,700 (-1.5%)", "1,180,002 of 1,180,000", "| 4.00 µs", "on_state (tracing) ×2", "| on_state | 1,180,000 | 10.00 | 150 |"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	b.rounds[1].Summary = nil
	if _, missed := b.report(); !missed {
		t.Error("unknown lost count must count as missed")
	}
}

var timeZero time.Time

func TestStallsNoted(t *testing.T) {
	b := &bench{rounds: []*round{
		{Pair: 1, Mode: modeBaseline, Storm: benchkit.StormResult{MaxConnMS: 3}},
		{Pair: 1, Mode: modeSockscope, Storm: benchkit.StormResult{MaxConnMS: 4485.6}},
	}}
	if s := b.stalls(); !strings.Contains(s, "round 1 sockscope: 4486 ms") || strings.Contains(s, "baseline") {
		t.Errorf("stalls: %q", s)
	}
	b.rounds[1].Storm.MaxConnMS = 5
	if s := b.stalls(); s != "" {
		t.Errorf("stalls: %q", s)
	}
}
