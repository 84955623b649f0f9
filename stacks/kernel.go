package stacks

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Kallsyms names kernel addresses from /proc/kallsyms (root sees the addresses; others read
// zeros, and then nothing is named).
type Kallsyms struct {
	addrs []uint64
	names []string
}

// LoadKallsyms reads path (normally /proc/kallsyms).
func LoadKallsyms(path string) (*Kallsyms, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseKallsyms(f)
}

// ParseKallsyms reads the "address type name [module]" lines of kallsyms, keeping the text
// symbols (types t and T).
func ParseKallsyms(r io.Reader) (*Kallsyms, error) {
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") {
			continue
		}
		a, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kallsyms: address %q: %v", fields[0], err)
		}
		if a == 0 {
			continue
		}
		name := fields[2]
		if len(fields) > 3 {
			name += " " + fields[3] // [module]
		}
		syms = append(syms, sym{a, name})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kallsyms: %w", err)
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	k := &Kallsyms{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		k.addrs[i], k.names[i] = s.addr, s.name
	}
	return k, nil
}

// Frames names kernel return addresses (innermost first) as frames of module "[kernel]".
func (k *Kallsyms) Frames(pcs []uint64) []Frame {
	out := make([]Frame, 0, len(pcs))
	for _, pc := range pcs {
		f := Frame{Addr: pc, Module: "[kernel]", Offset: pc, Via: "kernel"}
		if k != nil {
			if i := sort.Search(len(k.addrs), func(i int) bool { return k.addrs[i] > pc }) - 1; i >= 0 {
				f.Symbol, f.SymbolOffset, f.Source = k.names[i], pc-k.addrs[i], "kallsyms"
			}
		}
		out = append(out, f)
	}
	return out
}
