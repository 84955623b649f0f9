package recording

import (
	"encoding/json"
	"syscall"
	"time"
)

// The syscall counts block's types are the file format, owned here and not by the loader that
// reads the kernel's maps: renaming a loader field must not change what files say. Their JSON
// names are those the first recorders wrote (they stored the loader's struct, untagged), so every
// field is tagged with the name it already had; testdata/golden-v2.rec is such a file.

// SyscallCounts is the payload of a syscalls block: every syscall counted since the recording
// started (cumulative: a reader takes differences between blocks).
type SyscallCounts struct {
	Counts []SyscallCount  `json:"Counts"`
	Errors []SyscallErrors `json:"Errors"`
	Paths  []SyscallPath   `json:"Paths"`
	// Dropped counts what did not fit the kernel's full tables.
	Dropped SyscallDrops `json:"Dropped"`
	// OverBudget counts rows refused because their namespace had used its budget; their calls
	// are in the namespace's "other" row.
	OverBudget uint64 `json:"OverBudget,omitempty"`
}

// SyscallKey names who made a syscall. Each row embeds it untagged, so its fields sit beside the
// row's own in the JSON object.
type SyscallKey struct {
	Netns uint32 `json:"Netns"`
	Tgid  uint32 `json:"Tgid"` // the process
	Nr    uint32 `json:"Nr"`   // the syscall number on Meta.Arch (events.SyscallName names it)
	Comm  string `json:"Comm"`
}

// SyscallCount is the calls of one key.
type SyscallCount struct {
	SyscallKey
	Count    uint64        `json:"Count"`
	Errors   uint64        `json:"Errors"`   // calls that failed
	LatTotal time.Duration `json:"LatTotal"` // nanoseconds in the calls, when Meta.Latency
	LatMax   time.Duration `json:"LatMax"`
}

// SyscallErrors counts the failures of one key with one errno.
type SyscallErrors struct {
	SyscallKey
	Errno syscall.Errno `json:"Errno"`
	Count uint64        `json:"Count"`
}

// SyscallPath counts the calls of one key given one path (when Meta.Paths).
type SyscallPath struct {
	SyscallKey
	Path  string `json:"Path"`
	Count uint64 `json:"Count"`
}

// SyscallDrops is what the kernel could not count because a table was full. In the file it is
// the array [CountsFull, ErrorsFull, PathsFull].
type SyscallDrops struct {
	CountsFull uint64 // calls not counted: the counts table was full
	ErrorsFull uint64 // errno counts not kept
	PathsFull  uint64 // paths not kept
}

func (d SyscallDrops) MarshalJSON() ([]byte, error) {
	return json.Marshal([3]uint64{d.CountsFull, d.ErrorsFull, d.PathsFull})
}

// UnmarshalJSON reads the array as encoding/json reads a [3]uint64: missing elements are zero,
// extra ones ignored, null leaves the counts as they are.
func (d *SyscallDrops) UnmarshalJSON(b []byte) error {
	a := [3]uint64{d.CountsFull, d.ErrorsFull, d.PathsFull}
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	*d = SyscallDrops{CountsFull: a[0], ErrorsFull: a[1], PathsFull: a[2]}
	return nil
}
