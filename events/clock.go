package events

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts the kernel's monotonic timestamps to wall-clock time.
type Clock struct{ offset int64 }

// NewClock reads both clocks once; the offset between them is stable while sockscope runs.
func NewClock() Clock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return Clock{offset: time.Now().UnixNano() - ts.Nano()}
}

// Wall returns the wall-clock time of a kernel monotonic timestamp.
func (c Clock) Wall(mono uint64) time.Time { return time.Unix(0, int64(mono)+c.offset) }

// Offset is the wall clock minus the monotonic clock, in nanoseconds: what a recording keeps to
// convert its events' times later.
func (c Clock) Offset() int64 { return c.offset }

// ClockWithOffset returns the Clock of a recording made with the given Offset.
func ClockWithOffset(offset int64) Clock { return Clock{offset: offset} }
