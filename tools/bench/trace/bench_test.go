package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/recording"
	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
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

// A run with every kind of mode: the floors, trace and record, judged against the floor of
// their own round.
func TestReport(t *testing.T) {
	b := &bench{cfg: config{rounds: 2, cpu: "0", sockscope: "/nonexistent", floors: "state,writer"}, statsOrig: "0",
		foreign: map[string]map[uint32]bool{"on_state (tracing)": {1: true, 2: true}}}
	for pair := 1; pair <= 2; pair++ {
		rec := expectedRecords(98000)
		b.rounds = append(b.rounds,
			&round{Pair: pair, Mode: modeBaseline, Storm: benchkit.StormResult{PerSecond: 20000, Total: 120000, CPUMicros: 120000 * 17}},
			&round{Pair: pair, Mode: modeFloorState, Storm: benchkit.StormResult{PerSecond: 19600, Total: 118000, CPUMicros: 118000 * 18}},
			&round{Pair: pair, Mode: modeFloorWriter, Storm: benchkit.StormResult{PerSecond: 19000, Total: 114000}, FloorRecords: expectedRecords(114000) + 5},
			&round{Pair: pair, Mode: modeSockscope, Storm: benchkit.StormResult{PerSecond: 19208, Total: 118000},
				AttachMS: 80, CPUMicros: 118000 * 4, MaxRSSKB: 20000, StateLines: expectedRecords(118000), ConnLines: 118000, PairedLines: 118000,
				Summary: &summary{Lost: 0}},
			&round{Pair: pair, Mode: modeRecord, Storm: benchkit.StormResult{PerSecond: 18000 + float64(pair)*100, Total: 98000},
				AttachMS: 90, CPUMicros: 98000 * 5, MaxRSSKB: 25000, Rec: &recSummary{Events: rec, Snapshots: 3},
				File: recFile{Bytes: rec * 12, Events: rec, State: rec, EventBytes: rec * 11, Snapshots: 3, Complete: true}},
		)
	}
	b.statsRound = &round{Pair: 3, Mode: modeStats, Storm: benchkit.StormResult{PerSecond: 19000, Total: 118000},
		Progs: map[string]*progStat{"on_state": {Name: "on_state", RunTimeNS: 1180000 * 90, RunCnt: 1180000}}}
	rep, missed := b.report()
	if !missed {
		t.Errorf("record at 0.92x of the floor is not reported missed:\n%s", rep)
	}
	for _, want := range []string{
		"| no tracer (baseline) | 20,000 | 1.000x | 17.00 | |",
		"| one empty `tp_btf` program on `inet_sock_set_state` | 19,600 | 0.980x (0.980–0.980) | 18.00 |  |",
		"| 19,000 | 0.950x (0.950–0.950) | 0.00 | 2,280,014 (2,280,004) |",
		"| `sockscope trace -o json > file` | 19,208 | 0.960x (0.960–0.960) | 0.980x (0.980–0.980) | ≥ 0.97x of the floor, every transition, none lost | yes | 0.00 | 4.00 | 2,360,004 (2,360,004) | 0 | 20.5 | 80 |",
		"| `sockscope record` | 18,150 | 0.907x (0.905–0.910) | 0.926x (0.923–0.929) | ≥ 0.95x of the floor, every transition, none lost | **no** (rate) |",
		"BPF programs of `sockscope trace` (its statistics round, 118,000 connections): 90 ns per transition in all, 0.90 µs per connection (target ≤ 100 ns per transition: yes).",
		"| on_state | 1,180,000 | 10.00 | 90 |",
		"| 2 | sockscope | 19,208 | 0.960x | 0.00 | 118,000 | 1,180,002 (1,180,002) | 0 | 4.00 | 20.5 | 80 |",
		"on_state (tracing) ×2",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}

	// Record as fast as the floor: met, until a record is missing from its files or a trace
	// line is missing.
	for _, r := range b.rounds {
		if r.Mode == modeRecord {
			r.Storm.PerSecond = 19600
		}
	}
	if rep, missed := b.report(); missed {
		t.Errorf("every target met, but reported missed:\n%s", rep)
	}
	b.rounds[4].File.Events--
	if rep, missed := b.report(); !missed || !strings.Contains(rep, "**no** (transitions)") {
		t.Errorf("a record missing from the file: missed %v\n%s", missed, rep)
	}
	b.rounds[4].File.Events++
	b.rounds[3].StateLines--
	if rep, missed := b.report(); !missed || !strings.Contains(rep, "2,360,003 (2,360,004)") {
		t.Errorf("a trace line missing: missed %v\n%s", missed, rep)
	}
	b.rounds[3].StateLines++
	b.rounds[3].Summary = nil
	if _, missed := b.report(); !missed {
		t.Error("unknown lost count must count as missed")
	}
	b.rounds[3].Summary = &summary{}
	b.statsRound.Progs["on_state"].RunTimeNS *= 2
	if rep, missed := b.report(); !missed || !strings.Contains(rep, "180 ns per transition in all") {
		t.Errorf("180 ns per transition: missed %v\n%s", missed, rep)
	}
}

func TestFloorsFlag(t *testing.T) {
	if m, err := parseFloors("state,connect"); err != nil || len(m) != 2 || m[0] != modeFloorState || m[1] != modeFloorConnect {
		t.Errorf("%v %v", m, err)
	}
	if m, err := parseFloors("none"); err != nil || m != nil {
		t.Errorf("none: %v %v", m, err)
	}
	if _, err := parseFloors("state,kprobe"); err == nil {
		t.Error("accepted an unknown floor")
	}
	b := &bench{cfg: config{floors: "state", sockscope: "a", compare: [][2]string{{"old", "b"}}}}
	var keys []string
	for _, m := range b.modes([]string{modeRecord}) {
		keys = append(keys, m.key+"="+m.bin)
	}
	if got := strings.Join(keys, " "); got != "baseline= floor= sockscope=a record=a sockscope@old=b" {
		t.Errorf("modes: %s", got)
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
	rec := func(kind trace.Kind) []byte {
		b := make([]byte, trace.RecordSize)
		b[91] = byte(kind)
		return b
	}
	var evs []byte
	for _, k := range []trace.Kind{trace.KindState, trace.KindState | trace.KindConnect, trace.KindConnect, trace.KindState} {
		evs = append(evs, rec(k)...)
	}
	w.WriteBlock(recording.BlockMeta, 1, []byte(`{}`))
	w.WriteBlock(recording.BlockEvents, 2, evs[:2*trace.RecordSize])
	w.WriteBlock(recording.BlockSockets, 3, make([]byte, 8))
	w.WriteBlock(recording.BlockEvents, 4, evs[2*trace.RecordSize:])
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
