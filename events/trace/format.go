package trace

import (
	"strconv"
	"time"

	"github.com/sockscope/sockscope/events"
)

// Formatter writes events as JSON lines or table rows. Formatting a time is the costliest part
// of a line, so it keeps the current second formatted and appends only the fraction.
type Formatter struct {
	clock    events.Clock
	sec      int64
	jsonSec  []byte // "2006-01-02T15:04:05." in UTC
	tableSec []byte // "15:04:05." in local time
	stamp    []byte
}

// NewFormatter returns a Formatter converting kernel timestamps with clock.
func NewFormatter(clock events.Clock) *Formatter {
	return &Formatter{clock: clock, sec: -1}
}

func (f *Formatter) second(wall time.Time) {
	if s := wall.Unix(); s != f.sec {
		f.sec = s
		f.jsonSec = wall.UTC().AppendFormat(f.jsonSec[:0], "2006-01-02T15:04:05.")
		f.tableSec = wall.Local().AppendFormat(f.tableSec[:0], "15:04:05.")
	}
}

// appendFraction appends n as exactly digits decimal digits.
func appendFraction(b []byte, n int, digits int) []byte {
	var d [9]byte
	for i := digits - 1; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, d[:digits]...)
}

// AppendJSON appends one JSON line per type the event carries ("state", then "connect").
// Every line has every key, so consumers see one schema; keys that do not apply hold zero values.
// n names the event's network namespace (zero when nobody can name it).
// The time is RFC 3339 in UTC with nanoseconds.
func (f *Formatter) AppendJSON(b []byte, e *Event, n events.Name) []byte {
	wall := f.clock.Wall(e.Mono)
	f.second(wall)
	f.stamp = appendFraction(append(f.stamp[:0], f.jsonSec...), wall.Nanosecond(), 9)
	f.stamp = append(f.stamp, 'Z')
	if e.Kind&KindState != 0 {
		b = appendJSONLine(b, "state", e, f.stamp, n)
	}
	if e.Kind&KindConnect != 0 {
		b = appendJSONLine(b, "connect", e, f.stamp, n)
	}
	return b
}

func appendJSONLine(b []byte, typ string, e *Event, stamp []byte, n events.Name) []byte {
	b = append(b, `{"time":"`...)
	b = append(b, stamp...)
	b = append(b, `","type":"`...)
	b = append(b, typ...)
	b = append(b, `",`...)
	b = events.AppendNameJSON(b, n)
	b = append(b, `,"netns":`...)
	b = strconv.AppendUint(b, uint64(e.Netns), 10)
	b = append(b, `,"pid":`...)
	b = strconv.AppendUint(b, uint64(e.Pid), 10)
	b = append(b, `,"comm":`...)
	b = events.AppendJSONString(b, e.CommString())
	b = append(b, `,"family":"`...)
	b = append(b, e.FamilyName()...)
	b = append(b, `","saddr":"`...)
	b = e.Saddr.AppendTo(b)
	b = append(b, `","sport":`...)
	b = strconv.AppendUint(b, uint64(e.Sport), 10)
	b = append(b, `,"daddr":"`...)
	b = e.Daddr.AppendTo(b)
	b = append(b, `","dport":`...)
	b = strconv.AppendUint(b, uint64(e.Dport), 10)
	b = append(b, `,"old_state":"`...)
	b = append(b, e.OldState.String()...)
	b = append(b, `","new_state":"`...)
	b = append(b, e.NewState.String()...)
	b = append(b, `","prev_state_us":`...)
	if typ == "state" {
		b = strconv.AppendInt(b, e.PrevState.Microseconds(), 10)
	} else {
		b = append(b, '0')
	}
	b = append(b, `,"errno":"`...)
	if typ == "connect" {
		b = append(b, events.ErrnoName(e.Errno)...)
	}
	b = append(b, `","latency_us":`...)
	if typ == "connect" {
		b = strconv.AppendInt(b, e.Latency.Microseconds(), 10)
		b = append(b, `,"latency_ns":`...)
		b = strconv.AppendInt(b, e.Latency.Nanoseconds(), 10)
	} else {
		b = append(b, `0,"latency_ns":0`...)
	}
	return append(b, "}\n"...)
}

// Table columns: like tcpstates, plus the container and the connect outcome.
var tableColumns = []struct {
	name  string
	width int // negative: left-aligned
}{
	{"TIME", -12}, {"CONTAINER", -16}, {"PID", 7}, {"COMM", -15}, {"LOCAL", -21}, {"REMOTE", -21},
	{"OLDSTATE", -11}, {"NEWSTATE", -11}, {"PREV_MS", 9}, {"CONNECT", 0},
}

// AppendTableHeader appends the table's header line.
func AppendTableHeader(b []byte) []byte {
	for i, c := range tableColumns {
		if i > 0 {
			b = append(b, ' ')
		}
		b = events.Pad(b, c.name, c.width)
	}
	return append(b, '\n')
}

// AppendTableRow appends one row per record: a transition that concluded a connect shows its
// outcome in the CONNECT column on the same row. container is the namespace's display name. Names
// are shown Printable: any process sets its own command name.
// The time is local, to the millisecond.
func (f *Formatter) AppendTableRow(b []byte, e *Event, container string) []byte {
	var scratch [64]byte
	wall := f.clock.Wall(e.Mono)
	f.second(wall)
	col := 0
	field := func(s []byte) {
		if col > 0 {
			b = append(b, ' ')
		}
		b = events.Pad(b, string(s), tableColumns[col].width)
		col++
	}
	field(appendFraction(append(scratch[:0], f.tableSec...), wall.Nanosecond()/1e6, 3))
	field([]byte(events.Printable(container)))
	pid := scratch[:0]
	if e.Pid != 0 {
		pid = strconv.AppendUint(pid, uint64(e.Pid), 10)
	} else {
		pid = append(pid, '-')
	}
	field(pid)
	comm := e.CommString()
	if comm == "" {
		comm = "-"
	}
	field(events.AppendPrintable(scratch[:0], comm))
	field(events.AppendHostPort(scratch[:0], e.Saddr, e.Sport))
	field(events.AppendHostPort(scratch[:0], e.Daddr, e.Dport))
	if e.Kind&KindState != 0 {
		field([]byte(e.OldState.String()))
		field([]byte(e.NewState.String()))
		field(strconv.AppendFloat(scratch[:0], float64(e.PrevState.Microseconds())/1000, 'f', 3, 64))
	} else {
		field([]byte("-"))
		field([]byte("-"))
		field([]byte("-"))
	}
	if e.Kind&KindConnect != 0 {
		out := scratch[:0]
		if e.Errno == 0 {
			out = append(out, "ok"...)
		} else {
			out = append(out, events.ErrnoName(e.Errno)...)
		}
		out = append(out, ' ')
		out = strconv.AppendFloat(out, float64(e.Latency.Microseconds())/1000, 'f', 3, 64)
		out = append(out, "ms"...)
		field(out)
	} else {
		field(nil)
	}
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return append(b, '\n')
}
