package recorder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events/sockets"
	"github.com/sockscope/sockscope/loader"
	"github.com/sockscope/sockscope/recording"
	"github.com/sockscope/sockscope/stacks/collector"
)

// snapshot writes the sockets of every target namespace, the syscall counts, the lost counts and
// the facts.
func (r *recorder) snapshot() error {
	now := time.Now()
	write := func(t recording.BlockType, v any) error {
		if err := r.sink.WriteJSON(t, now, v); err != nil {
			return fmt.Errorf("write %s: %w", r.o.File, err)
		}
		return nil
	}
	rawOwners, err := r.socks.Owners()
	if err != nil {
		return err
	}
	var facts recording.Facts
	inodes := map[uint32]bool{}
	for _, t := range r.hist.targets(r.scope) {
		snap, err := r.socks.Snapshot(t.Path)
		if errors.Is(err, loader.ErrNetnsGone) {
			continue // its container just stopped
		}
		if err != nil {
			fmt.Fprintf(r.stderr, "sockscope: warning: snapshot of netns %d: %v\n", t.Inode, err)
			continue
		}
		inodes[t.Inode] = true
		s := recording.SocketSnapshot{Netns: t.Inode, PortRange: snap.PortRange, TWReuse: snap.TWReuse, Records: snap.Records}
		s.Owners = ownersOf(snap.Records, rawOwners)
		if err := r.sink.Write(recording.BlockSockets, now, recording.EncodeSockets(&s)); err != nil {
			return fmt.Errorf("write %s: %w", r.o.File, err)
		}
		r.nSnaps++
		facts.Netns = append(facts.Netns, recording.NetnsFacts{Netns: t.Inode, PortRange: snap.PortRange, TWReuse: snap.TWReuse, Somaxconn: snap.Somaxconn})
	}
	facts.Processes = processesIn(inodes)
	if err := write(recording.BlockFacts, facts); err != nil {
		return err
	}
	if r.counter != nil {
		counts, err := r.counter.Read()
		if err != nil {
			return err
		}
		if err := write(recording.BlockSyscalls, RecordedSyscalls(counts)); err != nil {
			return err
		}
	}
	if r.stacks != nil {
		st, err := recordedStacks(r.stacks, r.o.Stacks)
		if err != nil {
			return err
		}
		if len(st.List) > 0 || st.Matched > 0 {
			if err := write(recording.BlockStacks, st); err != nil {
				return err
			}
		}
	}
	lost, err := r.tracer.Lost()
	if err != nil {
		return err
	}
	return write(recording.BlockLost, recording.Lost{RingFull: lost.RingFull, Nested: lost.Nested})
}

// ownersOf keeps the owner records of the sockets in records: the owner iterator lists every
// socket file on the machine.
func ownersOf(records, owners []byte) []byte {
	want := map[uint32]bool{}
	for b := records; len(b) >= sockets.SocketRecordSize; b = b[sockets.SocketRecordSize:] {
		if ino := sockets.SocketInode(b); ino != 0 {
			want[ino] = true
		}
	}
	var out []byte
	for b := owners; len(b) >= sockets.OwnerRecordSize; b = b[sockets.OwnerRecordSize:] {
		if want[sockets.OwnerInode(b)] {
			out = append(out, b[:sockets.OwnerRecordSize]...)
		}
	}
	return out
}

// processesIn lists the processes living in the given namespaces with their open-files limit:
// the number behind EMFILE. It reads /proc once per interval, not per event.
func processesIn(inodes map[uint32]bool) []recording.Process {
	out := []recording.Process{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		ino, err := containers.NetnsInode(pid)
		if err != nil || !inodes[ino] {
			continue
		}
		comm, _ := os.ReadFile(d + "/comm")
		p := recording.Process{Pid: uint32(pid), Netns: ino, Comm: strings.TrimSpace(string(comm)), NofileSoft: -1, NofileHard: -1}
		var lim unix.Rlimit
		if unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim) == nil {
			if lim.Cur != unix.RLIM_INFINITY {
				p.NofileSoft = int64(lim.Cur)
			}
			if lim.Max != unix.RLIM_INFINITY {
				p.NofileHard = int64(lim.Max)
			}
		}
		if fds, err := os.ReadDir(d + "/fd"); err == nil {
			p.Fds = len(fds)
		}
		out = append(out, p)
	}
	return out
}

// recordedStacks returns the stacks counted since the last take, as a recording's stacks block
// holds them.
func recordedStacks(c *collector.Collector, syscalls []string) (recording.Stacks, error) {
	rows, unresolved, st, err := c.Take()
	if err != nil {
		return recording.Stacks{}, err
	}
	out := recording.Stacks{Exact: c.Exact(), Syscalls: syscalls, RatePerCPU: c.Rate(), Matched: st.Matched, Sampled: st.Sampled,
		Lost: st.Lost, NotUnwound: unresolved, List: make([]recording.StackCount, 0, len(rows))}
	for _, r := range rows {
		sc := recording.StackCount{Netns: r.Netns, Comm: r.Comm, Syscall: r.Syscall, Truncated: r.Counted.Stack.Truncated, Count: r.Counted.Count,
			Frames: make([]string, len(r.Counted.Stack.Frames))}
		for i := range r.Counted.Stack.Frames {
			sc.Frames[i] = r.Counted.Stack.Frames[i].Name()
		}
		out.List = append(out.List, sc)
	}
	if len(out.NotUnwound) == 0 {
		out.NotUnwound = nil
	}
	return out, nil
}
