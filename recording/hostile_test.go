package recording_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/internal/craft"
	"github.com/sockscope/sockscope/recording"
)

var update = flag.Bool("update", false, "rewrite testdata/hostile from internal/craft")

// The crafted recordings are committed for the command-line tests and anyone who wants to try
// them; they must stay what internal/craft builds (go test ./recording -run Hostile -update).
func TestHostileTestdataIsCurrent(t *testing.T) {
	for _, f := range craft.Files() {
		path := filepath.Join("testdata", "hostile", f.Name)
		if *update {
			if err := os.WriteFile(path, f.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s differs from what internal/craft builds: run go test ./recording -run Hostile -update", path)
		}
	}
}

// Each crafted recording is refused by the first pass, before it costs anything, with the
// offset of the block; the clock step is honest (NTP does it) and reads.
func TestHostileRecordingsAreRefusedAtTheirBlock(t *testing.T) {
	for _, f := range craft.Files() {
		t.Run(f.Name, func(t *testing.T) {
			rec, err := recording.Open(bytes.NewReader(f.Data), int64(len(f.Data)), recording.DefaultBudget)
			if err == nil {
				err = rec.Scan(recording.Visitor{Events: func(time.Time, []trace.Event) error { return nil }})
			}
			if !f.Hostile {
				if err != nil {
					t.Fatalf("%s: %v", f.What, err)
				}
				if len(rec.ClockSteps) != 1 || rec.ClockSteps[0].Back != 20*time.Second {
					t.Errorf("clock steps %+v, want one of 20s", rec.ClockSteps)
				}
				return
			}
			var fe *recording.FormatError
			if !errors.As(err, &fe) || !errors.Is(err, f.Err) {
				t.Fatalf("%s: got %v, want a *FormatError wrapping %v", f.What, err, f.Err)
			}
			if fe.Offset <= 16 && f.Name != "interval-1ns.rec" || fe.Offset >= int64(len(f.Data)) {
				t.Errorf("offset %d of %d bytes", fe.Offset, len(f.Data))
			}
		})
	}
}

// The bomb's budget: 64 times the file, so the reader stops after a few megabytes of the
// 192 MiB it asks for; --max-inflate's size form lets a file decompress more.
func TestInflateBudget(t *testing.T) {
	var bomb craft.File
	for _, f := range craft.Files() {
		if f.Name == "deflate-bomb.rec" {
			bomb = f
		}
	}
	size := int64(len(bomb.Data))
	r, err := recording.NewReader(bytes.NewReader(bomb.Data))
	if err != nil {
		t.Fatal(err)
	}
	r.SetBudget(recording.DefaultBudget, size, 0)
	r.Next() // meta
	_, err = r.Next()
	if !errors.Is(err, recording.ErrInflate) {
		t.Fatalf("got %v, want ErrInflate", err)
	}
	if got, want := r.Inflated(), 64*size+1; got != want {
		t.Errorf("decompressed %d bytes before refusing, want the budget plus one: %d", got, want)
	}
	// An absolute budget above the 96 MiB block: the block passes the budget and is refused for
	// its own size (64 MiB is the most a block may hold).
	r, _ = recording.NewReader(bytes.NewReader(bomb.Data))
	r.SetBudget(recording.Budget{Max: 1 << 30}, size, 0)
	r.Next()
	if _, err = r.Next(); !errors.Is(err, recording.ErrCorrupt) || r.Inflated() != recording.MaxInflated+1 {
		t.Errorf("with 1 GiB: %v after %d bytes, want ErrCorrupt after %d", err, r.Inflated(), recording.MaxInflated+1)
	}
	// A budget of 1x: a file of honest, compressible blocks is refused too.
	r, _ = recording.NewReader(bytes.NewReader(bomb.Data))
	r.SetBudget(recording.Budget{Ratio: 1}, size, 0)
	r.Next()
	if _, err = r.Next(); !errors.Is(err, recording.ErrInflate) || r.Inflated() != 1<<20+1 {
		t.Errorf("with 1x: %v after %d bytes, want ErrInflate after the 1 MiB floor", err, r.Inflated())
	}
}
