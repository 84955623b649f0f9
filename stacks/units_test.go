package stacks

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockscope/sockscope/stacks/cfi"
)

func TestParseMaps(t *testing.T) {
	data := []byte(`55d0c6a00000-55d0c6a01000 r--p 00000000 08:01 1048602                    /usr/bin/my prog
55d0c6a01000-55d0c6a02000 r-xp 00001000 08:01 1048602                    /usr/bin/my prog
7f1c2a000000-7f1c2a021000 rw-p 00000000 00:00 0 
7f1c2a200000-7f1c2a228000 r-xp 00028000 fd:00 393333                     /usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)
7ffd2b5e0000-7ffd2b601000 rw-p 00000000 00:00 0                          [stack]
7ffd2b7f6000-7ffd2b7f8000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`)
	maps, err := ParseMaps(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"55d0c6a00000-55d0c6a01000 off 0 dev 8:1 ino 1048602 exec=false file=true deleted=false \"/usr/bin/my prog\"",
		"55d0c6a01000-55d0c6a02000 off 1000 dev 8:1 ino 1048602 exec=true file=true deleted=false \"/usr/bin/my prog\"",
		"7f1c2a000000-7f1c2a021000 off 0 dev 0:0 ino 0 exec=false file=false deleted=false \"\"",
		"7f1c2a200000-7f1c2a228000 off 28000 dev fd:0 ino 393333 exec=true file=true deleted=true \"/usr/lib/x86_64-linux-gnu/libc.so.6\"",
		"7ffd2b5e0000-7ffd2b601000 off 0 dev 0:0 ino 0 exec=false file=false deleted=false \"[stack]\"",
		"7ffd2b7f6000-7ffd2b7f8000 off 0 dev 0:0 ino 0 exec=true file=false deleted=false \"[vdso]\"",
		"ffffffffff600000-ffffffffff601000 off 0 dev 0:0 ino 0 exec=true file=false deleted=false \"[vsyscall]\"",
	}
	if len(maps) != len(want) {
		t.Fatalf("%d mappings, want %d", len(maps), len(want))
	}
	for i, m := range maps {
		got := fmt.Sprintf("%x-%x off %x dev %x:%x ino %d exec=%v file=%v deleted=%v %q", m.Start, m.End, m.Offset, m.Major, m.Minor, m.Inode, m.executable, m.File(), m.Deleted, m.Path)
		if got != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
	p := &process{maps: maps}
	for addr, want := range map[uint64]string{0x55d0c6a01000: "/usr/bin/my prog", 0x55d0c6a01fff: "/usr/bin/my prog", 0x55d0c6a02000: "", 0x7f1c2a227fff: "/usr/lib/x86_64-linux-gnu/libc.so.6", 0: ""} {
		m := p.find(addr)
		got := ""
		if m != nil {
			got = m.Path
		}
		if got != want {
			t.Errorf("find(0x%x) = %q, want %q", addr, got, want)
		}
	}
	for _, bad := range []string{"zz-10 r-xp 0 08:01 1 /x", "10-20 r-xp 0 0801 1 /x", "20-10 r-xp 0 08:01 1 /x", "10-20 r-xp"} {
		if _, err := ParseMaps([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestProcFiles(t *testing.T) {
	stat := []byte("4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n")
	if v, err := statStartTime(stat); err != nil || v != 987654 {
		t.Errorf("start time %d, %v; want 987654", v, err)
	}
	if _, err := statStartTime([]byte("4242 (x) S 1")); err == nil {
		t.Error("short stat parsed")
	}
	status := []byte("Name:\tnode\nTgid:\t5123\nNSpid:\t5123\t7\nPPid:\t1\n")
	if v := nsPID(status, 5123); v != 7 {
		t.Errorf("NSpid %d, want 7", v)
	}
	if v := nsPID([]byte("Name:\tx\n"), 9); v != 9 {
		t.Errorf("without NSpid: %d, want 9", v)
	}
}

// TestPIDReuse: a sample whose start time is not the live process's is refused, not unwound
// against another program's mappings.
func TestPIDReuse(t *testing.T) {
	st, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	tick, err := statStartTime(st)
	if err != nil {
		t.Fatal(err)
	}
	u := New(Options{})
	defer u.Close()
	s := &Sample{PID: uint32(os.Getpid()), Arch: AMD64, StartTime: tick * 1e7}
	if _, err := u.Unwind(s); err != nil {
		t.Errorf("matching start time: %v", err)
	}
	s.StartTime = (tick + 5) * 1e7
	if _, err := u.Unwind(s); err == nil || !strings.Contains(err.Error(), "reused") {
		t.Errorf("other start time: %v, want a refusal", err)
	}
	s.Arch = ARM64
	if _, err := u.Unwind(s); err == nil {
		t.Error("arm64 sample unwound")
	}
}

func TestRegsFromPtRegs(t *testing.T) {
	b := make([]byte, PtRegsSizeAMD64)
	for i := 0; i < 21; i++ {
		binary.LittleEndian.PutUint64(b[i*8:], uint64(100+i))
	}
	r, err := RegsFromPtRegs(AMD64, b)
	if err != nil {
		t.Fatal(err)
	}
	// pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss.
	want := map[int]uint64{15: 100, 14: 101, 13: 102, 12: 103, AMD64RBP: 104, AMD64RBX: 105, 11: 106, 10: 107, 9: 108, 8: 109, AMD64RAX: 110, AMD64RCX: 111, AMD64RDX: 112, AMD64RSI: 113, AMD64RDI: 114, AMD64RIP: 116, AMD64RSP: 119}
	for reg, v := range want {
		if r[reg] != v {
			t.Errorf("r%d = %d, want %d", reg, r[reg], v)
		}
	}
	s := Sample{Arch: AMD64, Regs: r}
	if s.PC() != 116 || s.SP() != 119 {
		t.Errorf("PC %d SP %d", s.PC(), s.SP())
	}
	if _, err := RegsFromPtRegs(AMD64, b[:20]); err == nil {
		t.Error("short pt_regs accepted")
	}
	a := make([]byte, PtRegsSizeARM64)
	for i := 0; i < 34; i++ {
		binary.LittleEndian.PutUint64(a[i*8:], uint64(i))
	}
	r, err = RegsFromPtRegs(ARM64, a)
	if err != nil || r[ARM64X29] != 29 || r[ARM64X30] != 30 || r[ARM64SP] != 31 || r[ARM64PC] != 32 {
		t.Errorf("arm64: %v %v", r, err)
	}
}

func TestSymtab(t *testing.T) {
	var strs bytes.Buffer
	strs.WriteByte(0)
	name := func(s string) uint32 {
		off := uint32(strs.Len())
		strs.WriteString(s)
		strs.WriteByte(0)
		return off
	}
	var tab []byte
	add := func(n string, info byte, shndx uint16, value, size uint64) {
		e := make([]byte, 24)
		binary.LittleEndian.PutUint32(e, name(n))
		e[4] = info
		binary.LittleEndian.PutUint16(e[6:], shndx)
		binary.LittleEndian.PutUint64(e[8:], value)
		binary.LittleEndian.PutUint64(e[16:], size)
		tab = append(tab, e...)
	}
	const global, weak, local = 1 << 4, 2 << 4, 0
	const fn, obj = 2, 1
	add("__libc_open64", global|fn, 14, 0x1000, 0x80)
	add("open64", weak|fn, 14, 0x1000, 0x80)
	add("__open", global|fn, 14, 0x1000, 0x80)
	add("helper", local|fn, 14, 0x1100, 0x10)
	add("data", global|obj, 20, 0x1200, 0x100)
	add("undefined", global|fn, 0, 0x1300, 0x10)
	add("nosize", global|fn, 14, 0x1400, 0)
	add("_ZN5outer5innerEv", global|fn, 14, 0x1500, 0x40)
	add("_RNvCs1234_7mycrate4main", global|fn, 14, 0x1600, 0x40)
	add("_ZN3foo3bar17h0123456789abcdefE", global|fn, 14, 0x1700, 0x40)
	add("versioned@@GLIBC_2.34", global|fn, 14, 0x1800, 0x40)
	st := parseSymtab(tab, strs.Bytes(), binary.LittleEndian)
	cases := []struct {
		addr uint64
		want string
	}{
		{0xfff, ""}, {0x1000, "__open"}, {0x107f, "__open"}, {0x1080, ""}, {0x1105, "helper"}, {0x1110, ""},
		{0x1250, ""}, {0x1305, ""}, {0x1405, ""}, {0x1510, "outer::inner()"}, {0x1610, "mycrate::main"},
		{0x1710, "foo::bar"}, {0x1810, "versioned"},
	}
	for _, c := range cases {
		got := ""
		if i, ok := st.lookup(c.addr); ok {
			got = st.name(i)
		}
		if got != c.want {
			t.Errorf("0x%x: %q, want %q", c.addr, got, c.want)
		}
	}
}

func TestPerfMap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "perf-7.map")
	os.WriteFile(path, []byte("1000 100 JS:~first a.js:1\n0x2000 0x10 Builtin:Thing with spaces\nbad line\n3000 0 empty\n"), 0o644)
	pm := &perfMap{path: path}
	if n, err := pm.readMore(); err != nil || n != 2 {
		t.Fatalf("%d entries, %v; want 2", n, err)
	}
	// Code moved: a later line for an overlapping range wins; an incomplete line waits.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("1080 40 JS:^second a.js:9\n1000 1")
	f.Close()
	if n, _ := pm.readMore(); n != 1 {
		t.Fatalf("%d new entries, want 1", n)
	}
	cases := map[uint64]string{0xfff: "", 0x1000: "JS:~first a.js:1", 0x107f: "JS:~first a.js:1", 0x1080: "JS:^second a.js:9", 0x10bf: "JS:^second a.js:9", 0x10c0: "JS:~first a.js:1", 0x10ff: "JS:~first a.js:1", 0x1100: "", 0x200f: "Builtin:Thing with spaces", 0x3000: ""}
	for addr, want := range cases {
		got, _, _ := pm.lookup(addr)
		if got != want {
			t.Errorf("0x%x: %q, want %q", addr, got, want)
		}
	}
	f, _ = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("00 JS:third\n") // completes "1000 100 JS:third"
	f.Close()
	if n, _ := pm.readMore(); n != 1 {
		t.Fatalf("the completed line: %d entries, want 1", n)
	}
	if got, _, _ := pm.lookup(0x1050); got != "JS:third" {
		t.Errorf("after the newest line: %q", got)
	}
}

func TestFold(t *testing.T) {
	mk := func(truncated bool, names ...string) *Stack {
		st := &Stack{Truncated: truncated}
		if truncated {
			st.Reason = "cut"
		}
		for _, n := range names {
			st.Frames = append(st.Frames, Frame{Symbol: n, Module: "/bin/x", Offset: 0x10})
		}
		return st
	}
	var c Counts
	c.Add([]string{"web", "node"}, mk(false, "open", "write;file", "main"), 3)
	c.Add([]string{"web", "node"}, mk(false, "open", "write;file", "main"), 2)
	c.Add([]string{"web", "node"}, mk(true, "open", "write;file"), 1)
	c.Add([]string{"db", "node"}, mk(false, "open", "write;file", "main"), 4)
	c.Add([]string{"db", "node"}, &Stack{Frames: []Frame{{Module: "/usr/lib/libc.so.6", Offset: 0xf8011}, {Addr: 0x1234}}}, 1)
	if c.Total() != 11 {
		t.Errorf("total %d, want 11", c.Total())
	}
	var b bytes.Buffer
	WriteFolded(&b, c.Sorted())
	want := `web;node;main;write:file;open 5
db;node;main;write:file;open 4
db;node;[unknown];libc.so.6+0xf8011 1
web;node;[truncated];write:file;open 1
`
	if b.String() != want {
		t.Errorf("folded:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	WriteJSON(&b, c.Sorted()[:1])
	var js JSONStack
	if err := json.Unmarshal(b.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	if js.Count != 5 || len(js.Stack) != 3 || js.Stack[0].Name != "open" || js.Stack[2].Name != "main" || js.Stack[0].Module != "/bin/x" {
		t.Errorf("json: %s", b.String())
	}
	b.Reset()
	WriteTable(&b, c.Sorted(), 1)
	if got := b.String(); got != "5  web node\n    open  (/bin/x+0x10)\n    write;file  (/bin/x+0x10)\n    main  (/bin/x+0x10)\n\n" {
		t.Errorf("table:\n%s", got)
	}
}

// TestStepCFI applies crafted rows to known registers and stack.
func TestStepCFI(t *testing.T) {
	const sp = 0x7ffc0000
	stack := make([]byte, 64)
	for i := 0; i < 8; i++ {
		binary.LittleEndian.PutUint64(stack[i*8:], uint64(0x400000+i))
	}
	off := func(n int64) cfi.Rule { return cfi.Rule{Kind: cfi.Offset, Offset: n} }
	cases := []struct {
		name    string
		cfa     cfi.Rule
		regs    map[int]cfi.Rule
		wantRIP uint64
		wantRSP uint64
		wantRBP uint64
		done    bool
		wantErr string
	}{
		{name: "rsp-based", cfa: cfi.Rule{Kind: cfi.CFARegOffset, Reg: AMD64RSP, Offset: 16}, regs: map[int]cfi.Rule{AMD64RIP: off(-8)}, wantRIP: 0x400001, wantRSP: sp + 16, wantRBP: 0xbb},
		{name: "rbp saved", cfa: cfi.Rule{Kind: cfi.CFARegOffset, Reg: AMD64RSP, Offset: 24}, regs: map[int]cfi.Rule{AMD64RIP: off(-8), AMD64RBP: off(-16)}, wantRIP: 0x400002, wantRSP: sp + 24, wantRBP: 0x400001},
		{name: "rbp-based", cfa: cfi.Rule{Kind: cfi.CFARegOffset, Reg: AMD64RBP, Offset: 16}, regs: map[int]cfi.Rule{AMD64RIP: off(-8)}, wantRIP: 0xbb + 8, wantErr: "outside"},
		{name: "expression CFA", cfa: cfi.Rule{Kind: cfi.CFAExpression, Expr: []byte{0x77, 32}}, regs: map[int]cfi.Rule{AMD64RIP: off(-8)}, wantRIP: 0x400003, wantRSP: sp + 32, wantRBP: 0xbb},
		{name: "val_offset and register", cfa: cfi.Rule{Kind: cfi.CFARegOffset, Reg: AMD64RSP, Offset: 8}, regs: map[int]cfi.Rule{AMD64RIP: off(-8), AMD64RBP: {Kind: cfi.ValOffset, Offset: 100}, AMD64RBX: {Kind: cfi.Register, Reg: AMD64RBP}}, wantRIP: 0x400000, wantRSP: sp + 8, wantRBP: sp + 108},
		{name: "outermost", cfa: cfi.Rule{Kind: cfi.CFARegOffset, Reg: AMD64RSP, Offset: 8}, regs: map[int]cfi.Rule{AMD64RIP: {Kind: cfi.Undefined}}, done: true},
		{name: "return address beyond the copy", cfa: cfi.Rule{Kind: cfi.CFARegOffset, Reg: AMD64RSP, Offset: 128}, regs: map[int]cfi.Rule{AMD64RIP: off(-8)}, wantErr: "outside the 64 bytes"},
		{name: "unknown CFA register", cfa: cfi.Rule{Kind: cfi.CFARegOffset, Reg: 20, Offset: 8}, regs: map[int]cfi.Rule{AMD64RIP: off(-8)}, wantErr: "register 20 is not known"},
		{name: "unsupported expression", cfa: cfi.Rule{Kind: cfi.CFAExpression, Expr: []byte{0x91, 0}}, wantErr: "unsupported"},
		{name: "unsupported expression for rbx", cfa: cfi.Rule{Kind: cfi.CFARegOffset, Reg: AMD64RSP, Offset: 8}, regs: map[int]cfi.Rule{AMD64RIP: off(-8), AMD64RBX: {Kind: cfi.Expression, Expr: []byte{0x9c}}}, wantErr: "unsupported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Sample{Arch: AMD64, Stack: stack}
			s.Regs[AMD64RSP], s.Regs[AMD64RBP], s.Regs[AMD64RIP] = sp, 0xbb, 0x401000
			w := walker{s: s, regs: s.Regs, valid: 1<<(AMD64RIP+1) - 1}
			row := &cfi.Row{CFA: c.cfa, RAReg: AMD64RIP}
			for r, rule := range c.regs {
				row.Regs[r] = rule
			}
			done, err := w.stepCFI(row)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || done != c.done {
				t.Fatalf("done %v, %v", done, err)
			}
			if c.done {
				return
			}
			if w.regs[AMD64RIP] != c.wantRIP || w.regs[AMD64RSP] != c.wantRSP || w.regs[AMD64RBP] != c.wantRBP {
				t.Errorf("rip 0x%x rsp 0x%x rbp 0x%x; want 0x%x 0x%x 0x%x", w.regs[AMD64RIP], w.regs[AMD64RSP], w.regs[AMD64RBP], c.wantRIP, c.wantRSP, c.wantRBP)
			}
		})
	}
}

// TestVDSO reads this process's vDSO out of its memory: an ELF image with CFI and symbols.
func TestVDSO(t *testing.T) {
	u := New(Options{})
	defer u.Close()
	p, err := u.process(uint32(os.Getpid()), 0)
	if err != nil {
		t.Fatal(err)
	}
	var m *Mapping
	for _, mm := range p.maps {
		if mm.Path == "[vdso]" {
			m = mm
		}
	}
	if m == nil {
		t.Skip("no [vdso] mapping")
	}
	o, err := u.objectFor(p, m)
	if err != nil {
		t.Fatal(err)
	}
	if o.buildID == "" || o.eh == nil || o.eh.Len() == 0 {
		t.Fatalf("vDSO: build ID %q, CFI %v", o.buildID, o.eh)
	}
	o.loadSymbols()
	found := false
	for i := range o.syms.syms {
		if o.syms.name(i) == "__vdso_clock_gettime" {
			found = true
			va := o.syms.syms[i].addr
			if _, err := o.row(va); err != nil {
				t.Errorf("no CFI row at __vdso_clock_gettime: %v", err)
			}
		}
	}
	if !found {
		t.Errorf("__vdso_clock_gettime not among the vDSO's %d symbols", len(o.syms.syms))
	}
}
