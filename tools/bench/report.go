package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/sockscope/sockscope/tools/internal/benchkit"
)

// Targets for sockscope.
const (
	targetSlowdown  = 0.03  // at most 3% fewer connections/s
	targetCPUMicros = 5.0   // sockscope CPU per connection
	targetAttachMS  = 150.0 // exec to "attached"
	targetRSSMB     = 30.0  // peak RSS, MB (10^6 bytes)
)

// report renders the markdown fragment; missed tells whether a target was missed (or could not
// be judged).
func (b *bench) report() (string, bool) {
	c := b.cfg
	var base, traced []*round
	for _, r := range b.rounds {
		switch r.Mode {
		case modeBaseline:
			base = append(base, r)
		case modeSockscope:
			traced = append(traced, r)
		}
	}
	var baseRates, tracedRates, cpu, attach, rss []float64
	var stateLines, connLines, otherLines, totalConns, lost int64
	lostKnown := true
	var lostLines []string
	progs := map[string]*progStat{}
	stormErrs := map[string]int64{}
	for _, r := range base {
		baseRates = append(baseRates, r.Storm.PerSecond)
		for k, v := range r.Storm.Errors {
			stormErrs[k] += v
		}
	}
	var progNotes []string
	for _, r := range traced {
		tracedRates = append(tracedRates, r.Storm.PerSecond)
		cpu = append(cpu, r.cpuPerConn())
		attach = append(attach, r.AttachMS)
		rss = append(rss, benchkit.RSSMB(r.MaxRSSKB))
		stateLines += r.StateLines
		connLines += r.ConnLines
		otherLines += r.OtherLines
		totalConns += r.Storm.Total
		if r.Summary == nil {
			lostKnown = false
		} else {
			lost += r.Summary.Lost
		}
		lostLines = append(lostLines, r.LostLines...)
		for k, v := range r.Storm.Errors {
			stormErrs[k] += v
		}
	}
	var statsConns int64
	if sr := b.statsRound; sr != nil {
		statsConns = sr.Storm.Total
		for _, p := range sr.Progs {
			s := progs[p.Name]
			if s == nil {
				s = &progStat{Name: p.Name}
				progs[p.Name] = s
			}
			s.RunTimeNS += p.RunTimeNS
			s.RunCnt += p.RunCnt
		}
		if sr.ProgsNote != "" {
			progNotes = append(progNotes, sr.ProgsNote)
		}
	}
	medBase, medTraced := benchkit.Median(baseRates), benchkit.Median(tracedRates)
	ratio := medTraced / medBase
	wantState := benchkit.TransitionsPerConn * totalConns
	medCPU := benchkit.Median(cpu)
	_, maxRSS := benchkit.MinMax(rss)
	medAttach := benchkit.Median(attach)
	_, maxAttach := benchkit.MinMax(attach)

	okRate := ratio >= 1-targetSlowdown
	okState := stateLines >= wantState
	okLost := lostKnown && lost == 0
	okCPU := medCPU <= targetCPUMicros
	okRSS := maxRSS < targetRSSMB
	okAttach := maxAttach < targetAttachMS
	missed := !(okRate && okState && okLost && okCPU && okRSS && okAttach)
	recPara, recRows, recMissed := b.recordSummary()
	missed = missed || recMissed

	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	m := b.machine
	if recRows != "" {
		p("### `sockscope trace` and `sockscope record` benchmark\n\n")
	} else {
		p("### `sockscope trace` benchmark\n\n")
	}
	p("Measured %s on Linux %s, %s, %d CPUs, %.1f GB memory (load average at start: %s, at end: %s).\n",
		m.Date, m.Kernel, m.CPU, m.NumCPU, m.MemoryGB, m.LoadAvg, benchkit.LoadAvg())
	pin := "pinned to CPU " + c.cpu
	if c.cpu == "none" {
		pin = "not pinned"
	}
	p("Workload: `tcpload storm`, one client and one server thread on 127.0.0.1 in a fresh network namespace, %s; "+
		"each connection is connect, accept, server close, client read to EOF, close: %d TCP state transitions. "+
		"%d rounds of %v (after %v warm-up) without a tracer and under `sockscope trace -o json --netns /run/netns/NS > file`, alternating (ABAB)",
		pin, benchkit.TransitionsPerConn, c.rounds, c.duration, c.warmup)
	if recRows != "" {
		p(", each followed in the same pair by rounds under `sockscope record -w FILE --netns /run/netns/NS --interval %v`", recordInterval)
		if b.figures(modeRecordNoSys) != nil {
			p(" and the same with `--syscalls=false`")
		}
		p(" (the traced modes' order rotating from pair to pair; each recording read back and removed)")
	}
	if b.statsOrig != "" {
		more := "one more traced round"
		if b.recStatsRound != nil {
			more = "one more traced round and one more recording round"
		}
		p("; BPF run times from %s with kernel.bpf_stats_enabled=1 (statistics cost time themselves, so the compared rounds run without them)", more)
	}
	p(".\nsockscope binary: %s.\n\n", benchkit.FileID(c.sockscope, "2006-01-02 15:04"))
	p("%s", recPara)

	p("| figure | result | target | met |\n|---|---|---|---|\n")
	p("| connections/s without a tracer (median) | %s | | |\n", benchkit.Thousands(int64(math.Round(medBase))))
	p("| connections/s traced (median) | %s (%+.1f%%) | ≤ %.0f%% fewer | %s |\n",
		benchkit.Thousands(int64(math.Round(medTraced))), (ratio-1)*100, targetSlowdown*100, benchkit.Verdict(okRate))
	p("| state events written | %s of %s (%d per connection) | all | %s |\n",
		benchkit.Thousands(stateLines), benchkit.Thousands(wantState), benchkit.TransitionsPerConn, benchkit.Verdict(okState))
	lostS, lostMet := benchkit.Thousands(lost), benchkit.Verdict(okLost)
	if !lostKnown {
		lostS, lostMet = "unknown (no summary line)", "?"
	}
	p("| lost events (sockscope's summary) | %s | 0 | %s |\n", lostS, lostMet)
	p("| sockscope CPU per connection (median) | %.2f µs | ≤ %.0f µs | %s |\n", medCPU, targetCPUMicros, benchkit.Verdict(okCPU))
	p("| sockscope peak RSS (max) | %.1f MB | < %.0f MB | %s |\n", maxRSS, targetRSSMB, benchkit.Verdict(okRSS))
	p("| time to `attached` (median / max) | %.0f / %.0f ms | < %.0f ms | %s |\n", medAttach, maxAttach, targetAttachMS, benchkit.Verdict(okAttach))
	var bpfNS uint64
	for _, s := range progs {
		bpfNS += s.RunTimeNS
	}
	if bpfNS > 0 && statsConns > 0 {
		p("| BPF run time per connection (statistics round) | %.2f µs | | |\n", float64(bpfNS)/float64(statsConns)/1000)
	}
	p("%s", b.recordStatsRow())
	p("%s", recRows)
	if bt := b.bt; bt != nil {
		p("| bpftrace printing each transition to a file (1 round, for comparison) | %s conn/s (%.2fx), first event %.0f ms after exec, %.1f µs CPU/conn, %.0f MB RSS | | |\n",
			benchkit.Thousands(int64(math.Round(bt.Storm.PerSecond))), bt.Storm.PerSecond/medBase, bt.AttachMS, bt.cpuPerConn(), benchkit.RSSMB(bt.MaxRSSKB))
	}
	p("\n")
	p("%s", b.modeTable())

	if len(progs) > 0 {
		p("BPF programs of sockscope (the statistics round; from `bpftool prog show -j`):\n\n")
		p("| program | runs | runs per connection | ns per run |\n|---|---:|---:|---:|\n")
		for _, s := range sortedStats(progs) {
			p("| %s | %s | %.2f | %.0f |\n", s.Name, benchkit.Thousands(int64(s.RunCnt)), float64(s.RunCnt)/float64(max(statsConns, 1)), s.nsPerRun())
		}
		p("\n")
	}
	p("%s", b.recordProgTable())

	p("Per round:\n\n")
	p("| round | mode | conn/s | vs baseline of the round | connections (all) | state lines (expected) | connect lines | lost | CPU µs/conn | RSS MB | attached ms |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var pairBase float64
	for _, r := range append(append([]*round(nil), b.rounds...), b.btRounds()...) {
		switch r.Mode {
		case modeBaseline:
			pairBase = r.Storm.PerSecond
			p("| %d | baseline | %s | | %s | | | | | | |\n", r.Pair, benchkit.Thousands(int64(r.Storm.PerSecond)), benchkit.Thousands(r.Storm.Total))
		case modeSockscope:
			lostR := "?"
			if r.Summary != nil {
				lostR = benchkit.Thousands(r.Summary.Lost)
			}
			p("| %d | sockscope | %s | %.3fx | %s | %s (%s) | %s | %s | %.2f | %.1f | %.0f |\n", r.Pair, benchkit.Thousands(int64(r.Storm.PerSecond)),
				r.Storm.PerSecond/pairBase, benchkit.Thousands(r.Storm.Total), benchkit.Thousands(r.StateLines), benchkit.Thousands(benchkit.TransitionsPerConn*r.Storm.Total),
				benchkit.Thousands(r.ConnLines), lostR, r.cpuPerConn(), benchkit.RSSMB(r.MaxRSSKB), r.AttachMS)
		case modeBpftrace:
			p("| %d | bpftrace | %s | %.3fx (median) | %s | %s (%s, system-wide) | | %s | %.2f | %.1f | %.0f |\n", r.Pair, benchkit.Thousands(int64(r.Storm.PerSecond)),
				r.Storm.PerSecond/medBase, benchkit.Thousands(r.Storm.Total), benchkit.Thousands(r.StateLines), benchkit.Thousands(benchkit.TransitionsPerConn*r.Storm.Total),
				benchkit.Thousands(r.BpftraceLost), r.cpuPerConn(), benchkit.RSSMB(r.MaxRSSKB), r.AttachMS)
		}
	}
	p("\n")
	p("%s", b.recordRoundTable())

	var notes []string
	notes = append(notes, b.notes...)
	if extra := stateLines - wantState; extra != 0 {
		notes = append(notes, fmt.Sprintf("State lines minus %d × connections: %+d (each storm's listener adds 2: CLOSE->LISTEN, LISTEN->CLOSE).", benchkit.TransitionsPerConn, extra))
	}
	if otherLines > 0 {
		notes = append(notes, fmt.Sprintf("%s output lines were neither `\"type\":\"state\"` nor `\"type\":\"connect\"`.", benchkit.Thousands(otherLines)))
	}
	notes = append(notes, b.recordNotes()...)
	if len(lostLines) > 0 {
		notes = append(notes, fmt.Sprintf("sockscope reported lost events during the run %d times, e.g. `%s`.", len(lostLines), lostLines[0]))
	}
	if s := b.stalls(); s != "" {
		notes = append(notes, s)
	}
	if len(stormErrs) > 0 {
		notes = append(notes, fmt.Sprintf("The storm's connect() failed: %v.", stormErrs))
	}
	if len(progNotes) > 0 {
		notes = append(notes, "BPF run times: "+progNotes[0]+".")
	}
	if f := b.foreignList(); len(f) > 0 {
		notes = append(notes, "Other tracing BPF programs were loaded during the run and may have slowed both modes: "+strings.Join(f, ", ")+".")
	}
	if b.bt != nil {
		notes = append(notes, fmt.Sprintf("bpftrace prints \"Attaching N probes...\" before it attaches (here %.0f ms after exec); its time to attach is the first event seen for a probe connection made every 2 ms. Its lines count every transition on the machine.", b.bt.AttachingMS))
	} else if b.btNote != "" {
		notes = append(notes, "No bpftrace comparison: "+b.btNote+".")
	}
	benchkit.WriteNotes(&w, notes)
	return w.String(), missed
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
