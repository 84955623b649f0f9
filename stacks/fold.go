package stacks

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// TruncatedFrame is the name that stands, in folded and table output, for the part of a truncated
// stack that could not be followed: flame graphs show it as the outermost frame, so a truncated
// stack is never mistaken for a complete one.
const TruncatedFrame = "[truncated]"

// Counts aggregates stacks by labels (what the CLI groups by: container, comm, syscall) and frame
// names. Stacks that differ only in addresses within the same functions count together.
type Counts struct {
	m map[string]*Counted
}

// Counted is one distinct stack and how often it was seen.
type Counted struct {
	// Labels are the grouping values, outermost first: ["web-1", "node", "openat"].
	Labels []string
	// Stack has the frames of the first sample seen with these names.
	Stack *Stack
	Count uint64
}

// Add counts n samples of st under labels.
func (c *Counts) Add(labels []string, st *Stack, n uint64) {
	if c.m == nil {
		c.m = map[string]*Counted{}
	}
	var b strings.Builder
	for _, l := range labels {
		b.WriteString(l)
		b.WriteByte(0)
	}
	b.WriteByte(1)
	for i := range st.Frames {
		b.WriteString(st.Frames[i].Name())
		b.WriteByte(0)
	}
	if st.Truncated {
		b.WriteString(TruncatedFrame)
	}
	k := b.String()
	if e, ok := c.m[k]; ok {
		e.Count += n
		return
	}
	c.m[k] = &Counted{Labels: append([]string(nil), labels...), Stack: st, Count: n}
}

// Sorted returns the stacks by count, highest first (ties by folded line, for stable output).
func (c *Counts) Sorted() []*Counted {
	out := make([]*Counted, 0, len(c.m))
	keys := map[*Counted]string{}
	for _, e := range c.m {
		out = append(out, e)
		keys[e] = e.FoldedStack()
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return keys[out[i]] < keys[out[j]]
	})
	return out
}

// Total is the number of samples counted.
func (c *Counts) Total() uint64 {
	var n uint64
	for _, e := range c.m {
		n += e.Count
	}
	return n
}

// foldName makes a frame name safe for the folded format, where ';' separates frames and the
// last space-separated field is the count.
func foldName(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ';':
			return ':'
		case '\n', '\r', '\t':
			return ' '
		}
		return r
	}, s)
}

// FoldedStack is the stack part of a folded line: labels, then frames outermost first
// ("comm;main;write_temp_file;__libc_open64"), with [truncated] above a truncated stack.
func (e *Counted) FoldedStack() string {
	var parts []string
	for _, l := range e.Labels {
		parts = append(parts, foldName(l))
	}
	if e.Stack.Truncated {
		parts = append(parts, TruncatedFrame)
	}
	for i := len(e.Stack.Frames) - 1; i >= 0; i-- {
		parts = append(parts, foldName(e.Stack.Frames[i].Name()))
	}
	return strings.Join(parts, ";")
}

// WriteFolded writes "labels;outermost;...;innermost COUNT" lines, the input of flamegraph.pl,
// inferno and speedscope.
func WriteFolded(w io.Writer, stacks []*Counted) error {
	bw := bufio.NewWriter(w)
	for _, e := range stacks {
		bw.WriteString(e.FoldedStack())
		bw.WriteByte(' ')
		bw.WriteString(strconv.FormatUint(e.Count, 10))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// JSONFrame is a frame in JSON output.
type JSONFrame struct {
	Name string `json:"name"`
	Frame
}

// JSONStack is one distinct stack in JSON output: its labels, its frames innermost first, and
// its count.
type JSONStack struct {
	Labels    []string    `json:"labels,omitempty"`
	Stack     []JSONFrame `json:"stack"`
	Truncated bool        `json:"truncated,omitempty"`
	Reason    string      `json:"truncated_reason,omitempty"`
	Count     uint64      `json:"count"`
}

// JSON returns the JSON form of a counted stack.
func (e *Counted) JSON() JSONStack {
	js := JSONStack{Labels: e.Labels, Truncated: e.Stack.Truncated, Reason: e.Stack.Reason, Count: e.Count, Stack: make([]JSONFrame, len(e.Stack.Frames))}
	for i, f := range e.Stack.Frames {
		js.Stack[i] = JSONFrame{Name: f.Name(), Frame: f}
	}
	return js
}

// WriteJSON writes one JSON object per line per stack.
func WriteJSON(w io.Writer, stacks []*Counted) error {
	enc := json.NewEncoder(w)
	for _, e := range stacks {
		if err := enc.Encode(e.JSON()); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable writes the top stacks, each as its count and labels, then its frames innermost first,
// one per line (module+offset beside the symbol), as perf report and bpftrace print stacks.
func WriteTable(w io.Writer, stacks []*Counted, top int) error {
	bw := bufio.NewWriter(w)
	for i, e := range stacks {
		if top > 0 && i >= top {
			break
		}
		fmt.Fprintf(bw, "%d  %s\n", e.Count, strings.Join(e.Labels, " "))
		for _, f := range e.Stack.Frames {
			where := ""
			if f.Symbol != "" && f.Module != "" {
				where = fmt.Sprintf("  (%s+0x%x)", f.Module, f.Offset)
			}
			fmt.Fprintf(bw, "    %s%s\n", f.Name(), where)
		}
		if e.Stack.Truncated {
			fmt.Fprintf(bw, "    %s %s\n", TruncatedFrame, e.Stack.Reason)
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
