package main

// Hostile input end to end: crafted recordings, read by the real binary under /usr/bin/time.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/craft"
	"github.com/sockscope/sockscope/internal/testenv"
)

// maxRSSKiB is the most memory a command may take to read a crafted recording: today's main took
// 1.6 GB for the bomb and tried 230 TB for the 1 ns interval.
const maxRSSKiB = 300 << 10

// timed runs sockscope under /usr/bin/time and returns its result and its peak RSS in KiB.
func timed(t *testing.T, args ...string) (cliResult, int) {
	t.Helper()
	bin := testenv.Command(t, "/usr/bin/time")
	out := filepath.Join(t.TempDir(), "time")
	r := runCmd(t, 60*time.Second, exec.Command(bin, append([]string{"-o", out, "-f", "%M", sockscopeBin}, args...)...))
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// With a non-zero exit, time says so first: "Command exited with non-zero status 1".
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	rss, err := strconv.Atoi(ls[len(ls)-1])
	if err != nil {
		t.Fatalf("/usr/bin/time wrote %q", b)
	}
	return r, rss
}

// Every command that reads recordings refuses each crafted one with one line naming the file,
// the offset and the problem, exit status 1, in little memory; none panics. The clock step is
// what NTP does to a fresh VM: it reads, with one warning.
func TestCraftedRecordingsFailWithOneLineInLittleMemory(t *testing.T) {
	readers := [][]string{{"report"}, {"diagnose", "-r"}, {"trace", "-r"}, {"sockets", "-r"}, {"syscalls", "-r"}}
	want := map[string][]string{
		"interval-1ns.rec":   {"offset 16: corrupt block: meta block: interval 1ns is shorter than any recording's (100ms at least)"},
		"deflate-bomb.rec":   {"offset 254: too much to decompress", "events block of 97847 bytes", "budget of 12.0 MiB (64x its 191.4 KiB", "--max-inflate"},
		"length-1gib.rec":    {"offset 254: corrupt block: block length 1073741824 is larger than the format allows"},
		"clock-back-20s.rec": {"warning:", "the clock stepped back 20s at offset 254 (2026-11-01T11:59:40Z)"},
	}
	for _, c := range craft.Files() {
		file := filepath.Join("..", "..", "recording", "testdata", "hostile", c.Name)
		for _, cmd := range readers {
			if !c.Hostile && cmd[0] != "report" && cmd[0] != "diagnose" {
				continue
			}
			t.Run(c.Name+"/"+cmd[0], func(t *testing.T) {
				r, rss := timed(t, append(cmd, file)...)
				t.Logf("%s: exit %d, %d KiB peak RSS: %s", c.What, r.code, rss, strings.TrimSpace(r.stderr))
				if rss > maxRSSKiB {
					t.Errorf("peak RSS %d KiB, want under %d", rss, maxRSSKiB)
				}
				if c.Hostile {
					w := want[c.Name]
					// sockets and syscalls never decompress an events block: to them the bomb is
					// a recording without what they read.
					if c.Name == "deflate-bomb.rec" && cmd[0] == "sockets" {
						w = []string{"no socket snapshot"}
					}
					if c.Name == "deflate-bomb.rec" && cmd[0] == "syscalls" {
						w = []string{"no syscall counts"}
					}
					assertFailure(t, r, append([]string{file}, w...)...)
					return
				}
				assertNoPanic(t, r.stderr)
				if r.code != 0 || len(lines(r.stderr)) != 1 {
					t.Fatalf("exit %d, want 0 and one warning line; stderr:\n%s", r.code, r.stderr)
				}
				for _, w := range append([]string{file}, want[c.Name]...) {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("warning %q lacks %q", r.stderr, w)
					}
				}
			})
		}
	}
	// The clock step in the report itself: the timeline spans the step, and says so.
	r := runSockscope(t, "report", filepath.Join("..", "..", "recording", "testdata", "hostile", "clock-back-20s.rec"))
	for _, w := range []string{"2026-11-01T11:59:40Z to 2026-11-01T12:00:00Z (20s)", "note: the clock stepped back 20s at 2026-11-01T11:59:40Z", "netns 4026532001"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("report lacks %q:\n%s", w, r.stdout)
		}
	}
}

// The bomb's budget is a flag: with a larger one the file is read further, and refused for its
// block, which is larger than any block may be; a budget that is no size is a usage error.
func TestMaxInflate(t *testing.T) {
	file := filepath.Join("..", "..", "recording", "testdata", "hostile", "deflate-bomb.rec")
	r, rss := timed(t, "report", "--max-inflate", "1G", file)
	assertFailure(t, r, file, "offset 254: corrupt block: events block decompresses to more than 67108864 bytes")
	if rss > maxRSSKiB {
		t.Errorf("peak RSS %d KiB, want under %d", rss, maxRSSKiB)
	}
	for _, bad := range []string{"", "0x", "lots", "-5x", "12Q"} {
		assertUsageError(t, runSockscope(t, "report", "--max-inflate", bad, file), "sockscope report", "--max-inflate")
	}
	// Without a budget error the data of the bomb's first block are events of namespace 0:
	// 64 MiB, read a chunk at a time.
	_ = craft.Bomb
}
