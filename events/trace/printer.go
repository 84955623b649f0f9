package trace

import (
	"fmt"
	"io"
	"strconv"

	"github.com/sockscope/sockscope/events"
)

// WriteChunk is how much output a Printer gathers before one write: events are appended straight
// into its buffer, so each byte is copied once before the kernel takes it.
const WriteChunk = 128 << 10

// Printer writes events as `sockscope trace` prints them, live or replayed: a table with its
// header, or JSON lines. It counts what it printed, and says when a limit of lines is reached.
type Printer struct {
	w     io.Writer
	buf   []byte
	fmtr  *Formatter
	json  bool
	limit int // output lines; 0: no limit

	lines            int
	nState, nConnect uint64
}

// NewPrinter prints to w, with times from clock, as JSON lines or a table (whose header it
// gathers at once), up to limit lines (0: no limit).
func NewPrinter(w io.Writer, clock events.Clock, json bool, limit int) *Printer {
	p := &Printer{w: w, buf: make([]byte, 0, WriteChunk+4096), fmtr: NewFormatter(clock), json: json, limit: limit}
	if !json {
		p.buf = AppendTableHeader(p.buf)
	}
	return p
}

// Add appends one event, named as given (named=false: the namespace has no name, the table
// shows its inode). It reports true once the limit of lines is out.
func (p *Printer) Add(ev *Event, name events.Name, named bool) bool {
	// The limit counts output lines. A record that concludes a connect makes two JSON lines
	// (state, then connect): when only one more is allowed, print only the first.
	if p.limit > 0 && p.json && ev.Kind == KindState|KindConnect && p.limit-p.lines == 1 {
		ev.Kind = KindState
	}
	if !named {
		name = events.Name{}
	}
	if p.json {
		p.buf = p.fmtr.AppendJSON(p.buf, ev, name)
	} else {
		shown := name.Name
		if !named {
			shown = strconv.FormatUint(uint64(ev.Netns), 10)
		}
		p.buf = p.fmtr.AppendTableRow(p.buf, ev, shown)
	}
	if ev.Kind&KindState != 0 {
		p.nState++
		p.lines++
	}
	if ev.Kind&KindConnect != 0 {
		p.nConnect++
		if p.json || ev.Kind&KindState == 0 {
			p.lines++
		}
	}
	return p.limit > 0 && p.lines >= p.limit
}

// Full says whether a chunk is gathered, to be flushed.
func (p *Printer) Full() bool { return len(p.buf) >= WriteChunk }

// Flush writes what is gathered.
func (p *Printer) Flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	_, err := p.w.Write(p.buf)
	p.buf = p.buf[:0]
	return err
}

// Summary is the line said on stderr at the end.
func (p *Printer) Summary(stderr io.Writer, lost uint64) {
	fmt.Fprintf(stderr, "sockscope: %d events (%d state, %d connect), %d lost\n", p.nState+p.nConnect, p.nState, p.nConnect, lost)
}
