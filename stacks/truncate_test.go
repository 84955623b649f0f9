package stacks

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/sockscope/sockscope/internal/testenv"
	"github.com/sockscope/sockscope/stacks/internal/ptcap"
)

// openerSamples samples the no-frame-pointer build of opener.c and returns the samples, with the
// program still alive (its mappings readable) until the test ends.
func openerSamples(t *testing.T) []ptcap.Sample {
	t.Helper()
	testenv.Root(t)
	dir := t.TempDir()
	bin := build(t, "gcc", "opener.c", dir, "opener-trunc", "-O2", "-fomit-frame-pointer")
	p := startTraced(t, bin, dir)
	samples, done := capture(t, p.pid, p.stdin, p.out)
	if done != "done 300" || len(samples) != 300 {
		t.Fatalf("%q, %d samples", done, len(samples))
	}
	return samples
}

// TestTruncated cuts the copied stack and corrupts return addresses: the stack ends where the
// information ends, marked truncated, and what it has is exactly the start of the full stack.
func TestTruncated(t *testing.T) {
	samples := openerSamples(t)
	u := New(Options{})
	defer u.Close()
	full, err := u.Resolve(toSample(t, samples[0]))
	if err != nil || full.Truncated || len(full.Frames) != 7 {
		t.Fatalf("the full stack: %v%s", err, describe(full))
	}
	sameStart := func(st *Stack) bool {
		if len(st.Frames) >= len(full.Frames) {
			return false
		}
		for i := range st.Frames {
			if st.Frames[i].Addr != full.Frames[i].Addr || st.Frames[i].Name() != full.Frames[i].Name() {
				return false
			}
		}
		return true
	}

	t.Run("stack copy cut", func(t *testing.T) {
		// Each size keeps the frames whose return addresses lie within it, and no more.
		sp := toSample(t, samples[0]).SP()
		for _, size := range []int{0, 8, 256, 512} {
			for _, c := range samples {
				s := toSample(t, c)
				if len(s.Stack) > size {
					s.Stack = s.Stack[:size]
				}
				st, err := u.Resolve(s)
				if err != nil {
					t.Fatal(err)
				}
				if !st.Truncated || !sameStart(st) || !strings.Contains(st.Reason, "outside the") {
					t.Fatalf("%d bytes: %s%s", size, st.Reason, describe(st))
				}
			}
			s := toSample(t, samples[0])
			if len(s.Stack) > size {
				s.Stack = s.Stack[:size]
			}
			st, _ := u.Resolve(s)
			// The number of frames is 1 + the return addresses stored below sp+size.
			want := 1
			for i := 1; i < len(full.Frames); i++ {
				if full.Frames[i].Addr != 0 && raBelow(s.Stack, full.Frames[i].Addr) {
					want++
				} else {
					break
				}
			}
			if len(st.Frames) != want {
				t.Errorf("%d bytes from sp 0x%x: %d frames, want %d:%s", size, sp, len(st.Frames), want, describe(st))
			}
			t.Logf("%d bytes: %d frames, %s", size, len(st.Frames), st.Reason)
		}
	})

	t.Run("return address maps to nothing", func(t *testing.T) {
		// Overwrite write_temp_file's return address (into fill_directory) in the copy.
		s := toSample(t, samples[0])
		i := raIndex(s.Stack, full.Frames[2].Addr)
		if i < 0 {
			t.Fatal("fill_directory's return address is not in the copy")
		}
		binary.LittleEndian.PutUint64(s.Stack[i:], 0x10)
		st, err := u.Resolve(s)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Truncated || len(st.Frames) != 2 || !sameStart(st) || !strings.Contains(st.Reason, "0x10 maps to no executable mapping") {
			t.Errorf("%s%s", st.Reason, describe(st))
		}
		// Into a mapping that is not executable (the stack itself): the same.
		binary.LittleEndian.PutUint64(s.Stack[i:], s.SP()+64)
		st, _ = u.Resolve(s)
		if !st.Truncated || len(st.Frames) != 2 || !strings.Contains(st.Reason, "maps to no executable mapping") {
			t.Errorf("%s%s", st.Reason, describe(st))
		}
	})

	t.Run("sampled pc maps to nothing", func(t *testing.T) {
		s := toSample(t, samples[0])
		s.Regs[AMD64RIP] = 0x10
		st, err := u.Resolve(s)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Truncated || len(st.Frames) != 1 || st.Frames[0].Name() != "[unknown]" || st.Frames[0].Addr != 0x10 {
			t.Errorf("%s%s", st.Reason, describe(st))
		}
	})
}

func raIndex(stack []byte, ra uint64) int {
	for i := 0; i+8 <= len(stack); i += 8 {
		if binary.LittleEndian.Uint64(stack[i:]) == ra {
			return i
		}
	}
	return -1
}

func raBelow(stack []byte, ra uint64) bool { return raIndex(stack, ra) >= 0 }
