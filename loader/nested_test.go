package loader

import (
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The nested-run stack of every state program and its twin (bpf/nested.h), driven step by step
// through the selftest program nested_step on one CPU, in the orders the kernel runs them in:
// after each scenario, the twin took over exactly the transitions the kernel skipped the main
// program for, and the stack is empty again.
func TestTwinTakesOverExactlyTheTransitionsTheKernelSkipped(t *testing.T) {
	requireRoot(t)
	if err := Memlock(); err != nil {
		t.Fatal(err)
	}
	const (
		main    = 0 // the main program runs for a transition
		start   = 1 // the twin starts
		missed  = 2 // the twin looks for its transition: 1 if it takes it over
		leave   = 3 // the twin ends
		what    = 0x1f900050_00000504
		outer   = 0xffff0000_00001000
		nestedK = 0xffff0000_00002000
	)
	step := func(t *testing.T, p *ebpf.Program, op, sk uint64) uint32 {
		t.Helper()
		ret, err := p.Run(&ebpf.RunOptions{Context: []uint64{op, sk, what}, CPU: 0, Flags: unix.BPF_F_TEST_RUN_ON_CPU})
		if err != nil {
			t.Fatalf("run step %d: %v", op, err)
		}
		return ret
	}
	// twin is a whole twin run for sk: whether it took the transition over.
	twin := func(t *testing.T, p *ebpf.Program, sk uint64) bool {
		step(t, p, start, 0)
		took := step(t, p, missed, sk) == 1
		step(t, p, leave, 0)
		return took
	}
	burst := func(t *testing.T, p *ebpf.Program, n int) {
		for i := range n {
			step(t, p, main, nestedK+uint64(i)*0x40)
		}
	}

	var objs selftestObjects
	state := func(t *testing.T) nestedState {
		t.Helper()
		var per []nestedState
		if err := objs.Nested.Lookup(uint32(0), &per); err != nil {
			t.Fatal(err)
		}
		return per[0]
	}

	for _, tc := range []struct {
		name string
		run  func(t *testing.T, p *ebpf.Program) []bool // what the twin answered, in order
		want []bool
	}{
		{"main program then twin", func(t *testing.T, p *ebpf.Program) []bool {
			step(t, p, main, outer)
			return []bool{twin(t, p, outer)}
		}, []bool{false}},
		{"skipped: nested in the main program", func(t *testing.T, p *ebpf.Program) []bool {
			step(t, p, main, outer)
			inner := twin(t, p, nestedK) // the kernel ran only the twin
			return []bool{inner, twin(t, p, outer)}
		}, []bool{true, false}},
		{"a softirq between the main program and its twin", func(t *testing.T, p *ebpf.Program) []bool {
			step(t, p, main, outer)
			step(t, p, main, nestedK)
			inner := twin(t, p, nestedK)
			return []bool{inner, twin(t, p, outer)}
		}, []bool{false, false}},
		{"twenty transitions nested in the twin", func(t *testing.T, p *ebpf.Program) []bool {
			step(t, p, main, outer)
			step(t, p, start, 0)
			burst(t, p, 20) // the kernel skips their twins: nothing to push
			if d := state(t).Depth; d != 1 {
				t.Errorf("%d entries on the stack inside the twin after twenty nested transitions, want 1", d)
			}
			took := step(t, p, missed, outer) == 1
			step(t, p, leave, 0)
			return []bool{took}
		}, []bool{false}},
		{"twenty transitions while another task holds the twin's mark", func(t *testing.T, p *ebpf.Program) []bool {
			step(t, p, main, outer)
			burst(t, p, 20) // the kernel skips their twins; the twin has not started
			return []bool{twin(t, p, outer)}
		}, []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := loadSelftestObjects(&objs, nil); err != nil {
				t.Fatalf("load the selftest programs: %v", err)
			}
			defer objs.Close()
			p := objs.NestedStep
			// The twin's first run on a CPU marks it ready (nothing is pushed before): it takes it
			// that the main program ran.
			if twin(t, p, outer) {
				t.Fatal("the twin's first run took over a transition")
			}
			got := tc.run(t, p)
			for i := range tc.want {
				if i >= len(got) || got[i] != tc.want[i] {
					t.Fatalf("the twin took over %v, want %v", got, tc.want)
				}
			}
			s := state(t)
			rescued := 0
			for _, w := range tc.want {
				if w {
					rescued++
				}
			}
			if s.Depth != 0 || s.InTwin != 0 || s.Ready != 1 || s.Rescued != uint64(rescued) {
				t.Errorf("after the runs: depth %d, in_twin %d, ready %d, rescued %d; want 0, 0, 1, %d", s.Depth, s.InTwin, s.Ready, s.Rescued, rescued)
			}
		})
	}
}
