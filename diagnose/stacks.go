package diagnose

import (
	"cmp"
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/recording"
)

// StackCount is one distinct user stack of a namespace's processes at one syscall, from a
// recording made with --stacks.
type StackCount struct {
	Comm      string
	Syscall   string
	Frames    []string // innermost first
	Truncated bool
	Count     uint64
}

// Bounds on what a (possibly hostile) recording's stacks may cost a report.
const (
	maxStacksPerNetns = 4096 // distinct stacks kept per namespace; the rest are counted in "other"
	maxStackFrames    = 128  // frames kept per stack (perf's default depth is 127)
	maxFrameName      = 512  // bytes kept of a frame's name
)

// stackView sums the stacks blocks of a recording.
type stackView struct {
	blocks     int
	exact      bool
	syscalls   []string
	matched    uint64
	sampled    uint64
	lost       uint64
	notUnwound uint64
	per        map[uint32]map[string]*StackCount
	other      map[uint32]uint64 // stacks beyond maxStacksPerNetns
}

func (s *stackView) add(st *recording.Stacks, only map[uint32]bool) {
	if s.per == nil {
		s.per, s.other = map[uint32]map[string]*StackCount{}, map[uint32]uint64{}
		s.exact, s.syscalls = st.Exact, st.Syscalls
	}
	s.blocks++
	s.exact = s.exact && st.Exact
	s.matched += st.Matched
	s.sampled += st.Sampled
	s.lost += st.Lost
	for _, n := range st.NotUnwound {
		s.notUnwound += n
	}
	for _, c := range st.List {
		if only != nil && !only[c.Netns] || c.Count == 0 {
			continue
		}
		frames := c.Frames[:min(len(c.Frames), maxStackFrames)]
		var k strings.Builder
		k.WriteString(c.Comm)
		k.WriteByte(0)
		k.WriteString(c.Syscall)
		for _, f := range frames {
			k.WriteByte(0)
			k.WriteString(clip(f))
		}
		if c.Truncated || len(c.Frames) > maxStackFrames {
			k.WriteString("\x00[truncated]")
		}
		m := s.per[c.Netns]
		if m == nil {
			m = map[string]*StackCount{}
			s.per[c.Netns] = m
		}
		if e, ok := m[k.String()]; ok {
			e.Count += c.Count
			continue
		}
		if len(m) >= maxStacksPerNetns {
			s.other[c.Netns] += c.Count
			continue
		}
		sc := &StackCount{Comm: clip(c.Comm), Syscall: clip(c.Syscall), Truncated: c.Truncated || len(c.Frames) > maxStackFrames, Count: c.Count,
			Frames: make([]string, len(frames))}
		for i, f := range frames {
			sc.Frames[i] = clip(f)
		}
		m[k.String()] = sc
	}
}

func clip(s string) string {
	if len(s) > maxFrameName {
		return s[:maxFrameName]
	}
	return s
}

// note says how the report's stacks relate to the calls, for Report.Notes.
func (s *stackView) note() string {
	if s.blocks == 0 {
		return ""
	}
	what := "every syscall"
	if len(s.syscalls) > 0 {
		what = strings.Join(s.syscalls, ", ")
	}
	var b strings.Builder
	if s.exact {
		fmt.Fprintf(&b, "stacks: every call of %s (%d)", what, s.matched)
	} else {
		fmt.Fprintf(&b, "stacks: a sample of %s, %d of %d calls", what, s.sampled, s.matched)
	}
	if s.lost > 0 {
		fmt.Fprintf(&b, "; %d not copied (ring buffer full)", s.lost)
	}
	if s.notUnwound > 0 {
		fmt.Fprintf(&b, "; %d not unwound (their process exited first)", s.notUnwound)
	}
	return b.String()
}

// top returns a namespace's stacks, most counted first.
func (s *stackView) top(ns uint32, n int) (out []StackCount, other uint64) {
	for _, c := range s.per[ns] {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b StackCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Comm, b.Comm), cmp.Compare(a.Syscall, b.Syscall),
			slices.Compare(a.Frames, b.Frames))
	})
	if n > 0 && len(out) > n {
		for _, c := range out[n:] {
			other += c.Count
		}
		out = out[:n]
	}
	return out, other + s.other[ns]
}

// writeStacksText writes a target's top stacks, innermost frame first, as `syscalls --stacks`
// prints them.
func writeStacksText(b *strings.Builder, stacks []StackCount) {
	if len(stacks) == 0 {
		return
	}
	b.WriteString("\n  stacks:\n")
	for _, s := range stacks {
		fmt.Fprintf(b, "  %d  %s  %s\n", s.Count, events.Printable(s.Comm), s.Syscall)
		for _, f := range s.Frames {
			fmt.Fprintf(b, "      %s\n", events.Printable(f))
		}
		if s.Truncated {
			b.WriteString("      [truncated]\n")
		}
	}
}

// flameNode is one frame of the flame graph's tree: its calls, outermost at the root.
type flameNode struct {
	name     string
	count    uint64
	children []*flameNode
}

func (n *flameNode) child(name string) *flameNode {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	c := &flameNode{name: name}
	n.children = append(n.children, c)
	return c
}

// Flame graph geometry.
const (
	flameWidth  = 1200.0
	flameRow    = 17.0
	flameMaxRow = 80 // rows drawn; deeper frames are cut at the bottom
	flameMinPx  = 0.5
)

// flameSVG draws stacks as a flame graph: the root (the command) at the bottom, each frame as
// wide as the calls that went through it, callers below callees. It is built from counts and
// escaped names only: no scripts; each frame's <title> shows its name and count on hover.
func flameSVG(stacks []StackCount) template.HTML {
	if len(stacks) == 0 {
		return ""
	}
	root := &flameNode{name: "all"}
	depth := 0
	for _, s := range stacks {
		root.count += s.Count
		n := root.child(s.Comm + " " + s.Syscall)
		n.count += s.Count
		d := 1
		for i := len(s.Frames) - 1; i >= 0 && d < flameMaxRow; i-- {
			n = n.child(s.Frames[i])
			n.count += s.Count
			d++
		}
		depth = max(depth, d)
	}
	height := float64(depth+1)*flameRow + 4
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="flame" xmlns="http://www.w3.org/2000/svg" width="%d" height="%s" viewBox="0 0 %d %s" font-family="monospace" font-size="11">`,
		int(flameWidth), chartNum(height), int(flameWidth), chartNum(height))
	var draw func(n *flameNode, x float64, level int)
	draw = func(n *flameNode, x float64, level int) {
		w := flameWidth * float64(n.count) / float64(root.count)
		if w < flameMinPx {
			return
		}
		y := height - float64(level+1)*flameRow - 2
		name := template.HTMLEscapeString(events.Printable(n.name))
		pct := 100 * float64(n.count) / float64(root.count)
		fmt.Fprintf(&b, `<g><title>%s: %d (%s%%)</title><rect x="%s" y="%s" width="%s" height="%s" fill="%s" stroke="#fff" stroke-width="0.5"/>`,
			name, n.count, chartNum(pct), chartNum(x), chartNum(y), chartNum(w), chartNum(flameRow-1), flameColor(n.name, level))
		if chars := int((w - 6) / 6.6); chars >= 3 {
			label := []rune(events.Printable(n.name))
			if len(label) > chars {
				label = append(label[:chars-2], '.', '.')
			}
			fmt.Fprintf(&b, `<text x="%s" y="%s">%s</text>`, chartNum(x+3), chartNum(y+12), template.HTMLEscapeString(string(label)))
		}
		b.WriteString("</g>")
		slices.SortFunc(n.children, func(a, c *flameNode) int { return strings.Compare(a.name, c.name) })
		cx := x
		for _, c := range n.children {
			draw(c, cx, level+1)
			cx += flameWidth * float64(c.count) / float64(root.count)
		}
	}
	draw(root, 0, 0)
	b.WriteString("</svg>")
	return template.HTML(b.String())
}

// flameColor is a warm color that depends only on the name, so the same function has the same
// color in every graph.
func flameColor(name string, level int) string {
	if level == 0 {
		return "#ddd"
	}
	var h uint32 = 2166136261
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return "rgb(" + strconv.Itoa(205+int(h%50)) + "," + strconv.Itoa(80+int(h>>8%130)) + "," + strconv.Itoa(int(h>>16%60)) + ")"
}
