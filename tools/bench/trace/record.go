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
	"time"

	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/recording"
	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
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
	var ev trace.Event
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
			for p := blk.Payload; len(p) >= trace.RecordSize; p = p[trace.RecordSize:] {
				rf.Events++
				if trace.Decode(p, &ev) == nil {
					if ev.Kind&trace.KindState != 0 {
						rf.State++
					}
					if ev.Kind&trace.KindConnect != 0 {
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
func rotate[T any](modes []T, n int) []T {
	if len(modes) == 0 {
		return nil
	}
	n %= len(modes)
	return append(append([]T(nil), modes[n:]...), modes[:n]...)
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
	// The same against the floor of the same round (NaN without a floor round).
	MedFloor, MinFloor, MaxFloor float64
	MedStormCPU                  float64 // µs of the storm's own CPU per connection
	MedCPU                       float64 // µs of the tracer's CPU per connection
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
	floor := map[int]float64{}
	for _, r := range b.rounds {
		if r.Mode == modeFloor {
			floor[r.Pair] = r.Storm.PerSecond
		}
	}
	var rates, ratios, vsFloor, stormCPU, cpu, cpuAfter, attachCPU, rss, attach []float64
	for _, r := range b.rounds {
		if r.Mode != mode {
			continue
		}
		f.Rounds++
		rates = append(rates, r.Storm.PerSecond)
		if pb := base[r.Pair]; pb > 0 {
			ratios = append(ratios, r.Storm.PerSecond/pb)
		}
		if fl := floor[r.Pair]; fl > 0 {
			vsFloor = append(vsFloor, r.Storm.PerSecond/fl)
		}
		stormCPU = append(stormCPU, r.Storm.CPUPerConn())
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
		case isTrace(mode):
			if r.Summary == nil {
				f.LostKnown = false
			} else {
				f.Lost += r.Summary.Lost
			}
			f.Records += r.ringRecords()
		case mode == modeFloorWriter:
			f.Records += r.FloorRecords
		}
	}
	if f.Rounds == 0 {
		return nil
	}
	f.MedRate, f.MedRatio = benchkit.Median(rates), benchkit.Median(ratios)
	f.MinRatio, f.MaxRatio = benchkit.MinMax(ratios)
	f.MedFloor = benchkit.Median(vsFloor)
	f.MinFloor, f.MaxFloor = benchkit.MinMax(vsFloor)
	f.MedStormCPU = benchkit.Median(stormCPU)
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
