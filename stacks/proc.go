package stacks

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	// Offset is the file offset mapped at Start: with it an address becomes a file offset, and
	// through the object's program headers a virtual address of the object, whatever base the
	// loader chose (PIE executables, shared libraries).
	Offset     uint64
	Perms      string // "r-xp"
	Major      uint32
	Minor      uint32
	Inode      uint64
	Path       string // as the process sees it; "[vdso]", "[stack]" or "" for anonymous memory
	Deleted    bool   // the file was deleted or replaced since it was mapped
	executable bool

	obj    *object
	objErr error
	done   bool // obj/objErr resolved
}

// File reports whether the mapping is backed by a file.
func (m *Mapping) File() bool { return m.Inode != 0 && strings.HasPrefix(m.Path, "/") }

// ParseMaps parses the content of /proc/PID/maps.
func ParseMaps(data []byte) ([]*Mapping, error) {
	var out []*Mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		m, err := parseMapsLine(line)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}

// parseMapsLine parses "start-end perms offset major:minor inode   path".
func parseMapsLine(line string) (*Mapping, error) {
	bad := func(what string) error { return fmt.Errorf("maps line %q: %s", line, what) }
	// The first five fields are separated by single spaces; the path follows after padding and
	// may itself contain spaces.
	f := strings.SplitN(line, " ", 6)
	if len(f) < 5 {
		return nil, bad("too few fields")
	}
	m := &Mapping{Perms: f[1]}
	rng := strings.SplitN(f[0], "-", 2)
	if len(rng) != 2 {
		return nil, bad("range")
	}
	var err error
	if m.Start, err = strconv.ParseUint(rng[0], 16, 64); err != nil {
		return nil, bad("start")
	}
	if m.End, err = strconv.ParseUint(rng[1], 16, 64); err != nil || m.End < m.Start {
		return nil, bad("end")
	}
	if m.Offset, err = strconv.ParseUint(f[2], 16, 64); err != nil {
		return nil, bad("offset")
	}
	dev := strings.SplitN(f[3], ":", 2)
	if len(dev) != 2 {
		return nil, bad("device")
	}
	maj, err1 := strconv.ParseUint(dev[0], 16, 32)
	min, err2 := strconv.ParseUint(dev[1], 16, 32)
	if err1 != nil || err2 != nil {
		return nil, bad("device")
	}
	m.Major, m.Minor = uint32(maj), uint32(min)
	if m.Inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return nil, bad("inode")
	}
	if len(f) == 6 {
		m.Path = strings.TrimLeft(f[5], " ")
	}
	if p, ok := strings.CutSuffix(m.Path, " (deleted)"); ok && m.Inode != 0 {
		m.Path, m.Deleted = p, true
	}
	if len(m.Perms) >= 3 {
		m.executable = m.Perms[2] == 'x'
	}
	return m, nil
}

// process is what the unwinder keeps per sampled process.
type process struct {
	pid       uint32
	dir       string // /proc/PID
	startTick uint64 // /proc/PID/stat field 22 (start time in clock ticks since boot)
	maps      []*Mapping
	mapsAt    time.Time
	gone      bool // /proc/PID disappeared: the cached maps are all there is
	nspid     uint32
	perf      *perfMap
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's start time: 100 on every Linux
// architecture (the kernel's ABI, independent of CONFIG_HZ).
const clockTicks = 100

// loadProcess reads what the unwinder needs about pid once: its start time, its innermost PID
// (for the perf map's name) and its mappings.
func loadProcess(procRoot string, pid uint32) (*process, error) {
	p := &process{pid: pid, dir: filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10))}
	st, err := os.ReadFile(filepath.Join(p.dir, "stat"))
	if err != nil {
		return nil, err
	}
	if p.startTick, err = statStartTime(st); err != nil {
		return nil, err
	}
	p.nspid = pid
	if status, err := os.ReadFile(filepath.Join(p.dir, "status")); err == nil {
		p.nspid = nsPID(status, pid)
	}
	if err := p.readMaps(); err != nil {
		return nil, err
	}
	return p, nil
}

// statStartTime returns field 22 of /proc/PID/stat. The command name (field 2) is in parentheses
// and may contain spaces and parentheses: the fields are counted after its last ')'.
func statStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, errors.New("stat: too few fields")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// nsPID returns the last (innermost namespace's) PID of the status file's NSpid line: the PID
// the process knows itself by, which names its perf map.
func nsPID(status []byte, def uint32) uint32 {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if v, err := strconv.ParseUint(f[len(f)-1], 10, 32); err == nil {
					return uint32(v)
				}
			}
		}
	}
	return def
}

func (p *process) readMaps() error {
	data, err := os.ReadFile(filepath.Join(p.dir, "maps"))
	if err != nil {
		return err
	}
	if len(data) == 0 {
		// An exited process (a zombie) has empty maps.
		return fmt.Errorf("process %d has no mappings (exited)", p.pid)
	}
	maps, err := ParseMaps(data)
	if err != nil {
		return err
	}
	// Keep the objects already resolved for mappings that did not change.
	old := map[[4]uint64]*Mapping{}
	for _, m := range p.maps {
		old[[4]uint64{m.Start, m.End, m.Offset, m.Inode}] = m
	}
	for i, m := range maps {
		if o, ok := old[[4]uint64{m.Start, m.End, m.Offset, m.Inode}]; ok && o.Path == m.Path {
			maps[i] = o
		}
	}
	p.maps, p.mapsAt = maps, time.Now()
	return nil
}

// find returns the mapping containing addr, or nil.
func (p *process) find(addr uint64) *Mapping {
	i := sort.Search(len(p.maps), func(i int) bool { return p.maps[i].End > addr })
	if i < len(p.maps) && p.maps[i].Start <= addr {
		return p.maps[i]
	}
	return nil
}

// root is the process's root directory as seen from here: its container's filesystem.
func (p *process) root() string { return filepath.Join(p.dir, "root") }
