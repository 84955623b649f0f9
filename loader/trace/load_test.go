package trace

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/sockscope/sockscope/loader"
)

// The typed load step, on the real embedded objects (no kernel needed: nothing is loaded).
func TestLoadStepSetsWhatTheProgramsRead(t *testing.T) {
	spec, err := loadTrace()
	if err != nil {
		t.Fatal(err)
	}
	var s traceSpecs
	if err := loader.AssignSpecs(spec, &s, "trace"); err != nil {
		t.Fatal(err)
	}

	// --comm: the names as bpf/comm.h compares them, two native words of a NUL-padded name.
	if err := (loader.CommSpecs{Count: s.CommCount, Names: s.CommNames}).Set([]string{"nginx", "a-15-byte-name!"}); err != nil {
		t.Fatal(err)
	}
	var count uint32
	var names [loader.MaxCommFilters][2]uint64
	if err := s.CommCount.Get(&count); err != nil || count != 2 {
		t.Fatalf("comm_count %d, %v; want 2", count, err)
	}
	if err := s.CommNames.Get(&names); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"nginx", "a-15-byte-name!"} {
		var b [16]byte
		binary.NativeEndian.PutUint64(b[:8], names[i][0])
		binary.NativeEndian.PutUint64(b[8:], names[i][1])
		if got := strings.TrimRight(string(b[:]), "\x00"); got != want || b[15] != 0 {
			t.Errorf("name %d is %q (%v), want %q NUL-terminated", i, got, b, want)
		}
	}
	if names[2] != [2]uint64{} {
		t.Errorf("unused name slots are not zero: %v", names[2])
	}
	if err := (loader.CommSpecs{Count: s.CommCount, Names: s.CommNames}).Set(make([]string, loader.MaxCommFilters+1)); err == nil {
		t.Error("9 names were taken; the kernel compares 8")
	}

	// The namespace filter: a power-of-two direct table at least twice the namespaces, its mask.
	if err := (loader.NetnsSpecs{Direct: s.NetnsDirect, Overflow: s.NetnsOverflow, Mask: s.NetnsMask, Filter: s.FilterNetns}).Size(100, true); err != nil {
		t.Fatal(err)
	}
	var mask uint32
	var filter bool
	if err := s.NetnsMask.Get(&mask); err != nil || s.FilterNetns.Get(&filter) != nil {
		t.Fatal(err)
	}
	if s.NetnsDirect.MaxEntries != 256 || mask != 255 || s.NetnsOverflow.MaxEntries != 100 || !filter {
		t.Errorf("direct %d entries, mask %d, overflow %d, filter %v; want 256, 255, 100, true",
			s.NetnsDirect.MaxEntries, mask, s.NetnsOverflow.MaxEntries, filter)
	}

	// A loader whose specs do not match its object says so, naming the object.
	var wrong struct {
		Missing *ebpf.VariableSpec `ebpf:"no_such_variable"`
	}
	if err := loader.AssignSpecs(spec, &wrong, "trace"); err == nil || !strings.Contains(err.Error(), "the trace BPF object does not match its loader") {
		t.Errorf("a missing variable: %v", err)
	}
}

func TestCommKeyClearsWhatFollowsTheName(t *testing.T) {
	var c [16]byte
	copy(c[:], "bash\x00junk-after")
	if got := loader.CommKey(c); string(got[:5]) != "bash\x00" || got != [16]byte{'b', 'a', 's', 'h'} {
		t.Errorf("commKey(%q) = %q", c, got)
	}
}
