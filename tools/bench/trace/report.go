package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// Targets, each against the floor measured in the same rounds (one empty program on the state
// tracepoint), and per transition.
const (
	targetTraceVsFloor  = 0.97  // trace -o json to a file: within 3% of the floor
	targetRecordVsFloor = 0.95  // record: within 5%
	targetBPFPerTrans   = 100.0 // ns of BPF run time per transition (trace's statistics round)
	targetAttachMS      = 150.0 // exec to "attached"
	targetRSSMB         = 30.0  // peak RSS, MB (10^6 bytes)
)

// report renders the markdown fragment; missed tells whether a target was missed (or could not
// be judged).
func (b *bench) report() (string, bool) {
	c := b.cfg
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	m := b.machine
	p("### `sockscope trace` and `sockscope record` against the floor\n\n")
	p("Measured %s on Linux %s, %s, %d CPUs, %.1f GB memory (load average at start: %s, at end: %s).\n",
		m.Date, m.Kernel, m.CPU, m.NumCPU, m.MemoryGB, m.LoadAvg, benchkit.LoadAvg())
	pin := "pinned to CPU " + c.cpu
	if c.cpu == "none" {
		pin = "not pinned"
	}
	p("Workload: `tcpload storm`, one client and one server thread on 127.0.0.1 in a fresh network namespace, %s; "+
		"each connection is connect, accept, server close, client read to EOF, close: %d TCP state transitions. "+
		"%d rounds of %v (after %v warm-up); each round runs every mode once, in an order rotated from round to round, and each mode's ratio is "+
		"its connections/s over the baseline (or the floor) of its own round: medians, and the range over the rounds. "+
		"The floors are programs that do nothing, loaded by the harness on the hooks sockscope uses.",
		pin, benchkit.TransitionsPerConn, c.rounds, c.duration, c.warmup)
	if b.statsOrig != "" {
		p(" BPF run times come from extra rounds with kernel.bpf_stats_enabled=1 (statistics cost time themselves, so the compared rounds run without them).")
	}
	p("\nsockscope binary: %s.\n\n", benchkit.FileID(c.sockscope, "2006-01-02 15:04"))

	base := b.figures(modeBaseline)
	missed := false
	if base == nil {
		return w.String() + "No baseline rounds.\n", true
	}

	// The floors.
	p("| floor (what being attached costs, in this run) | conn/s | vs baseline (range) | storm CPU µs/conn | records (expected) |\n|---|---:|---:|---:|---:|\n")
	p("| no tracer (baseline) | %s | 1.000x | %.2f | |\n", thousands(base.MedRate), base.MedStormCPU)
	for _, f := range floorDefs {
		fl := b.figures(f.mode)
		if fl == nil {
			continue
		}
		recs := ""
		if f.mode == modeFloorWriter {
			recs = fmt.Sprintf("%s (%s)", benchkit.Thousands(fl.Records), benchkit.Thousands(fl.Expected))
		}
		p("| %s | %s | %.3fx (%.3f–%.3f) | %.2f | %s |\n", f.label, thousands(fl.MedRate), fl.MedRatio, fl.MinRatio, fl.MaxRatio, fl.MedStormCPU, recs)
	}
	p("\n")

	// The modes against the floor.
	floor := b.figures(modeFloor)
	p("| mode | conn/s | vs baseline (range) | vs floor (range) | target | met | storm CPU µs/conn | sockscope CPU µs/conn | transitions written (expected) | lost | peak RSS MB | attached ms |\n")
	p("|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|\n")
	modes := []string{modeSockscope}
	for _, mode := range []string{modeRecord, modeRecordNoSys} {
		if b.figures(mode) != nil {
			modes = append(modes, mode)
		}
	}
	for _, cmp := range c.compare {
		modes = append(modes, compareMode(cmp[0]))
	}
	for _, mode := range modes {
		f := b.figures(mode)
		if f == nil {
			continue
		}
		target := targetTraceVsFloor
		if isRecord(mode) {
			target = targetRecordVsFloor
		}
		vsFloor, met := "no floor round", "?"
		okRate := false
		if floor != nil && !math.IsNaN(f.MedFloor) {
			okRate = f.MedFloor >= target
			vsFloor, met = fmt.Sprintf("%.3fx (%.3f–%.3f)", f.MedFloor, f.MinFloor, f.MaxFloor), benchkit.Verdict(okRate)
		}
		written, okWritten := b.written(mode, f)
		lost, okLost := "?", f.LostKnown && f.Lost == 0
		if f.LostKnown {
			lost = benchkit.Thousands(f.Lost)
		}
		okMem := f.MaxRSS < targetRSSMB && f.MedAttach < targetAttachMS
		if mode == modeSockscope || isRecord(mode) {
			missed = missed || !okRate || !okWritten || !okLost || !okMem
		}
		p("| %s | %s | %.3fx (%.3f–%.3f) | %s | ≥ %.2fx of the floor, every transition, none lost | %s | %.2f | %.2f | %s | %s | %.1f | %.0f |\n",
			modeLabel(mode), thousands(f.MedRate), f.MedRatio, f.MinRatio, f.MaxRatio, vsFloor, target,
			verdictAll(met, okWritten, okLost), f.MedStormCPU, f.MedCPU, written, lost, f.MaxRSS, f.MedAttach)
	}
	p("\n")
	p("Targets beside these: sockscope's peak RSS below %.0f MB and its time to `attached` below %.0f ms (both in the table); BPF run time at most %.0f ns per transition (below).\n\n", targetRSSMB, targetAttachMS, targetBPFPerTrans)

	// BPF run time per program.
	for _, sr := range []*round{b.statsRound, b.recStatsRound} {
		if sr == nil || len(sr.Progs) == 0 {
			continue
		}
		trans := float64(benchkit.TransitionsPerConn * max(sr.Storm.Total, 1))
		var ns uint64
		for _, s := range sr.Progs {
			ns += s.RunTimeNS
		}
		who := "`sockscope trace`"
		if sr == b.recStatsRound {
			who = "`sockscope record`"
		}
		perTrans := float64(ns) / trans
		ok := perTrans <= targetBPFPerTrans
		if sr == b.statsRound {
			missed = missed || !ok
		}
		p("BPF programs of %s (its statistics round, %s connections): %.0f ns per transition in all, %.2f µs per connection (target ≤ %.0f ns per transition: %s).\n\n",
			who, benchkit.Thousands(sr.Storm.Total), perTrans, float64(ns)/float64(max(sr.Storm.Total, 1))/1000, targetBPFPerTrans, benchkit.Verdict(ok))
		p("| program | runs | runs per connection | ns per run |\n|---|---:|---:|---:|\n")
		for _, s := range sortedStats(sr.Progs) {
			p("| %s | %s | %.2f | %.0f |\n", s.Name, benchkit.Thousands(int64(s.RunCnt)), float64(s.RunCnt)/float64(max(sr.Storm.Total, 1)), s.nsPerRun())
		}
		p("\n")
	}

	// Every round.
	base1 := b.pairBaselines()
	p("Per round:\n\n| round | mode | conn/s | vs baseline of the round | storm CPU µs/conn | connections (all) | transitions written (expected) | lost | sockscope CPU µs/conn | RSS MB | attached ms |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range append(append([]*round(nil), b.rounds...), b.btRounds()...) {
		vs := ""
		if pb := base1[r.Pair]; pb > 0 && r.Mode != modeBaseline {
			vs = fmt.Sprintf("%.3fx", r.Storm.PerSecond/pb)
		}
		if r.Mode == modeBpftrace {
			vs = fmt.Sprintf("%.3fx (median)", r.Storm.PerSecond/base.MedRate)
		}
		written, lost, cpu, rss, attached := "", "", "", "", ""
		switch {
		case isTrace(r.Mode):
			written = fmt.Sprintf("%s (%s)", benchkit.Thousands(r.StateLines), benchkit.Thousands(expectedRecords(r.Storm.Total)))
			lost = "?"
			if r.Summary != nil {
				lost = benchkit.Thousands(r.Summary.Lost)
			}
		case isRecord(r.Mode):
			written, lost = "? (no summary line)", "?"
			if r.Rec != nil {
				written = fmt.Sprintf("%s (%s), %s in the file", benchkit.Thousands(r.Rec.Events), benchkit.Thousands(expectedRecords(r.Storm.Total)), benchkit.Thousands(r.File.Events))
				lost = benchkit.Thousands(r.Rec.Lost)
			}
		case r.Mode == modeFloorWriter:
			written = fmt.Sprintf("%s (%s, machine-wide)", benchkit.Thousands(r.FloorRecords), benchkit.Thousands(expectedRecords(r.Storm.Total)))
		case r.Mode == modeBpftrace:
			written, lost = fmt.Sprintf("%s (%s, machine-wide)", benchkit.Thousands(r.StateLines), benchkit.Thousands(expectedRecords(r.Storm.Total))), benchkit.Thousands(r.BpftraceLost)
		}
		if isTrace(r.Mode) || isRecord(r.Mode) || r.Mode == modeBpftrace {
			cpu, rss, attached = fmt.Sprintf("%.2f", r.cpuPerConn()), fmt.Sprintf("%.1f", benchkit.RSSMB(r.MaxRSSKB)), fmt.Sprintf("%.0f", r.AttachMS)
		}
		p("| %d | %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s |\n", r.Pair, r.Mode, benchkit.Thousands(int64(r.Storm.PerSecond)), vs,
			r.Storm.CPUPerConn(), benchkit.Thousands(r.Storm.Total), written, lost, cpu, rss, attached)
	}
	p("\n")

	var notes []string
	notes = append(notes, b.notes...)
	notes = append(notes, fmt.Sprintf("Transitions written: trace's state lines, and the ring records in a recording; each storm makes %d per connection plus %d for its listener (CLOSE->LISTEN, LISTEN->CLOSE). The writer floor and bpftrace see every transition of the machine.", benchkit.TransitionsPerConn, listenerTransitions))
	notes = append(notes, b.recordNotes()...)
	for _, r := range b.rounds {
		if len(r.LostLines) > 0 {
			notes = append(notes, fmt.Sprintf("Round %d %s printed lines about lost events, e.g. `%s`.", r.Pair, r.Mode, r.LostLines[0]))
			break
		}
	}
	if s := b.stalls(); s != "" {
		notes = append(notes, s)
	}
	stormErrs := map[string]int64{}
	for _, r := range b.rounds {
		for k, v := range r.Storm.Errors {
			stormErrs[k] += v
		}
	}
	if len(stormErrs) > 0 {
		notes = append(notes, fmt.Sprintf("The storm's connect() failed: %v.", stormErrs))
	}
	for _, sr := range []*round{b.statsRound, b.recStatsRound} {
		if sr != nil && sr.ProgsNote != "" {
			notes = append(notes, "BPF run times: "+sr.ProgsNote+".")
		}
	}
	if f := b.foreignList(); len(f) > 0 {
		notes = append(notes, "Other tracing BPF programs were loaded during the run and may have slowed every mode: "+strings.Join(f, ", ")+".")
	}
	if bt := b.bt; bt != nil {
		notes = append(notes, fmt.Sprintf("For scale, bpftrace printing each transition to a file (one round): %s conn/s (%.2fx of the baseline median), %.1f µs CPU/conn, %.0f MB RSS, first event %.0f ms after exec (it prints \"Attaching N probes...\" %.0f ms after exec, before it attaches).",
			thousands(bt.Storm.PerSecond), bt.Storm.PerSecond/base.MedRate, bt.cpuPerConn(), benchkit.RSSMB(bt.MaxRSSKB), bt.AttachMS, bt.AttachingMS))
	} else if b.btNote != "" {
		notes = append(notes, "No bpftrace comparison: "+b.btNote+".")
	}
	benchkit.WriteNotes(&w, notes)
	return w.String(), missed
}

func thousands(v float64) string { return benchkit.Thousands(int64(math.Round(v))) }

// written is a mode's "transitions written (expected)" cell and whether every one was written:
// trace's state lines, or the records of a recording (its summary line, and the same in its files).
func (b *bench) written(mode string, f *modeFigures) (string, bool) {
	if isRecord(mode) {
		if !f.RecordsKnown {
			return "? (no summary line)", false
		}
		s := fmt.Sprintf("%s (%s)", benchkit.Thousands(f.Records), benchkit.Thousands(f.Expected))
		if f.File.Events != f.Records {
			s += fmt.Sprintf(", %s in the files", benchkit.Thousands(f.File.Events))
		}
		return s, f.recordsOK()
	}
	var lines int64
	for _, r := range b.rounds {
		if r.Mode == mode {
			lines += r.StateLines
		}
	}
	return fmt.Sprintf("%s (%s)", benchkit.Thousands(lines), benchkit.Thousands(f.Expected)), lines == f.Expected
}

// verdictAll is "yes" when the rate target and both exactness targets are met.
func verdictAll(rate string, written, lost bool) string {
	if rate == "?" {
		return "?"
	}
	if rate == "yes" && written && lost {
		return "yes"
	}
	var why []string
	if rate != "yes" {
		why = append(why, "rate")
	}
	if !written {
		why = append(why, "transitions")
	}
	if !lost {
		why = append(why, "lost")
	}
	return "**no** (" + strings.Join(why, ", ") + ")"
}

func modeLabel(mode string) string {
	switch {
	case mode == modeSockscope:
		return "`sockscope trace -o json > file`"
	case mode == modeRecord:
		return "`sockscope record`"
	case mode == modeRecordNoSys:
		return "`sockscope record --syscalls=false`"
	case strings.HasPrefix(mode, modeSockscope+"@"):
		return "`sockscope trace` of " + strings.TrimPrefix(mode, modeSockscope+"@")
	}
	return mode
}

// recordNotes explain the recording figures and anything wrong with them.
func (b *bench) recordNotes() []string {
	var notes []string
	for _, mode := range []string{modeRecord, modeRecordNoSys} {
		f := b.figures(mode)
		if f == nil {
			continue
		}
		label := modeLabel(mode)
		if f.File.Events > 0 && f.File.Bytes > 0 {
			notes = append(notes, fmt.Sprintf("%s files: %s bytes for %s events; the events blocks take %.1f bytes per event as stored (%d-byte records, compressed), "+
				"the %d socket snapshots %s bytes (%.0f%% of the files).",
				label, benchkit.Thousands(f.File.Bytes), benchkit.Thousands(f.File.Events), float64(f.File.EventBytes)/float64(f.File.Events), trace.RecordSize,
				f.File.Snapshots, benchkit.Thousands(f.File.SocketBytes), 100*float64(f.File.SocketBytes)/float64(f.File.Bytes)))
		}
		if f.RecordsKnown && f.Records != f.Expected {
			n := fmt.Sprintf("%s events minus the expected ring records: %+d", label, f.Records-f.Expected)
			if f.LostKnown && f.Lost > 0 && f.Records+f.Lost == f.Expected {
				n += fmt.Sprintf(", exactly its %s lost events", benchkit.Thousands(f.Lost))
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
	return notes
}

func (b *bench) btRounds() []*round {
	if b.bt == nil {
		return nil
	}
	return []*round{b.bt}
}

// stalls describes the rounds whose storm had a connection slower than benchkit.StallMS.
func (b *bench) stalls() string {
	all := append(append([]*round(nil), b.rounds...), b.btRounds()...)
	if b.statsRound != nil {
		all = append(all, b.statsRound)
	}
	if b.recStatsRound != nil {
		all = append(all, b.recStatsRound)
	}
	var s []string
	for _, r := range all {
		if r.Storm.MaxConnMS >= benchkit.StallMS {
			s = append(s, fmt.Sprintf("round %d %s: %.0f ms", r.Pair, r.Mode, r.Storm.MaxConnMS))
		}
	}
	if len(s) == 0 {
		return ""
	}
	return "The storm stalled (slowest connection) in " + strings.Join(s, "; ") +
		": its CPU was taken by something else during the round, so compare those rates with care or run again on a quiet machine."
}
