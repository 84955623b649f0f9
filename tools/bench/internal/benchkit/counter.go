package benchkit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// Counting floors: the least a per-namespace counter does on a hook, so that a mode that counts
// in the kernel is judged against the cost of counting at all, not only of being attached.
//
//   - HookStateCounter: on inet_sock_set_state, read the socket's namespace inode (two dependent
//     loads), check it against a one-entry namespace table (an array load and a compare, as
//     sockscope's filter does) and add one to a per-CPU counter indexed by the new state.
//   - HookSysExitFilter: on sys_exit, read the current task's namespace inode (three dependent
//     loads), check it against the table, and count the call if it is the namespace's. For a task
//     of another namespace that is all a per-namespace filter can do before returning.
//
// Both take the namespace inode after '@': "counter/inet_sock_set_state@4026532281".
const (
	HookStateCounter  = "counter/inet_sock_set_state"
	HookSysExitFilter = "nsfilter/sys_exit"
)

// nsCounter builds the program of a counting floor and the maps it counts in.
func (f *Floor) nsCounter(kind, target string) (link.Link, error) {
	if f.counts != nil {
		return nil, errors.New("one counting floor per Floor: attach another Floor for a second one")
	}
	target, inumText, ok := strings.Cut(target, "@")
	if !ok {
		return nil, fmt.Errorf("want %s/%s@INODE: the namespace inode to count", kind, target)
	}
	inum, err := strconv.ParseUint(inumText, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("namespace inode %q: %w", inumText, err)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, err
	}
	inumOff, err := fieldOffset(spec, "net", "ns", "inum")
	if err != nil {
		return nil, err
	}
	table, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, err
	}
	f.maps = append(f.maps, table)
	if err := table.Put(uint32(0), [2]uint32{uint32(inum), 1}); err != nil {
		return nil, err
	}
	counts, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 16})
	if err != nil {
		return nil, err
	}
	f.maps = append(f.maps, counts)
	f.counts = counts

	// R6: the namespace inode; R7: the counter's index.
	var insns asm.Instructions
	switch kind {
	case "counter":
		netOff, err := fieldOffset(spec, "sock", "__sk_common", "skc_net", "net")
		if err != nil {
			return nil, err
		}
		insns = asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord),  // sk
			asm.LoadMem(asm.R7, asm.R1, 16, asm.DWord), // newstate
			asm.And.Imm(asm.R7, 15),
			asm.LoadMem(asm.R2, asm.R2, int16(netOff), asm.DWord),
			asm.LoadMem(asm.R6, asm.R2, int16(inumOff), asm.Word),
		}
	case "nsfilter":
		nsproxyOff, err := fieldOffset(spec, "task_struct", "nsproxy")
		if err != nil {
			return nil, err
		}
		netnsOff, err := fieldOffset(spec, "nsproxy", "net_ns")
		if err != nil {
			return nil, err
		}
		insns = asm.Instructions{
			asm.FnGetCurrentTaskBtf.Call(),
			asm.LoadMem(asm.R2, asm.R0, int16(nsproxyOff), asm.DWord),
			asm.JEq.Imm(asm.R2, 0, "out"), // an exiting task has none
			asm.LoadMem(asm.R2, asm.R2, int16(netnsOff), asm.DWord),
			asm.LoadMem(asm.R6, asm.R2, int16(inumOff), asm.Word),
			asm.Mov.Imm(asm.R7, 0),
		}
	}
	insns = append(insns,
		// The namespace table: entry 0 (a one-entry direct table), its inode compared.
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, table.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.JNE.Reg(asm.R1, asm.R6, "out"),
		// The counter.
		asm.StoreMem(asm.R10, -8, asm.R7, asm.Word),
		asm.LoadMapPtr(asm.R1, counts.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	)
	p, err := loadFloor(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: target, Instructions: insns})
	if err != nil {
		return nil, err
	}
	f.progs = append(f.progs, p)
	return link.AttachTracing(link.TracingOptions{Program: p})
}

// Counted sums a counting floor's counters over every CPU and index: what it counted so far.
func (f *Floor) Counted() (uint64, error) {
	if f.counts == nil {
		return 0, errors.New("no counting floor attached")
	}
	var total uint64
	for i := range uint32(16) {
		var per []uint64
		if err := f.counts.Lookup(i, &per); err != nil {
			return 0, err
		}
		for _, n := range per {
			total += n
		}
	}
	return total, nil
}

// fieldOffset is the byte offset of a member path in a kernel struct, through anonymous members
// as C reads them (sock.__sk_common.skc_net.net).
func fieldOffset(spec *btf.Spec, typ string, path ...string) (uint32, error) {
	var s *btf.Struct
	if err := spec.TypeByName(typ, &s); err != nil {
		return 0, fmt.Errorf("kernel BTF: struct %s: %w", typ, err)
	}
	var off uint32
	var t btf.Type = s
	for _, name := range path {
		m, at, ok := findMember(t, name)
		if !ok {
			return 0, fmt.Errorf("kernel BTF: struct %s has no member %s", typ, strings.Join(path, "."))
		}
		off += at
		t = btf.UnderlyingType(m.Type)
	}
	return off, nil
}

// findMember finds a member by name in a struct or union, also inside its anonymous members, and
// returns it with its byte offset.
func findMember(t btf.Type, name string) (btf.Member, uint32, bool) {
	var members []btf.Member
	switch c := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	default:
		return btf.Member{}, 0, false
	}
	for _, m := range members {
		if m.Name == name {
			return m, m.Offset.Bytes(), true
		}
	}
	for _, m := range members {
		if m.Name == "" {
			if inner, at, ok := findMember(m.Type, name); ok {
				return inner, m.Offset.Bytes() + at, true
			}
		}
	}
	return btf.Member{}, 0, false
}
