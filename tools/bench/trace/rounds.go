package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// summary is sockscope's final stderr line:
// "sockscope: N events (S state, C connect), L lost".
type summary struct {
	Events, State, Connect, Lost int64
}

var summaryRE = regexp.MustCompile(`sockscope: (\d+) events \((\d+) state, (\d+) connect\), (\d+) lost`)

func parseSummary(line string) (*summary, bool) {
	m := summaryRE.FindStringSubmatch(line)
	if m == nil {
		return nil, false
	}
	var v [4]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(m[i+1], 10, 64)
	}
	return &summary{Events: v[0], State: v[1], Connect: v[2], Lost: v[3]}, true
}

const (
	modeBaseline  = "baseline"
	modeSockscope = "sockscope"
	modeBpftrace  = "bpftrace"
	modeStats     = "sockscope+stats"
	// The recording modes (record.go): `sockscope record`, with and without syscall counters.
	modeRecord      = "record"
	modeRecordNoSys = "record --syscalls=false"
	modeRecordStats = "record+stats"
	// The floors (modes.go).
	modeFloorState   = "floor"
	modeFloorState2  = "floor×2"
	modeFloorConnect = "floor-connect"
	modeFloorSysExit = "floor-sysexit"
	modeFloorWriter  = "floor-writer"
)

// round holds the figures of one storm.
type round struct {
	Pair  int
	Mode  string
	Storm benchkit.StormResult

	// Tracer figures (traced and bpftrace rounds).
	AttachMS     float64 // exec to the "attached" line (bpftrace: to the first probe event)
	AttachingMS  float64 // bpftrace: exec to its "Attaching N probes..." line
	CPUMicros    float64 // utime+stime of the tracer process
	AttachCPU    float64 // ms of it spent until the "attached" line (sockscope; -1 if unknown)
	MaxRSSKB     int64
	StateLines   int64 // bpftrace: event lines
	ConnLines    int64
	OtherLines   int64
	PairedLines  int64    // connect lines that came from the same ring record as the state line before them
	Summary      *summary // sockscope's final line, nil if it did not print one
	LostLines    []string // stderr lines about lost events during the run
	BpftraceLost int64    // bpftrace: sum of its "Lost N events" lines
	Progs        map[string]*progStat
	ProgsNote    string

	FloorRecords int64 // the writer floor's records

	// Recording rounds.
	Rec  *recSummary // `sockscope record`'s final line, nil if it did not print one
	File recFile     // what the recording holds
}

// ringRecords is how many ring-buffer records a trace round's JSON lines came from: a record
// that concludes a connect prints two lines, state then connect.
func (r *round) ringRecords() int64 { return r.StateLines + r.ConnLines - r.PairedLines }

func (r *round) cpuPerConn() float64 {
	if r.Storm.Total == 0 {
		return 0
	}
	return r.CPUMicros / float64(r.Storm.Total)
}

// cpuAfterAttach is the tracer's CPU per connection without what it used before it attached
// (loading its programs): NaN if that is unknown.
func (r *round) cpuAfterAttach() float64 {
	if r.Storm.Total == 0 || r.AttachCPU < 0 {
		return math.NaN()
	}
	return (r.CPUMicros - r.AttachCPU*1000) / float64(r.Storm.Total)
}

// storm runs one `tcpload storm` in the benchmark's netns, pinned as configured.
func (b *bench) storm() (benchkit.StormResult, error) {
	c := b.cfg
	return benchkit.RunStorm(c.tcpload, b.ns, c.cpu, c.port, c.duration, c.warmup)
}

// stderrLog reads a tracer's stderr: it notes when a line starting with attachPrefix arrives,
// sockscope's summary line, lines about lost events, and keeps the last lines for errors.
type stderrLog struct {
	attachPrefix string
	attached     chan struct{}
	done         chan struct{}

	mu         sync.Mutex
	attachedAt time.Time
	summary    *summary
	recSummary *recSummary
	lost       []string
	tail       benchkit.Tail
}

func newStderrLog(r io.ReadCloser, attachPrefix string) *stderrLog {
	l := &stderrLog{attachPrefix: attachPrefix, attached: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer r.Close()
		s := bufio.NewScanner(r)
		s.Buffer(make([]byte, 64*1024), 1<<20)
		for s.Scan() {
			l.line(s.Text(), time.Now())
		}
	}()
	return l
}

func (l *stderrLog) line(line string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.attachPrefix != "" && l.attachedAt.IsZero() && strings.HasPrefix(line, l.attachPrefix) {
		l.attachedAt = now
		close(l.attached)
	}
	if s, ok := parseSummary(line); ok {
		l.summary = s
	} else if s, ok := parseRecSummary(line); ok {
		l.recSummary = s
	} else if strings.Contains(strings.ToLower(line), "lost") && len(l.lost) < 1000 {
		l.lost = append(l.lost, line)
	}
	l.tail.Add(line)
}

// wait waits for the stderr pipe to reach EOF (all writers gone), at most timeout.
func (l *stderrLog) wait(timeout time.Duration) {
	select {
	case <-l.done:
	case <-time.After(timeout):
	}
}

func (l *stderrLog) tailString() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tail.String()
}

// tracer is a running tracer whose stdout goes to a file.
type tracer struct {
	p       *benchkit.Proc
	log     *stderrLog
	outPath string
}

func (b *bench) startTracer(name, outPath, attachPrefix string, argv ...string) (*tracer, error) {
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, pw
	p, err := benchkit.StartProc(name, cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, err
	}
	return &tracer{p: p, log: newStderrLog(pr, attachPrefix), outPath: outPath}, nil
}

// stop sends SIGINT and waits for a clean exit.
func (t *tracer) stop(timeout time.Duration) error {
	t.p.Signal(syscall.SIGINT)
	err := t.p.Wait(timeout)
	t.log.wait(5 * time.Second)
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s exited with %v after SIGINT; stderr: %s", t.p.Name, ee.ProcessState, t.log.tailString())
		}
		return fmt.Errorf("%s after SIGINT: %v; stderr: %s", t.p.Name, err, t.log.tailString())
	}
	return nil
}

func (t *tracer) abort() {
	t.p.Kill()
	t.p.Wait(10 * time.Second)
}

func (t *tracer) usage(r *round) {
	if ru := t.p.Rusage(); ru != nil {
		r.CPUMicros = float64(ru.Utime.Sec*1e6+ru.Utime.Usec) + float64(ru.Stime.Sec*1e6+ru.Stime.Usec)
		r.MaxRSSKB = ru.Maxrss
	}
}

// progStats reads the run statistics of the BPF programs that the tracer holds, just before it
// is stopped.
func (b *bench) progStats(r *round, pid int) {
	r.Progs = map[string]*progStat{}
	if b.bpftool == "" {
		r.ProgsNote = "bpftool not found"
		return
	}
	ids := progIDsOf(pid)
	if len(ids) == 0 {
		r.ProgsNote = "no BPF program fds found in /proc/PID/fdinfo"
		return
	}
	progs, err := bpftoolProgs(b.bpftool)
	if err != nil {
		r.ProgsNote = err.Error()
		return
	}
	b.addForeign(progs, ids)
	if addProgStats(r.Progs, progs, ids) == 0 {
		r.ProgsNote = "bpftool did not list the tracer's programs"
	}
}

// bpfStats turns kernel.bpf_stats_enabled on and returns a function that restores it.
func (b *bench) bpfStats() func() {
	if b.statsOrig == "" || b.statsOrig == "1" {
		return func() {}
	}
	if err := writeSysctl(bpfStatsPath, "1"); err != nil {
		benchkit.Logf("cannot enable BPF stats: %v", err)
		return func() {}
	}
	return func() {
		if err := writeSysctl(bpfStatsPath, b.statsOrig); err != nil {
			benchkit.Logf("restoring %s: %v", bpfStatsPath, err)
		}
	}
}

// tracedRound runs the storm under `sockscope trace -o json --netns NS > file`. With stats,
// kernel.bpf_stats_enabled is on and the programs' run times are read; the statistics cost
// time themselves, so the rounds compared with the baseline run without them.
func (b *bench) tracedRound(r *round, bin string, stats bool) (err error) {
	if stats {
		restore := b.bpfStats()
		defer restore()
	}
	outPath := b.tracePath(r)
	defer os.Remove(outPath)

	t, err := b.startTracer("sockscope", outPath, "sockscope: attached",
		bin, "trace", "-o", "json", "--netns", b.nsPath)
	if err != nil {
		return err
	}
	if err := b.attachedStorm(t, r, stats); err != nil {
		return err
	}
	t.log.mu.Lock()
	r.Summary, r.LostLines = t.log.summary, t.log.lost
	t.log.mu.Unlock()
	if r.Summary != nil && len(r.LostLines) > 0 {
		// The summary line mentions "lost" too but is parsed separately.
		r.LostLines = dropSummary(r.LostLines)
	}
	var n lineCounts
	n, err = countEvents(outPath)
	r.StateLines, r.ConnLines, r.OtherLines, r.PairedLines = n.State, n.Connect, n.Other, n.Paired
	return err
}

// attachedStorm waits for t's "sockscope: attached" line, runs the storm, and stops t with SIGINT,
// filling the round's attach time, storm and the tracer's resource usage. With stats, the BPF
// run statistics of t's programs are read before it stops. t is killed on any error.
func (b *bench) attachedStorm(t *tracer, r *round, stats bool) (err error) {
	stopped := false
	defer func() {
		if !stopped {
			t.abort()
		}
	}()

	name := t.p.Name
	select {
	case <-t.log.attached:
		r.AttachCPU = cpuMillis(t.p.Pid())
		t.log.mu.Lock()
		r.AttachMS = benchkit.Millis(t.log.attachedAt.Sub(t.p.Start))
		t.log.mu.Unlock()
	case <-t.p.Done:
		t.log.wait(2 * time.Second)
		return fmt.Errorf("%s exited before attaching (%v); stderr: %s", name, t.p.Err, t.log.tailString())
	case <-time.After(b.cfg.attachTimeout):
		return fmt.Errorf("%s printed no 'sockscope: attached' line within %v; stderr: %s", name, b.cfg.attachTimeout, t.log.tailString())
	}

	if r.Storm, err = b.storm(); err != nil {
		return err
	}
	if t.p.Exited() {
		t.log.wait(2 * time.Second)
		return fmt.Errorf("%s exited during the storm (%v); stderr: %s", name, t.p.Err, t.log.tailString())
	}
	if stats {
		b.progStats(r, t.p.Pid())
	}

	stopped = true
	if err := t.stop(b.cfg.exitTimeout); err != nil {
		return err
	}
	t.usage(r)
	return nil
}

func dropSummary(lines []string) []string {
	var out []string
	for _, l := range lines {
		if _, ok := parseSummary(l); !ok {
			out = append(out, l)
		}
	}
	return out
}

var (
	stateTag   = []byte(`"type":"state"`)
	connectTag = []byte(`"type":"connect"`)
)

// lineCounts are the JSON lines of a sockscope trace output by type. Lines that are not JSON
// objects with a known type count as other. Paired counts the connect lines that directly follow
// a state line of the same event (same time, socket and transition): one ring record that
// concludes a connect is printed as both.
type lineCounts struct {
	State, Connect, Other, Paired int64
}

func countEvents(path string) (lineCounts, error) {
	f, err := os.Open(path)
	if err != nil {
		return lineCounts{}, err
	}
	defer f.Close()
	return countLines(f)
}

func countEventsReader(rd io.Reader) (state, connect, other int64, err error) {
	n, err := countLines(rd)
	return n.State, n.Connect, n.Other, err
}

func countLines(rd io.Reader) (n lineCounts, err error) {
	r := bufio.NewReaderSize(rd, 1<<20)
	var prevKey, key []byte // prevKey: the record key of the previous line if it was a state line
	prevState := false
	for {
		line, rerr := r.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull {
			long := append([]byte(nil), line...)
			for rerr == bufio.ErrBufferFull {
				line, rerr = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(bytes.TrimSpace(line)) > 0 {
			switch eventType(line) {
			case "state":
				n.State++
				prevKey, prevState = recordKey(prevKey[:0], line), true
			case "connect":
				n.Connect++
				if prevState {
					key = recordKey(key[:0], line)
					if key != nil && bytes.Equal(key, prevKey) {
						n.Paired++
					}
				}
				prevState = false
			default:
				n.Other++
				prevState = false
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

var (
	typeField = []byte(`"type":"`)
	prevField = []byte(`,"prev_state_us"`)
)

// recordKey appends to dst what the two lines of one ring record share: the line without its
// type and from "prev_state_us" on (the fields that differ between the state and the connect
// line). It returns nil for a line of another shape.
func recordKey(dst, line []byte) []byte {
	i := bytes.Index(line, typeField)
	if i < 0 {
		return nil
	}
	j := bytes.IndexByte(line[i+len(typeField):], '"')
	if j < 0 {
		return nil
	}
	j += i + len(typeField) + 1
	k := bytes.Index(line[j:], prevField)
	if k < 0 {
		return nil
	}
	dst = append(dst, line[:i]...)
	return append(dst, line[j:j+k]...)
}

func eventType(line []byte) string {
	switch {
	case bytes.Contains(line, stateTag):
		return "state"
	case bytes.Contains(line, connectTag):
		return "connect"
	}
	var v struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(line, &v) != nil {
		return ""
	}
	return v.Type
}

// bpftraceProg is the comparison: print every state change to a file.
const bpftraceProg = `tracepoint:sock:inet_sock_set_state { printf("%d %d %d\n", pid, args->oldstate, args->newstate); }`

// bpftraceRound runs one storm under bpftrace. bpftrace prints "Attaching N probes..." before
// it attaches, so readiness is detected by probing: a connection attempt from this process
// inside the netns every 2 ms until its CLOSE->SYN_SENT line ("PID 7 2") shows up in the file.
func (b *bench) bpftraceRound(bpftrace string, r *round) (err error) {
	if err := ensureTracefs(); err != nil {
		return err
	}
	restore := b.bpfStats()
	defer restore()
	outPath := filepath.Join(b.tmp, "bpftrace.out")
	defer os.Remove(outPath)

	t, err := b.startTracer("bpftrace", outPath, "", bpftrace, "-e", bpftraceProg)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			t.abort()
		}
	}()

	f, err := os.Open(outPath)
	if err != nil {
		return err
	}
	defer f.Close()
	marker := fmt.Sprintf("%d 7 2", os.Getpid())
	limit := b.cfg.attachTimeout + 30*time.Second // bpftrace is slow to start
	deadline := time.Now().Add(limit)
	var pending []byte
	buf := make([]byte, 64*1024)
	for ready := false; !ready; {
		if t.p.Exited() {
			t.log.wait(2 * time.Second)
			return fmt.Errorf("bpftrace exited before attaching (%v); stderr: %s", t.p.Err, t.log.tailString())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bpftrace showed no event within %v; stderr: %s", limit, t.log.tailString())
		}
		if err := b.prober.probe(); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
		for {
			n, _ := f.Read(buf)
			if n == 0 {
				break
			}
			pending = append(pending, buf[:n]...)
		}
		now := time.Now()
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			line := string(pending[:i])
			pending = pending[i+1:]
			if r.AttachingMS == 0 && strings.HasPrefix(line, "Attaching") {
				r.AttachingMS = benchkit.Millis(now.Sub(t.p.Start))
			}
			if line == marker {
				r.AttachMS = benchkit.Millis(now.Sub(t.p.Start))
				ready = true
			}
		}
	}

	if r.Storm, err = b.storm(); err != nil {
		return err
	}
	b.progStats(r, t.p.Pid())
	stopped = true
	if err := t.stop(b.cfg.exitTimeout); err != nil {
		return err
	}
	t.usage(r)
	r.StateLines, r.BpftraceLost, r.OtherLines, err = countBpftrace(outPath)
	return err
}

var lostRE = regexp.MustCompile(`^Lost (\d+) events`)

// countBpftrace counts bpftrace's event lines ("PID OLD NEW") and its "Lost N events" lines.
func countBpftrace(path string) (events, lost, other int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1<<20)
	for s.Scan() {
		line := s.Text()
		if m := lostRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			lost += n
			continue
		}
		if isEventLine(line) {
			events++
		} else if line != "" {
			other++
		}
	}
	return events, lost, other, s.Err()
}

// isEventLine tells whether line is one of the bpftrace program's "PID OLD NEW" lines (and not,
// say, "Attaching 1 probe...").
func isEventLine(line string) bool {
	f := strings.Fields(line)
	if len(f) != 3 {
		return false
	}
	for _, s := range f {
		if _, err := strconv.ParseUint(s, 10, 64); err != nil {
			return false
		}
	}
	return true
}
