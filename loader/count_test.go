package loader

import (
	"os"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// requireRoot skips a test that loads BPF programs for a normal user, and fails it in CI, where
// a skip would hide that it never ran.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root to load BPF programs (CI=true: not skipped)")
	}
	t.Skip("needs root to load BPF programs")
}

// Two CPUs count the same new key at the same moment: both looked it up and found nothing, both
// insert it, and the kernel lets one insert win; the other's fails with -EEXIST. Counting that
// failure as a drop (as syscalls.bpf.c once did) loses the loser's increment. bpf/count.h's
// insert_or_find looks the key up again after a failed insert, so both count.
//
// The race itself cannot be produced on demand, so the test runs the loser's side for real: the
// selftest program is run on CPU 0 (its insert makes the key) and then on CPU 1, where the key
// already exists and its insert fails with -EEXIST, exactly as the losing CPU's does.
func TestTwoCPUsInsertingTheSameNewKeyBothCount(t *testing.T) {
	requireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	if err := Memlock(); err != nil {
		t.Fatal(err)
	}
	var objs selftestObjects
	if err := loadSelftestObjects(&objs, nil); err != nil {
		t.Fatalf("load the selftest programs: %v", err)
	}
	defer objs.Close()

	for _, cpu := range []uint32{0, 1} {
		ret, err := objs.InsertAfterMiss.Run(&ebpf.RunOptions{CPU: cpu, Flags: unix.BPF_F_TEST_RUN_ON_CPU})
		if err != nil {
			t.Fatalf("run on CPU %d: %v", cpu, err)
		}
		if ret != 1 {
			t.Errorf("on CPU %d the increment found no element (returned %d)", cpu, ret)
		}
	}
	var per []uint64
	if err := objs.RaceCounts.Lookup(uint32(7), &per); err != nil {
		t.Fatalf("look up the counted key: %v", err)
	}
	var sum uint64
	for _, v := range per {
		sum += v
	}
	if sum != 2 || per[0] != 1 || per[1] != 1 {
		t.Errorf("counts per CPU %v (sum %d), want 1 on CPU 0 and 1 on CPU 1", per, sum)
	}
}
