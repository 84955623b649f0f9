package benchkit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Machine describes where the benchmark ran.
type Machine struct {
	Kernel   string
	CPU      string
	NumCPU   int
	MemoryGB float64
	Date     string
	LoadAvg  string // at the start
}

func DescribeMachine() Machine {
	m := Machine{Kernel: Kernel(), NumCPU: runtime.NumCPU(), Date: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGB = kb / (1 << 20)
			}
		}
	}
	m.LoadAvg = LoadAvg()
	return m
}

// Kernel is the running kernel's release (uname -r), empty if uname fails.
func Kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// LoadAvg is the 1, 5 and 15 minute load average, "?" if unknown.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// FileID names a binary by a prefix of its SHA-256 and its modification time (UTC, formatted
// with layout).
func FileID(path, layout string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "?"
	}
	st, _ := f.Stat()
	return fmt.Sprintf("sha256 %s…, built %s", hex.EncodeToString(h.Sum(nil))[:12],
		st.ModTime().UTC().Format(layout))
}

// CreateNetns creates a named network namespace with loopback up, registers its deletion with
// AtExit and returns its path.
func CreateNetns(name string) (string, error) {
	if _, err := Run(10*time.Second, "ip", "netns", "add", name); err != nil {
		return "", err
	}
	AtExit(func() {
		if _, err := Run(30*time.Second, "ip", "netns", "del", name); err != nil {
			Logf("deleting netns %s: %v", name, err)
		}
	})
	if _, err := Run(10*time.Second, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return filepath.Join("/run/netns", name), nil
}

// Executable resolves path to an absolute path of an executable regular file; a bare name is
// looked up on PATH first.
func Executable(path string) (string, error) {
	if !strings.Contains(path, "/") {
		if p, err := exec.LookPath(path); err == nil {
			path = p
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", path)
	}
	return abs, nil
}

// NeedOnPath fails for the first of names that is not on PATH.
func NeedOnPath(names ...string) error {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("needs %s on PATH", n)
		}
	}
	return nil
}

// Nstat reads one of the kernel's SNMP counters (as nstat names it, e.g. TcpEstabResets) in the
// named network namespace: an absolute value, the history file left alone.
func Nstat(netns, counter string) (uint64, error) {
	out, err := Run(10*time.Second, "ip", "netns", "exec", netns, "nstat", "-asz", counter)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == counter {
			return strconv.ParseUint(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("nstat in %s: no %s in %q", netns, counter, out)
}
