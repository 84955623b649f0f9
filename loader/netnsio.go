package loader

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Reading inside a network namespace: what the socket iterators and the exporter's gauges see
// from a namespace's own point of view (an iterator sees the namespace of the thread that opens
// it), and the sysctls that decide how many local ports a client there has.

// ErrNetnsGone means the namespace's file no longer exists (its container exited).
var ErrNetnsGone = errors.New("network namespace is gone")

// OpenIn opens an iterator inside the network namespace at nsPath and reads the namespace's port
// sysctls there. The iterator is bound to the namespace once open: it can be read from any thread.
func OpenIn(nsPath string, it *link.Iter, portRange *[2]int, twReuse *int, somaxconn *int) (io.ReadCloser, error) {
	var rd io.ReadCloser
	err := InNetns(nsPath, func() error {
		var err error
		if rd, err = it.Open(); err != nil {
			return fmt.Errorf("open iter/tcp: %w", err)
		}
		*portRange, *twReuse = ReadPortSysctls()
		if somaxconn != nil {
			*somaxconn = ReadIntSysctl("/proc/sys/net/core/somaxconn")
		}
		return nil
	})
	return rd, err
}

// ReadAll reads an iterator to its end in large reads: the kernel fills as much of each read as
// it can, so 1 MiB reads take a few syscalls where io.ReadAll's small first reads take many.
func ReadAll(r io.Reader) ([]byte, error) {
	const chunk = 1 << 20
	b := make([]byte, 0, chunk)
	for {
		if cap(b)-len(b) < chunk/2 {
			b = append(b, make([]byte, chunk)...)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF || (err == nil && n == 0) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// ReadPortSysctls reads the current thread's namespace's port range and tcp_tw_reuse; net
// sysctls answer for the namespace of whoever opens them. -1 where unreadable.
func ReadPortSysctls() ([2]int, int) {
	rng := [2]int{-1, -1}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			rng[0], _ = strconv.Atoi(f[0])
			rng[1], _ = strconv.Atoi(f[1])
		}
	}
	return rng, ReadIntSysctl("/proc/sys/net/ipv4/tcp_tw_reuse")
}

// ReadIntSysctl reads a one-number sysctl; -1 where unreadable.
func ReadIntSysctl(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// InNetns runs fn on a locked OS thread inside the network namespace at path.
func InNetns(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", path, ErrNetnsGone)
		}
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is unlocked only once it is back in its own namespace; otherwise the
		// runtime ends it with the goroutine, so no other goroutine runs in a foreign netns.
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer self.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			if errors.Is(err, unix.EPERM) {
				errc <- fmt.Errorf("enter network namespace %s: %w (sockscope needs CAP_SYS_ADMIN for this)", path, err)
			} else {
				errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			}
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to own network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
