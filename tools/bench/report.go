package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Targets for sockscope.
const (
	targetSlowdown  = 0.03  // at most 3% fewer connections/s
	targetCPUMicros = 5.0   // sockscope CPU per connection
	targetAttachMS  = 150.0 // exec to "attached"
	targetRSSMB     = 30.0  // peak RSS, MB (10^6 bytes)
)

// transitionsPerConn is what one storm connection makes: client CLOSE->SYN_SENT->ESTABLISHED->
// CLOSE_WAIT->LAST_ACK->CLOSE, server LISTEN->SYN_RECV->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->CLOSE.
// Each storm adds 2 more: its listener's CLOSE->LISTEN and LISTEN->CLOSE.
const transitionsPerConn = 10

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func maxOf(v []float64) float64 {
	m := math.NaN()
	for _, x := range v {
		if math.IsNaN(m) || x > m {
			m = x
		}
	}
	return m
}

// thousands formats n with thousands separators.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func rssMB(kb int64) float64 { return float64(kb) * 1024 / 1e6 }

func verdict(ok, known bool) string {
	switch {
	case !known:
		return "?"
	case ok:
		return "yes"
	default:
		return "**no**"
	}
}

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
		rss = append(rss, rssMB(r.MaxRSSKB))
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
	medBase, medTraced := median(baseRates), median(tracedRates)
	ratio := medTraced / medBase
	wantState := transitionsPerConn * totalConns
	medCPU, maxRSS := median(cpu), maxOf(rss)
	medAttach, maxAttach := median(attach), maxOf(attach)

	okRate := ratio >= 1-targetSlowdown
	okState := stateLines >= wantState
	okLost := lostKnown && lost == 0
	okCPU := medCPU <= targetCPUMicros
	okRSS := maxRSS < targetRSSMB
	okAttach := maxAttach < targetAttachMS
	missed := !(okRate && okState && okLost && okCPU && okRSS && okAttach)

	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	m := b.machine
	p("### `sockscope trace` benchmark\n\n")
	p("Measured %s on Linux %s, %s, %d CPUs, %.1f GB memory (load average at start: %s, at end: %s).\n",
		m.Date, m.Kernel, m.CPU, m.NumCPU, m.MemoryGB, m.LoadAvg, loadAvg())
	pin := "pinned to CPU " + c.cpu
	if c.cpu == "none" {
		pin = "not pinned"
	}
	p("Workload: `tcpload storm`, one client and one server thread on 127.0.0.1 in a fresh network namespace, %s; "+
		"each connection is connect, accept, server close, client read to EOF, close: %d TCP state transitions. "+
		"%d rounds of %v (after %v warm-up) without a tracer and under `sockscope trace -o json --netns /run/netns/NS > file`, alternating (ABAB)",
		pin, transitionsPerConn, c.rounds, c.duration, c.warmup)
	if b.statsOrig != "" {
		p("; BPF run times from one more traced round with kernel.bpf_stats_enabled=1 (statistics cost time themselves, so the compared rounds run without them)")
	}
	p(".\nsockscope binary: %s.\n\n", fileID(c.sockscope))

	p("| figure | result | target | met |\n|---|---|---|---|\n")
	p("| connections/s without a tracer (median) | %s | | |\n", thousands(int64(math.Round(medBase))))
	p("| connections/s traced (median) | %s (%+.1f%%) | ≤ %.0f%% fewer | %s |\n",
		thousands(int64(math.Round(medTraced))), (ratio-1)*100, targetSlowdown*100, verdict(okRate, true))
	p("| state events written | %s of %s (%d per connection) | all | %s |\n",
		thousands(stateLines), thousands(wantState), transitionsPerConn, verdict(okState, true))
	lostS := thousands(lost)
	if !lostKnown {
		lostS = "unknown (no summary line)"
	}
	p("| lost events (sockscope's summary) | %s | 0 | %s |\n", lostS, verdict(okLost, lostKnown))
	p("| sockscope CPU per connection (median) | %.2f µs | ≤ %.0f µs | %s |\n", medCPU, targetCPUMicros, verdict(okCPU, true))
	p("| sockscope peak RSS (max) | %.1f MB | < %.0f MB | %s |\n", maxRSS, targetRSSMB, verdict(okRSS, true))
	p("| time to `attached` (median / max) | %.0f / %.0f ms | < %.0f ms | %s |\n", medAttach, maxAttach, targetAttachMS, verdict(okAttach, true))
	var bpfNS uint64
	for _, s := range progs {
		bpfNS += s.RunTimeNS
	}
	if bpfNS > 0 && statsConns > 0 {
		p("| BPF run time per connection (statistics round) | %.2f µs | | |\n", float64(bpfNS)/float64(statsConns)/1000)
	}
	if bt := b.bt; bt != nil {
		p("| bpftrace printing each transition to a file (1 round, for comparison) | %s conn/s (%.2fx), first event %.0f ms after exec, %.1f µs CPU/conn, %.0f MB RSS | | |\n",
			thousands(int64(math.Round(bt.Storm.PerSecond))), bt.Storm.PerSecond/medBase, bt.AttachMS, bt.cpuPerConn(), rssMB(bt.MaxRSSKB))
	}
	p("\n")

	if len(progs) > 0 {
		p("BPF programs of sockscope (the statistics round; from `bpftool prog show -j`):\n\n")
		p("| program | runs | runs per connection | ns per run |\n|---|---:|---:|---:|\n")
		for _, s := range sortedStats(progs) {
			p("| %s | %s | %.2f | %.0f |\n", s.Name, thousands(int64(s.RunCnt)), float64(s.RunCnt)/float64(max(statsConns, 1)), s.nsPerRun())
		}
		p("\n")
	}

	p("Per round:\n\n")
	p("| round | mode | conn/s | vs baseline of the round | connections (all) | state lines (expected) | connect lines | lost | CPU µs/conn | RSS MB | attached ms |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var pairBase float64
	for _, r := range append(append([]*round(nil), b.rounds...), b.btRounds()...) {
		switch r.Mode {
		case modeBaseline:
			pairBase = r.Storm.PerSecond
			p("| %d | baseline | %s | | %s | | | | | | |\n", r.Pair, thousands(int64(r.Storm.PerSecond)), thousands(r.Storm.Total))
		case modeSockscope:
			lostR := "?"
			if r.Summary != nil {
				lostR = thousands(r.Summary.Lost)
			}
			p("| %d | sockscope | %s | %.3fx | %s | %s (%s) | %s | %s | %.2f | %.1f | %.0f |\n", r.Pair, thousands(int64(r.Storm.PerSecond)),
				r.Storm.PerSecond/pairBase, thousands(r.Storm.Total), thousands(r.StateLines), thousands(transitionsPerConn*r.Storm.Total),
				thousands(r.ConnLines), lostR, r.cpuPerConn(), rssMB(r.MaxRSSKB), r.AttachMS)
		case modeBpftrace:
			p("| %d | bpftrace | %s | %.3fx (median) | %s | %s (%s, system-wide) | | %s | %.2f | %.1f | %.0f |\n", r.Pair, thousands(int64(r.Storm.PerSecond)),
				r.Storm.PerSecond/medBase, thousands(r.Storm.Total), thousands(r.StateLines), thousands(transitionsPerConn*r.Storm.Total),
				thousands(r.BpftraceLost), r.cpuPerConn(), rssMB(r.MaxRSSKB), r.AttachMS)
		}
	}
	p("\n")

	var notes []string
	notes = append(notes, b.notes...)
	if extra := stateLines - wantState; extra != 0 {
		notes = append(notes, fmt.Sprintf("State lines minus %d × connections: %+d (each storm's listener adds 2: CLOSE->LISTEN, LISTEN->CLOSE).", transitionsPerConn, extra))
	}
	if otherLines > 0 {
		notes = append(notes, fmt.Sprintf("%s output lines were neither `\"type\":\"state\"` nor `\"type\":\"connect\"`.", thousands(otherLines)))
	}
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
	if len(notes) > 0 {
		p("Notes:\n")
		for _, n := range notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	return w.String(), missed
}

func (b *bench) btRounds() []*round {
	if b.bt == nil {
		return nil
	}
	return []*round{b.bt}
}

// stallMS is the slowest single storm connection that still counts as normal. A loopback
// connection takes tens of µs; one taking this long means the storm's CPU was taken away (other
// work pinned to the same CPU, a busy machine) and the round's rate is not comparable.
const stallMS = 200

// stalls describes the rounds whose storm had a connection slower than stallMS.
func (b *bench) stalls() string {
	all := append(append([]*round(nil), b.rounds...), b.btRounds()...)
	if b.statsRound != nil {
		all = append(all, b.statsRound)
	}
	var s []string
	for _, r := range all {
		if r.Storm.MaxConnMS >= stallMS {
			s = append(s, fmt.Sprintf("round %d %s: %.0f ms", r.Pair, r.Mode, r.Storm.MaxConnMS))
		}
	}
	if len(s) == 0 {
		return ""
	}
	return "The storm stalled (slowest connection) in " + strings.Join(s, "; ") +
		": its CPU was taken by something else during the round, so compare those rates with care or run again on a quiet machine."
}
