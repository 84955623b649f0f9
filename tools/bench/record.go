package main

// The recording modes: the same storm under `sockscope record -w FILE --netns NS`, with and
// without syscall counters, in the same pairs as trace, so that each is measured against the
// baseline of its own pair and compared with trace (target: recording costs no more than trace).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/recording"
	"github.com/sockscope/sockscope/tools/internal/benchkit"
)

// recordInterval is the recordings' --interval (socket snapshots, syscall counts, facts).
const recordInterval = 5 * time.Second

// listenerTransitions are the state transitions of each storm's listener (CLOSE->LISTEN,
// LISTEN->CLOSE), on top of benchkit.TransitionsPerConn per connection.
const listenerTransitions = 2

// recSummary is `sockscope record`'s final stderr line:
// "sockscope: recorded N events and M socket snapshots (L lost) to FILE".
type recSummary struct {
	Events, Snapshots, Lost int64
}

var recSummaryRE = regexp.MustCompile(`sockscope: recorded (\d+) events and (\d+) socket snapshots \((\d+) lost\)`)

func parseRecSummary(line string) (*recSummary, bool) {
	m := recSummaryRE.FindStringSubmatch(line)
	if m == nil {
		return nil, false
	}
	var v [3]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(m[i+1], 10, 64)
	}
	return &recSummary{Events: v[0], Snapshots: v[1], Lost: v[2]}, true
}

// recFile is what one recording holds, read back with the recording package.
type recFile struct {
	Bytes       int64  // file size
	Events      int64  // ring records in the events blocks
	State       int64  // of which carry a state transition
	Connect     int64  // of which carry a connect outcome (both: a record that concludes a connect)
	EventBytes  int64  // events blocks as stored (compressed), block headers included
	Snapshots   int64  // socket snapshot blocks
	SocketBytes int64  // socket snapshot blocks as stored
	Complete    bool   // the file ends with its end block
	Err         string // why it could not be read to the end, "" if it could
}

func readRecording(path string) (recFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return recFile{}, err
	}
	defer f.Close()
	var rf recFile
	if st, err := f.Stat(); err == nil {
		rf.Bytes = st.Size()
	}
	rd, err := recording.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return rf, err
	}
	var ev events.Event
	for {
		blk, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rf, nil
		}
		if err != nil {
			return rf, err
		}
		stored := rd.Offset() - blk.Offset
		switch blk.Type {
		case recording.BlockEvents:
			rf.EventBytes += stored
			for p := blk.Payload; len(p) >= events.RecordSize; p = p[events.RecordSize:] {
				rf.Events++
				if events.Decode(p, &ev) == nil {
					if ev.Kind&events.KindState != 0 {
						rf.State++
					}
					if ev.Kind&events.KindConnect != 0 {
						rf.Connect++
					}
				}
			}
		case recording.BlockSockets:
			rf.Snapshots++
			rf.SocketBytes += stored
		case recording.BlockEnd:
			rf.Complete = true
		}
	}
}

// recordModes are the recording modes the -record flag asks for.
func recordModes(flag string) ([]string, error) {
	switch flag {
	case "both":
		return []string{modeRecord, modeRecordNoSys}, nil
	case "on":
		return []string{modeRecord}, nil
	case "off":
		return nil, nil
	}
	return nil, fmt.Errorf(`-record %q: want "both", "on" or "off"`, flag)
}

// isRecord tells whether mode is a recording mode.
func isRecord(mode string) bool { return mode == modeRecord || mode == modeRecordNoSys }

// rotate returns modes rotated left by n: each pair runs the traced modes in another order, so
// that none of them always runs first after the baseline.
func rotate(modes []string, n int) []string {
	if len(modes) == 0 {
		return nil
	}
	n %= len(modes)
	return append(append([]string(nil), modes[n:]...), modes[:n]...)
}

// expectedRecords is the ring records a tracer attached for a whole storm of total connections
// writes: one per state transition (a record concluding a connect carries the connect too).
func expectedRecords(total int64) int64 {
	return benchkit.TransitionsPerConn*total + listenerTransitions
}

// recordRound runs the storm under `sockscope record -w FILE --netns NS --interval 5s`, reads
// the recording back, and removes it. With stats, as tracedRound.
func (b *bench) recordRound(r *round, stats bool) (err error) {
	if stats {
		restore := b.bpfStats()
		defer restore()
	}
	file := filepath.Join(b.tmp, fmt.Sprintf("record-%d-%d.scope", r.Pair, len(b.rounds)))
	stdout := filepath.Join(b.tmp, "record.stdout")
	defer os.Remove(file)
	defer os.Remove(stdout)

	argv := []string{b.cfg.sockscope, "record", "-w", file, "--netns", b.nsPath, "--interval", recordInterval.String()}
	if r.Mode == modeRecordNoSys {
		argv = append(argv, "--syscalls=false")
	}
	t, err := b.startTracer("sockscope record", stdout, "sockscope: attached", argv...)
	if err != nil {
		return err
	}
	if err := b.attachedStorm(t, r, stats); err != nil {
		return err
	}
	t.log.mu.Lock()
	// A missing summary line is reported (events and lost unknown), as for trace.
	r.Rec, r.LostLines = t.log.recSummary, t.log.lost
	t.log.mu.Unlock()
	if r.File, err = readRecording(file); err != nil {
		r.File.Err = err.Error()
	}
	return nil
}

// modeFigures are one traced mode's figures over all its rounds.
type modeFigures struct {
	Mode     string
	Rounds   int
	MedRate  float64
	MedRatio float64 // median over the pairs of the round's conn/s over its pair's baseline
	MinRatio float64
	MaxRatio float64
	MedCPU   float64 // µs of the tracer's CPU per connection
	// The same without the CPU used before the "attached" line, and that CPU (ms); NaN if unknown.
	MedCPUAfter  float64
	MedAttachCPU float64
	MaxRSS       float64 // MB
	MedAttach    float64 // ms
	Lost         int64
	LostKnown    bool // every round printed its summary line
	// Ring records written (trace: from its JSON lines; record: its summary line) and expected.
	Records, Expected int64
	RecordsKnown      bool
	// Recordings only.
	File          recFile // summed over the rounds; Complete: all of them
	FileErrs      []string
	EventsMatched bool // the events in each file equal its summary line's count
}

func (b *bench) pairBaselines() map[int]float64 {
	base := map[int]float64{}
	for _, r := range b.rounds {
		if r.Mode == modeBaseline {
			base[r.Pair] = r.Storm.PerSecond
		}
	}
	return base
}

// figures sums up the rounds of mode; nil if there were none.
func (b *bench) figures(mode string) *modeFigures {
	base := b.pairBaselines()
	f := &modeFigures{Mode: mode, LostKnown: true, RecordsKnown: true, EventsMatched: true}
	f.File.Complete = true
	var rates, ratios, cpu, cpuAfter, attachCPU, rss, attach []float64
	for _, r := range b.rounds {
		if r.Mode != mode {
			continue
		}
		f.Rounds++
		rates = append(rates, r.Storm.PerSecond)
		if pb := base[r.Pair]; pb > 0 {
			ratios = append(ratios, r.Storm.PerSecond/pb)
		}
		cpu = append(cpu, r.cpuPerConn())
		if a := r.cpuAfterAttach(); !math.IsNaN(a) {
			cpuAfter = append(cpuAfter, a)
			attachCPU = append(attachCPU, r.AttachCPU)
		}
		rss = append(rss, benchkit.RSSMB(r.MaxRSSKB))
		attach = append(attach, r.AttachMS)
		f.Expected += expectedRecords(r.Storm.Total)
		switch {
		case isRecord(mode):
			if r.Rec == nil {
				f.LostKnown, f.RecordsKnown = false, false
			} else {
				f.Lost += r.Rec.Lost
				f.Records += r.Rec.Events
				if r.File.Events != r.Rec.Events {
					f.EventsMatched = false
				}
			}
			f.File.Bytes += r.File.Bytes
			f.File.Events += r.File.Events
			f.File.State += r.File.State
			f.File.Connect += r.File.Connect
			f.File.EventBytes += r.File.EventBytes
			f.File.Snapshots += r.File.Snapshots
			f.File.SocketBytes += r.File.SocketBytes
			f.File.Complete = f.File.Complete && r.File.Complete
			if r.File.Err != "" {
				f.FileErrs = append(f.FileErrs, fmt.Sprintf("round %d: %s", r.Pair, r.File.Err))
			}
		default:
			if r.Summary == nil {
				f.LostKnown = false
			} else {
				f.Lost += r.Summary.Lost
			}
			f.Records += r.ringRecords()
		}
	}
	if f.Rounds == 0 {
		return nil
	}
	f.MedRate, f.MedRatio = benchkit.Median(rates), benchkit.Median(ratios)
	f.MinRatio, f.MaxRatio = benchkit.MinMax(ratios)
	f.MedCPU = benchkit.Median(cpu)
	f.MedCPUAfter, f.MedAttachCPU = math.NaN(), math.NaN()
	if len(cpuAfter) == f.Rounds {
		f.MedCPUAfter, f.MedAttachCPU = benchkit.Median(cpuAfter), benchkit.Median(attachCPU)
	}
	_, f.MaxRSS = benchkit.MinMax(rss)
	f.MedAttach = benchkit.Median(attach)
	return f
}

// recordsOK tells whether a recording mode wrote exactly the expected ring records, all of
// them readable in its files.
func (f *modeFigures) recordsOK() bool {
	return f.RecordsKnown && f.Records == f.Expected && f.EventsMatched && f.File.Complete && len(f.FileErrs) == 0
}

func (f *modeFigures) bytesPerEvent() float64 {
	if f.Records == 0 {
		return math.NaN()
	}
	return float64(f.File.Bytes) / float64(f.Records)
}

// vsTrace compares a recording mode with trace: the ratio of their conn/s ratios to their pairs'
// baselines (>= 1: the recording slowed the storm no more than trace) and the difference of
// their median CPU per connection (<= 0: no more CPU than trace).
type vsTrace struct {
	Rel     float64
	CPUDiff float64
	CPURel  float64
}

func compare(rec, tr *modeFigures) vsTrace {
	return vsTrace{Rel: rec.MedRatio / tr.MedRatio, CPUDiff: rec.MedCPU - tr.MedCPU, CPURel: rec.MedCPU/tr.MedCPU - 1}
}

func (v vsTrace) rateOK() bool { return v.Rel >= 1 }
func (v vsTrace) cpuOK() bool  { return v.CPUDiff <= 0 }
func (v vsTrace) met() bool    { return v.rateOK() && v.cpuOK() }

// rateText says how many connections/s the recording kept compared with trace.
func (v vsTrace) rateText() string {
	switch d := (v.Rel - 1) * 100; {
	case math.Abs(d) < 0.05:
		return "as many connections/s as trace"
	case d > 0:
		return fmt.Sprintf("%.1f%% more connections/s than trace", d)
	default:
		return fmt.Sprintf("%.1f%% fewer connections/s than trace", -d)
	}
}

func (v vsTrace) cpuText() string {
	return fmt.Sprintf("%+.2f µs CPU per connection (%+.0f%%)", v.CPUDiff, v.CPURel*100)
}

// verdict is the plain judgement against "no more than trace mode": met, or missed and by how much.
func (v vsTrace) verdict() string {
	if v.met() {
		return fmt.Sprintf("met (%s, %s)", v.rateText(), v.cpuText())
	}
	var by []string
	if !v.rateOK() {
		by = append(by, v.rateText())
	}
	if !v.cpuOK() {
		by = append(by, v.cpuText())
	}
	s := "missed by " + strings.Join(by, " and ")
	if v.rateOK() {
		s += " (" + v.rateText() + ")"
	} else if v.cpuOK() {
		s += " (" + v.cpuText() + ")"
	}
	return s
}

func modeLabel(mode string) string {
	switch mode {
	case modeSockscope:
		return "`sockscope trace`"
	case modeRecord:
		return "`sockscope record`"
	case modeRecordNoSys:
		return "`sockscope record --syscalls=false`"
	}
	return mode
}

// recordSummary is the verdict paragraph and the rows of the summary table for the recording
// modes; missed tells whether one of the rows' targets was missed.
func (b *bench) recordSummary() (para, rows string, missed bool) {
	tr := b.figures(modeSockscope)
	if tr == nil {
		return "", "", false
	}
	var pw, rw strings.Builder
	for _, mode := range []string{modeRecord, modeRecordNoSys} {
		f := b.figures(mode)
		if f == nil {
			continue
		}
		v := compare(f, tr)
		label := modeLabel(mode)
		if mode == modeRecord {
			fmt.Fprintf(&pw, "**Recording overhead (target: no more than trace mode): %s.** %s (syscall counters on, the default) kept %.3fx of its pairs' baseline connections/s against %.3fx under trace, "+
				"and used %.2f µs of CPU per connection against %.2f µs.", v.verdict(), label, f.MedRatio, tr.MedRatio, f.MedCPU, tr.MedCPU)
			if !math.IsNaN(f.MedCPUAfter) && !math.IsNaN(tr.MedCPUAfter) {
				fmt.Fprintf(&pw, " Of that CPU, %.0f ms against %.0f ms went to loading and attaching before the `attached` line; after it, %.2f against %.2f µs per connection (%+.2f µs).",
					f.MedAttachCPU, tr.MedAttachCPU, f.MedCPUAfter, tr.MedCPUAfter, f.MedCPUAfter-tr.MedCPUAfter)
			}
			if rs, ts := b.recStatsRound, b.statsRound; rs != nil && ts != nil {
				if rb, tb := bpfPerConn(rs), bpfPerConn(ts); rb > 0 && tb > 0 {
					fmt.Fprintf(&pw, " Its BPF programs ran %.2f µs per connection in the storm's own context against %.2f µs for trace (statistics rounds).", rb, tb)
				}
			}
		} else {
			fmt.Fprintf(&pw, " Without syscall counters (%s): %.3fx and %.2f µs per connection, %s.", label, f.MedRatio, f.MedCPU, v.verdict())
		}
		fmt.Fprintf(&rw, "| %s: connections/s vs trace (median ratio to the pair's baseline) | %.3fx vs %.3fx: %.3fx of trace (%+.1f%%) | ≥ trace | %s |\n",
			label, f.MedRatio, tr.MedRatio, v.Rel, (v.Rel-1)*100, benchkit.Verdict(v.rateOK()))
		fmt.Fprintf(&rw, "| %s: CPU per connection vs trace (median) | %.2f vs %.2f µs (%+.2f µs, %+.0f%%) | ≤ trace | %s |\n",
			label, f.MedCPU, tr.MedCPU, v.CPUDiff, v.CPURel*100, benchkit.Verdict(v.cpuOK()))
		events, okEv := "unknown (no summary line)", false
		if f.RecordsKnown {
			okEv = f.recordsOK()
			in := "the files hold the same"
			if f.File.Events != f.Records {
				in = fmt.Sprintf("the files hold %s", benchkit.Thousands(f.File.Events))
			}
			events = fmt.Sprintf("%s of %s ring records (%d per connection + %d per storm); %s",
				benchkit.Thousands(f.Records), benchkit.Thousands(f.Expected), benchkit.TransitionsPerConn, listenerTransitions, in)
		}
		fmt.Fprintf(&rw, "| %s: events recorded | %s | all, exactly | %s |\n", label, events, verdictOrUnknown(okEv, f.RecordsKnown))
		lost := "unknown (no summary line)"
		if f.LostKnown {
			lost = benchkit.Thousands(f.Lost)
		}
		okLost := f.LostKnown && f.Lost == 0
		fmt.Fprintf(&rw, "| %s: lost events (its summary) | %s | 0 | %s |\n", label, lost, verdictOrUnknown(okLost, f.LostKnown))
		missed = missed || !v.met() || !okEv || !okLost
	}
	if pw.Len() > 0 {
		fmt.Fprintf(&pw, " For scale: trace's ratio ranged %.3f–%.3fx over the pairs.\n\n", tr.MinRatio, tr.MaxRatio)
	}
	return pw.String(), rw.String(), missed
}

// orBlank formats v, or gives "" for NaN.
func orBlank(format string, v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	return fmt.Sprintf(format, v)
}

// bpfPerConn is the BPF run time per connection of a statistics round, in µs; 0 if unknown.
func bpfPerConn(r *round) float64 {
	var ns uint64
	for _, p := range r.Progs {
		ns += p.RunTimeNS
	}
	if r.Storm.Total == 0 {
		return 0
	}
	return float64(ns) / float64(r.Storm.Total) / 1000
}

func verdictOrUnknown(ok, known bool) string {
	if !known {
		return "?"
	}
	return benchkit.Verdict(ok)
}

// modeTable is the per-mode table: each traced mode against the baselines and against trace.
func (b *bench) modeTable() string {
	tr := b.figures(modeSockscope)
	if tr == nil {
		return ""
	}
	var recs []*modeFigures
	for _, mode := range []string{modeRecord, modeRecordNoSys} {
		if f := b.figures(mode); f != nil {
			recs = append(recs, f)
		}
	}
	if len(recs) == 0 {
		return ""
	}
	var base []float64
	for _, r := range b.rounds {
		if r.Mode == modeBaseline {
			base = append(base, r.Storm.PerSecond)
		}
	}
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("Per mode (medians over the pairs; each round against the baseline of its own pair):\n\n")
	p("| mode | conn/s | vs baseline of the pair (range) | vs trace | CPU µs/conn | vs trace | CPU ms to attach | CPU µs/conn after attach | peak RSS MB (max) | attached ms | lost | ring records (expected) | file bytes (all rounds) | bytes/event |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	p("| no tracer (baseline) | %s | | | | | | | | | | | | |\n", benchkit.Thousands(int64(math.Round(benchkit.Median(base)))))
	for _, f := range append([]*modeFigures{tr}, recs...) {
		vs, cpuVs := "", ""
		if f != tr {
			v := compare(f, tr)
			vs, cpuVs = fmt.Sprintf("%.3fx", v.Rel), fmt.Sprintf("%+.2f µs", v.CPUDiff)
		}
		lost := "?"
		if f.LostKnown {
			lost = benchkit.Thousands(f.Lost)
		}
		records := "?"
		if f.RecordsKnown {
			records = fmt.Sprintf("%s (%s)", benchkit.Thousands(f.Records), benchkit.Thousands(f.Expected))
		}
		file, perEvent := "", ""
		if isRecord(f.Mode) {
			file = benchkit.Thousands(f.File.Bytes)
			if pe := f.bytesPerEvent(); !math.IsNaN(pe) {
				perEvent = fmt.Sprintf("%.1f", pe)
			}
		}
		p("| %s | %s | %.3fx (%.3f–%.3f) | %s | %.2f | %s | %s | %s | %.1f | %.0f | %s | %s | %s | %s |\n",
			modeLabel(f.Mode), benchkit.Thousands(int64(math.Round(f.MedRate))), f.MedRatio, f.MinRatio, f.MaxRatio, vs,
			f.MedCPU, cpuVs, orBlank("%.0f", f.MedAttachCPU), orBlank("%.2f", f.MedCPUAfter), f.MaxRSS, f.MedAttach, lost, records, file, perEvent)
	}
	p("\n")
	return w.String()
}

// recordRoundTable lists the recording rounds.
func (b *bench) recordRoundTable() string {
	base := b.pairBaselines()
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	for _, r := range b.rounds {
		if !isRecord(r.Mode) {
			continue
		}
		if w.Len() == 0 {
			p("Recording rounds (`sockscope record -w FILE --netns /run/netns/NS --interval %v`; the baseline is the one of the same round in the table above):\n\n", recordInterval)
			p("| round | mode | conn/s | vs baseline of the round | connections (all) | events recorded (expected) | in the file (state, connect) | lost | CPU µs/conn | CPU ms to attach | RSS MB | attached ms | file bytes | bytes/event | socket snapshots |\n")
			p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		}
		events, lost, perEvent := "?", "?", ""
		if r.Rec != nil {
			events, lost = benchkit.Thousands(r.Rec.Events), benchkit.Thousands(r.Rec.Lost)
			if r.Rec.Events > 0 {
				perEvent = fmt.Sprintf("%.1f", float64(r.File.Bytes)/float64(r.Rec.Events))
			}
		}
		vs := ""
		if pb := base[r.Pair]; pb > 0 {
			vs = fmt.Sprintf("%.3fx", r.Storm.PerSecond/pb)
		}
		attachCPU := ""
		if r.AttachCPU >= 0 {
			attachCPU = fmt.Sprintf("%.0f", r.AttachCPU)
		}
		p("| %d | %s | %s | %s | %s | %s (%s) | %s (%s, %s) | %s | %.2f | %s | %.1f | %.0f | %s | %s | %d |\n",
			r.Pair, r.Mode, benchkit.Thousands(int64(r.Storm.PerSecond)), vs, benchkit.Thousands(r.Storm.Total),
			events, benchkit.Thousands(expectedRecords(r.Storm.Total)),
			benchkit.Thousands(r.File.Events), benchkit.Thousands(r.File.State), benchkit.Thousands(r.File.Connect),
			lost, r.cpuPerConn(), attachCPU, benchkit.RSSMB(r.MaxRSSKB), r.AttachMS, benchkit.Thousands(r.File.Bytes), perEvent, r.File.Snapshots)
	}
	if w.Len() > 0 {
		p("\n")
	}
	return w.String()
}

// recordNotes explain the recording figures and anything wrong with them.
func (b *bench) recordNotes() []string {
	var notes []string
	tr := b.figures(modeSockscope)
	for _, mode := range []string{modeRecord, modeRecordNoSys} {
		f := b.figures(mode)
		if f == nil {
			continue
		}
		label := modeLabel(mode)
		if f.File.Events > 0 && f.File.Bytes > 0 {
			notes = append(notes, fmt.Sprintf("%s files: %s bytes for %s events; the events blocks take %.1f bytes per event as stored (%d-byte records, compressed), "+
				"the %d socket snapshots (at the start, every %v and at the end, of the storm's netns with its TIME_WAIT sockets) %s bytes (%.0f%% of the files), "+
				"the rest is metadata, facts, syscall counts and lost counts.",
				label, benchkit.Thousands(f.File.Bytes), benchkit.Thousands(f.File.Events), float64(f.File.EventBytes)/float64(f.File.Events), events.RecordSize,
				f.File.Snapshots, recordInterval, benchkit.Thousands(f.File.SocketBytes), 100*float64(f.File.SocketBytes)/float64(f.File.Bytes)))
		}
		if f.RecordsKnown && f.Records != f.Expected {
			n := fmt.Sprintf("%s events minus the expected ring records: %+d", label, f.Records-f.Expected)
			if f.LostKnown && f.Lost > 0 && f.Records+f.Lost == f.Expected {
				n += fmt.Sprintf(", exactly its %s lost events (ring buffer full or skipped by the kernel): every other record is in the files", benchkit.Thousands(f.Lost))
			}
			notes = append(notes, n+".")
		}
		if !f.EventsMatched {
			notes = append(notes, fmt.Sprintf("%s: the events in a file differ from its summary line's count (files: %s in all).", label, benchkit.Thousands(f.File.Events)))
		}
		if !f.File.Complete {
			notes = append(notes, fmt.Sprintf("%s: a recording did not end with its end block.", label))
		}
		if len(f.FileErrs) > 0 {
			notes = append(notes, fmt.Sprintf("%s: reading a recording back failed: %s.", label, strings.Join(f.FileErrs, "; ")))
		}
	}
	for _, r := range b.rounds {
		if isRecord(r.Mode) && len(r.LostLines) > 0 {
			notes = append(notes, fmt.Sprintf("Round %d %s printed lines about lost events, e.g. `%s`.", r.Pair, r.Mode, r.LostLines[0]))
			break
		}
	}
	if tr != nil && (b.figures(modeRecord) != nil || b.figures(modeRecordNoSys) != nil) {
		var paired int64
		for _, r := range b.rounds {
			if r.Mode == modeSockscope {
				paired += r.PairedLines
			}
		}
		notes = append([]string{fmt.Sprintf("Ring records: a recording stores each ring-buffer record once (%d bytes before compression); trace prints a record that concludes a connect as two JSON lines (state, then connect), "+
			"so its ring records are its state lines plus the connect lines that do not belong to the state line before them (here %s of its connect lines did). "+
			"Each storm makes %d per connection plus %d for its listener.", events.RecordSize, benchkit.Thousands(paired), benchkit.TransitionsPerConn, listenerTransitions)}, notes...)
	}
	return notes
}

// recordStatsRow is the summary row of the record statistics round's BPF run time.
func (b *bench) recordStatsRow() string {
	rs := b.recStatsRound
	if rs == nil {
		return ""
	}
	rb := bpfPerConn(rs)
	if rb == 0 {
		return ""
	}
	trace := ""
	if b.statsRound != nil {
		if tb := bpfPerConn(b.statsRound); tb > 0 {
			trace = fmt.Sprintf(" (trace: %.2f µs)", tb)
		}
	}
	return fmt.Sprintf("| `sockscope record`: BPF run time per connection (its statistics round) | %.2f µs%s | | |\n", rb, trace)
}

// recordProgTable lists the BPF programs of the record statistics round.
func (b *bench) recordProgTable() string {
	rs := b.recStatsRound
	if rs == nil || len(rs.Progs) == 0 {
		return ""
	}
	var w strings.Builder
	fmt.Fprintf(&w, "BPF programs of `sockscope record` (its statistics round, %s connections):\n\n", benchkit.Thousands(rs.Storm.Total))
	fmt.Fprintf(&w, "| program | runs | runs per connection | ns per run |\n|---|---:|---:|---:|\n")
	for _, s := range sortedStats(rs.Progs) {
		fmt.Fprintf(&w, "| %s | %s | %.2f | %.0f |\n", s.Name, benchkit.Thousands(int64(s.RunCnt)), float64(s.RunCnt)/float64(max(rs.Storm.Total, 1)), s.nsPerRun())
	}
	w.WriteString("\n")
	return w.String()
}
