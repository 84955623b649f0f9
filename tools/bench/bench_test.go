package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/recording"
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

func TestParseRecSummary(t *testing.T) {
	s, ok := parseRecSummary("sockscope: recorded 1000002 events and 3 socket snapshots (5 lost) to /tmp/x.scope")
	if !ok || *s != (recSummary{Events: 1000002, Snapshots: 3, Lost: 5}) {
		t.Fatalf("got %+v %v", s, ok)
	}
	for _, bad := range []string{"sockscope: attached, recording x to y", "sockscope: 5 events (4 state, 1 connect), 0 lost", ""} {
		if _, ok := parseRecSummary(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
	l := &stderrLog{attachPrefix: "sockscope: attached", attached: make(chan struct{})}
	l.line("sockscope: attached, recording /run/netns/x to /tmp/f (Ctrl-C to stop)", timeZero)
	l.line("sockscope: recorded 12 events and 2 socket snapshots (0 lost) to /tmp/f", timeZero)
	if l.recSummary == nil || l.recSummary.Events != 12 || l.summary != nil || len(l.lost) != 0 {
		t.Fatalf("record summary %+v, trace summary %+v, lost lines %q", l.recSummary, l.summary, l.lost)
	}
}

func TestCountLinesPaired(t *testing.T) {
	// One record concluding a connect (state + connect lines), a state-only record, and a
	// connect-only record (a failed connect without a transition) after a state line of another socket.
	in := `{"time":"T1","type":"state","netns":1,"sport":5,"old_state":"SYN_SENT","new_state":"ESTABLISHED","prev_state_us":12,"errno":"","latency_us":0}
{"time":"T1","type":"connect","netns":1,"sport":5,"old_state":"SYN_SENT","new_state":"ESTABLISHED","prev_state_us":0,"errno":"","latency_us":40}
{"time":"T2","type":"state","netns":1,"sport":6,"old_state":"CLOSE","new_state":"SYN_SENT","prev_state_us":0,"errno":"","latency_us":0}
{"time":"T2","type":"connect","netns":1,"sport":0,"old_state":"UNKNOWN","new_state":"UNKNOWN","prev_state_us":0,"errno":"ENETUNREACH","latency_us":3}
{"time":"T3","type":"connect","netns":1,"sport":5,"old_state":"SYN_SENT","new_state":"ESTABLISHED","prev_state_us":0,"errno":"","latency_us":40}
`
	n, err := countLines(strings.NewReader(in))
	if err != nil || n != (lineCounts{State: 2, Connect: 3, Paired: 1}) {
		t.Fatalf("%+v %v", n, err)
	}
	r := &round{StateLines: n.State, ConnLines: n.Connect, PairedLines: n.Paired}
	if r.ringRecords() != 4 {
		t.Fatalf("ring records %d", r.ringRecords())
	}
}

func TestRecordModes(t *testing.T) {
	for flag, want := range map[string]int{"both": 2, "on": 1, "off": 0} {
		if m, err := recordModes(flag); err != nil || len(m) != want {
			t.Errorf("%s: %v %v", flag, m, err)
		}
	}
	if _, err := recordModes("yes"); err == nil {
		t.Error("accepted -record yes")
	}
	m := []string{"a", "b", "c"}
	if got := strings.Join(rotate(m, 4), ""); got != "bca" {
		t.Errorf("rotate: %s", got)
	}
	if got := strings.Join(rotate(m[:1], 3), ""); got != "a" {
		t.Errorf("rotate one: %s", got)
	}
	if expectedRecords(100) != 1002 {
		t.Errorf("expected records %d", expectedRecords(100))
	}
}

func TestReadRecording(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := recording.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(kind events.Kind) []byte {
		b := make([]byte, events.RecordSize)
		b[91] = byte(kind)
		return b
	}
	var evs []byte
	for _, k := range []events.Kind{events.KindState, events.KindState | events.KindConnect, events.KindConnect, events.KindState} {
		evs = append(evs, rec(k)...)
	}
	w.WriteBlock(recording.BlockMeta, 1, []byte(`{}`))
	w.WriteBlock(recording.BlockEvents, 2, evs[:2*events.RecordSize])
	w.WriteBlock(recording.BlockSockets, 3, make([]byte, 8))
	w.WriteBlock(recording.BlockEvents, 4, evs[2*events.RecordSize:])
	w.WriteBlock(recording.BlockEnd, 5, []byte(`{}`))
	f.Close()
	rf, err := readRecording(path)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if rf.Bytes != st.Size() || rf.Events != 4 || rf.State != 3 || rf.Connect != 2 || rf.Snapshots != 1 || !rf.Complete ||
		rf.SocketBytes != recording.BlockSize(8) || rf.EventBytes <= 0 || rf.EventBytes > st.Size() {
		t.Fatalf("%+v (file %d bytes)", rf, st.Size())
	}
	os.WriteFile(path, []byte("not a recording"), 0o644)
	if _, err := readRecording(path); err == nil {
		t.Error("read a file that is not a recording")
	}
}

func TestReportRecord(t *testing.T) {
	b := &bench{cfg: config{rounds: 2, cpu: "0", sockscope: "/nonexistent"}, foreign: map[string]map[uint32]bool{}}
	recRound := func(pair int, mode string, rate float64, total int64, cpu float64) *round {
		ev := expectedRecords(total)
		return &round{Pair: pair, Mode: mode, Storm: benchkit.StormResult{PerSecond: rate, Total: total},
			AttachMS: 90, AttachCPU: 102, CPUMicros: cpu * float64(total), MaxRSSKB: 25000,
			Rec:  &recSummary{Events: ev, Snapshots: 3},
			File: recFile{Bytes: ev * 40, Events: ev, State: ev, Connect: total, EventBytes: ev * 30, Snapshots: 3, SocketBytes: ev * 8, Complete: true}}
	}
	for pair := 1; pair <= 2; pair++ {
		b.rounds = append(b.rounds,
			&round{Pair: pair, Mode: modeBaseline, Storm: benchkit.StormResult{PerSecond: 20000, Total: 120000}},
			&round{Pair: pair, Mode: modeSockscope, Storm: benchkit.StormResult{PerSecond: 18000, Total: 108000},
				AttachMS: 60, AttachCPU: 54, CPUMicros: 108000 * 6, MaxRSSKB: 24000, StateLines: 1080002, ConnLines: 108000, PairedLines: 108000,
				Summary: &summary{Lost: 0}},
			recRound(pair, modeRecord, 17000, 102000, 7.5),
			recRound(pair, modeRecordNoSys, 18200, 109200, 5.5),
		)
	}
	b.statsRound = &round{Mode: modeStats, Storm: benchkit.StormResult{Total: 100000},
		Progs: map[string]*progStat{"on_state": {Name: "on_state", RunTimeNS: 400e6, RunCnt: 1000000}}}
	b.recStatsRound = &round{Mode: modeRecordStats, Storm: benchkit.StormResult{Total: 100000},
		Progs: map[string]*progStat{"on_state": {Name: "on_state", RunTimeNS: 400e6, RunCnt: 1000000},
			"sys_exit": {Name: "sys_exit", RunTimeNS: 150e6, RunCnt: 1500000}}}
	rep, missed := b.report()
	if !missed {
		t.Errorf("record slower than trace is not reported missed:\n%s", rep)
	}
	for _, want := range []string{
		"### `sockscope trace` and `sockscope record` benchmark",
		"**Recording overhead (target: no more than trace mode): missed by 5.6% fewer connections/s than trace and +1.50 µs CPU per connection (+25%).**",
		"kept 0.850x of its pairs' baseline connections/s against 0.900x under trace",
		"Without syscall counters (`sockscope record --syscalls=false`): 0.910x and 5.50 µs per connection, met (1.1% more connections/s than trace, -0.50 µs CPU per connection (-8%)).",
		"| `sockscope record`: connections/s vs trace (median ratio to the pair's baseline) | 0.850x vs 0.900x: 0.944x of trace (-5.6%) | ≥ trace | **no** |",
		"| `sockscope record`: CPU per connection vs trace (median) | 7.50 vs 6.00 µs (+1.50 µs, +25%) | ≤ trace | **no** |",
		"| `sockscope record`: events recorded | 2,040,004 of 2,040,004 ring records (10 per connection + 2 per storm); the files hold the same | all, exactly | yes |",
		"| `sockscope record --syscalls=false`: lost events (its summary) | 0 | 0 | yes |",
		"| `sockscope trace` | 18,000 | 0.900x (0.900–0.900) |  | 6.00 |  | 54 | 5.50 | 24.6 | 60 | 0 | 2,160,004 (2,160,004) |  |  |",
		"| `sockscope record` | 17,000 | 0.850x (0.850–0.850) | 0.944x | 7.50 | +1.50 µs | 102 | 6.50 | 25.6 | 90 | 0 | 2,040,004 (2,040,004) | 81,600,160 | 40.0 |",
		"| 2 | record --syscalls=false | 18,200 | 0.910x | 109,200 | 1,092,002 (1,092,002) | 1,092,002 (1,092,002, 109,200) | 0 | 5.50 | 102 | 25.6 | 90 | 43,680,080 | 40.0 | 3 |",
		"Of that CPU, 102 ms against 54 ms went to loading and attaching before the `attached` line; after it, 6.50 against 5.50 µs per connection (+1.00 µs).",
		"Its BPF programs ran 5.50 µs per connection in the storm's own context against 4.00 µs for trace (statistics rounds).",
		"| `sockscope record`: BPF run time per connection (its statistics round) | 5.50 µs (trace: 4.00 µs) | | |",
		"BPF programs of `sockscope record` (its statistics round, 100,000 connections):",
		"| sys_exit | 1,500,000 | 15.00 | 100 |",
		"the events blocks take 30.0 bytes per event as stored",
		"(here 216,000 of its connect lines did)",
		"| 1 | sockscope | 18,000 | 0.900x | 108,000 | 1,080,002 (1,080,000) | 108,000 | 0 | 6.00 | 24.6 | 60 |",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}

	// Recording as cheap as trace, but one event short: missed on the events row only.
	for _, r := range b.rounds {
		if isRecord(r.Mode) {
			r.Storm.PerSecond, r.CPUMicros = 18000, 6*float64(r.Storm.Total)
		}
	}
	b.rounds[2].Rec.Events--
	b.rounds[3].Rec.Lost, b.rounds[3].Rec.Events, b.rounds[3].File.Events = 7, b.rounds[3].Rec.Events-7, b.rounds[3].File.Events-7
	rep, missed = b.report()
	if !missed || !strings.Contains(rep, "trace mode): met (as many connections/s as trace, +0.00 µs CPU per connection (+0%)).**") ||
		!strings.Contains(rep, "| `sockscope record`: events recorded | 2,040,003 of 2,040,004 ring records") ||
		!strings.Contains(rep, "`sockscope record` events minus the expected ring records: -1.") ||
		!strings.Contains(rep, "the events in a file differ from its summary line's count") ||
		!strings.Contains(rep, "`sockscope record --syscalls=false` events minus the expected ring records: -7, exactly its 7 lost events") ||
		!strings.Contains(rep, "| `sockscope record --syscalls=false`: lost events (its summary) | 7 | 0 | **no** |") {
		t.Errorf("missed %v:\n%s", missed, rep)
	}
	b.rounds[2].Rec = nil
	if rep, missed = b.report(); !missed || !strings.Contains(rep, "| `sockscope record`: lost events (its summary) | unknown (no summary line) | 0 | ? |") {
		t.Errorf("unknown record summary: missed %v:\n%s", missed, rep)
	}
}

func TestReportTraceOnly(t *testing.T) {
	// -record off: the trace report as before, without recording parts.
	b := &bench{cfg: config{rounds: 1, cpu: "0", sockscope: "/nonexistent"}, foreign: map[string]map[uint32]bool{}}
	b.rounds = []*round{
		{Pair: 1, Mode: modeBaseline, Storm: benchkit.StormResult{PerSecond: 20000, Total: 120000}},
		{Pair: 1, Mode: modeSockscope, Storm: benchkit.StormResult{PerSecond: 19900, Total: 118000},
			AttachMS: 80, CPUMicros: 118000 * 4, MaxRSSKB: 20000, StateLines: 1180002, ConnLines: 118000, Summary: &summary{}},
	}
	rep, missed := b.report()
	if missed || !strings.HasPrefix(rep, "### `sockscope trace` benchmark\n") || strings.Contains(rep, "record") || strings.Contains(rep, "Ring records") {
		t.Errorf("missed %v:\n%s", missed, rep)
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "4242 (sock scope) S 1 4242 4242 0 -1 4194560 1234 0 0 0 57 13 0 0 20 0 9 0 100 0 0"
	if got := parseStatCPU(stat); got != 700 {
		t.Errorf("got %v ms, want 700", got)
	}
	if got := parseStatCPU("garbage"); got != -1 {
		t.Errorf("garbage: %v", got)
	}
	if got := cpuMillis(os.Getpid()); got < 0 {
		t.Errorf("own CPU: %v", got)
	}
	r := &round{Storm: benchkit.StormResult{Total: 1000}, CPUMicros: 5000, AttachCPU: 2}
	if got := r.cpuAfterAttach(); got != 3 {
		t.Errorf("cpu after attach %v", got)
	}
}
