package collector

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/stacks"
)

// Print writes the stacks counted since the last Take, their namespaces named by names, as
// `sockscope syscalls --stacks` shows them: format "folded" (comm;outermost;...;innermost COUNT,
// the input of flame graph tools; how they were sampled goes to stderr), "json" (one line each),
// or a table (anything else), each with at most top stacks.
func (c *Collector) Print(format string, top int, names containers.Namer, w, stderr io.Writer) error {
	rows, unresolved, st, err := c.Take()
	if err != nil {
		return err
	}
	var out strings.Builder
	summary := c.Summary(st, unresolved)
	switch format {
	case "folded":
		// comm;outermost;...;innermost COUNT, summed over containers and syscalls: the input of
		// flamegraph.pl, inferno and speedscope. How they were sampled goes to stderr.
		fmt.Fprintln(stderr, "sockscope: "+summary)
		var folded stacks.Counts
		for _, r := range rows {
			folded.Add([]string{r.Comm}, r.Counted.Stack, r.Counted.Count)
		}
		for _, e := range folded.Sorted() {
			fmt.Fprintf(&out, "%s %d\n", events.Printable(e.FoldedStack()), e.Count)
		}
	case "json":
		b, _ := json.Marshal(map[string]any{"type": "stacks_summary", "matched": st.Matched, "sampled": st.Sampled,
			"rate_limited": st.Rate, "lost": st.Lost, "exact": c.Exact(), "not_unwound": unresolved})
		out.Write(b)
		out.WriteByte('\n')
		for i, r := range rows {
			if i >= top {
				break
			}
			js := r.Counted.JSON()
			v := map[string]any{"type": "stack", "comm": r.Comm, "syscall": r.Syscall, "count": js.Count, "stack": js.Stack}
			if js.Truncated {
				v["truncated"], v["truncated_reason"] = true, js.Reason
			}
			n, _ := names.Lookup(r.Netns)
			if n.Name == "" {
				n.Name = strconv.FormatUint(uint64(r.Netns), 10)
			}
			v["container"], v["container_id"], v["netns"], v["k8s_namespace"], v["k8s_pod"] = n.Name, n.ID, r.Netns, n.Namespace, n.Pod
			b, _ := json.Marshal(v)
			out.Write(b)
			out.WriteByte('\n')
		}
	default:
		fmt.Fprintf(&out, "\n%s\n", summary)
		for i, r := range rows {
			if i >= top {
				break
			}
			n, ok := names.Lookup(r.Netns)
			if !ok {
				n.Name = strconv.FormatUint(uint64(r.Netns), 10)
			}
			fmt.Fprintf(&out, "\n%d  %s  %s  %s\n", r.Counted.Count, events.Printable(n.Name), events.Printable(r.Comm), r.Syscall)
			for _, fr := range r.Counted.Stack.Frames {
				where := ""
				if fr.Symbol != "" && fr.Module != "" {
					where = fmt.Sprintf("  (%s+0x%x)", fr.Module, fr.Offset)
				}
				fmt.Fprintf(&out, "    %s%s\n", events.Printable(fr.Name()), events.Printable(where))
			}
			if r.Counted.Stack.Truncated {
				fmt.Fprintf(&out, "    %s %s\n", stacks.TruncatedFrame, events.Printable(r.Counted.Stack.Reason))
			}
		}
	}
	return events.WriteAll(w, []byte(out.String()))
}
