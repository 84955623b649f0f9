package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// Docker, through its CLI.

const labelKey = "sockscope-exportbench"

func checkDocker(image string) error {
	if _, err := benchkit.Run(20*time.Second, "docker", "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Errorf("no Docker daemon answers (start one with: bash .ci/docker.sh): %w", err)
	}
	if _, err := benchkit.Run(20*time.Second, "docker", "image", "inspect", "--format", "{{.Id}}", image); err != nil {
		return fmt.Errorf("needs the image %s (bash .ci/docker.sh builds it): %w", image, err)
	}
	return nil
}

// labelledIDs lists the containers, running or not, that this run started.
func labelledIDs(runID string) ([]string, error) {
	out, err := benchkit.Run(30*time.Second, "docker", "ps", "-aq", "--filter", "label="+labelKey+"="+runID)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// removeLabelled removes every container of this run (the cleanup of all exit paths).
func removeLabelled(runID string) {
	ids, err := labelledIDs(runID)
	if err != nil {
		benchkit.Logf("listing this run's containers: %v", err)
		return
	}
	if len(ids) == 0 {
		return
	}
	benchkit.Logf("removing %d containers", len(ids))
	for len(ids) > 0 {
		n := min(len(ids), 50)
		if _, err := benchkit.Run(2*time.Minute, "docker", append([]string{"rm", "-f"}, ids[:n]...)...); err != nil {
			benchkit.Logf("removing containers: %v", err)
		}
		ids = ids[n:]
	}
}

// dockerRun starts one container of this run and returns its ID.
func dockerRun(runID, name, image string, cmd ...string) (string, error) {
	args := append([]string{"run", "-d", "--rm", "--label", labelKey + "=" + runID, "--name", name, image}, cmd...)
	out, err := benchkit.Run(2*time.Minute, "docker", args...)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(out)
	if len(id) < 12 {
		return "", fmt.Errorf("docker run %s: unexpected output %q", name, out)
	}
	return id, nil
}

// containerPIDs returns the init PID of each container (by ID), to enter its network namespace.
func containerPIDs(ids []string) (map[string]int, error) {
	out := map[string]int{}
	for len(ids) > 0 {
		n := min(len(ids), 50)
		text, err := benchkit.Run(time.Minute, "docker", append([]string{"inspect", "-f", "{{.Id}} {{.State.Pid}}"}, ids[:n]...)...)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			pid, err := strconv.Atoi(f[1])
			if err != nil || pid <= 0 {
				return nil, fmt.Errorf("docker inspect: container %s has PID %q", f[0], f[1])
			}
			out[f[0]] = pid
		}
		ids = ids[n:]
	}
	return out, nil
}

// parallel runs f(0..n-1) on at most k goroutines and returns the first error.
func parallel(n, k int, f func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for range min(n, k) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		mu.Lock()
		stop := first != nil
		mu.Unlock()
		if stop {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// inNetns runs f on an OS thread that entered the network namespace of pid. The thread is
// never unlocked: the runtime discards it, and its namespace, when f returns.
func inNetns(pid int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns of PID %d: %w", pid, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns to the netns of PID %d: %w", pid, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// buildTimeWait leaves n TIME_WAIT sockets in the current thread's network namespace: a
// listener on 127.0.0.1:port, and n connections that the client closes first (connect, client
// close, accept, server close), so that each one ends with its client socket in TIME_WAIT. It
// sets the namespace's tcp_tw_reuse to 0 first, so that no later connect recycles one (the
// setting dies with the namespace). Only loopback is used.
func buildTimeWait(n, port int) error {
	// /proc/sys/net resolves to the namespace of the thread that opens it.
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_tw_reuse", []byte("0\n"), 0o644); err != nil {
		return fmt.Errorf("tcp_tw_reuse=0 in the container's netns: %w", err)
	}
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	addr := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	if err := unix.Bind(lfd, addr); err != nil {
		return fmt.Errorf("bind 127.0.0.1:%d: %w", port, err)
	}
	if err := unix.Listen(lfd, 128); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		cfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(cfd, addr); err != nil {
			unix.Close(cfd)
			return fmt.Errorf("connect 127.0.0.1:%d (connection %d): %w", port, i, err)
		}
		unix.Close(cfd)
		sfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		unix.Close(sfd)
	}
	return nil
}

// bpftool map dump support, to see which namespaces the exporter's counters belong to.

// bpfMapNetns reads the keys of one of process pid's BPF maps, by map name, with bpftool; the
// first 4 bytes of each key (the netns inode in both the counters and the tracked map) are
// returned as uint32s.
func bpfMapNetns(bpftool string, pid int, name string) ([]uint32, error) {
	for _, id := range benchkit.FdinfoIDs(pid, "map_id") {
		out, err := benchkit.Run(20*time.Second, bpftool, "map", "show", "id", strconv.Itoa(int(id)), "-j")
		if err != nil {
			continue
		}
		var info struct {
			Name string `json:"name"`
		}
		if json.Unmarshal([]byte(out), &info) != nil || info.Name != name {
			continue
		}
		if out, err = benchkit.Run(time.Minute, bpftool, "map", "dump", "id", strconv.Itoa(int(id)), "-j"); err != nil {
			return nil, err
		}
		return parseDumpNetns([]byte(out))
	}
	return nil, fmt.Errorf("process %d holds no BPF map called %q", pid, name)
}

func parseDumpNetns(b []byte) ([]uint32, error) {
	var entries []struct {
		Key []string `json:"key"`
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("bpftool map dump -j: %w", err)
	}
	out := make([]uint32, 0, len(entries))
	for _, e := range entries {
		if len(e.Key) < 4 {
			return nil, fmt.Errorf("bpftool map dump -j: key of %d bytes", len(e.Key))
		}
		var ns uint32
		for i := 3; i >= 0; i-- {
			v, err := strconv.ParseUint(strings.TrimPrefix(e.Key[i], "0x"), 16, 8)
			if err != nil {
				return nil, fmt.Errorf("bpftool map dump -j: key byte %q", e.Key[i])
			}
			ns = ns<<8 | uint32(v)
		}
		out = append(out, ns)
	}
	return out, nil
}

// mapCensus is what the exporter's counter map holds, by namespace, read with bpftool.
type mapCensus struct {
	Counters int // entries in the counter map
	Stale    int // of those, entries of namespaces not in the tracked map
	StaleNS  int // namespaces those belong to
	Tracked  map[uint32]bool
	ByNetns  map[uint32]int // counter entries by namespace
}

// outside counts the entries of namespaces not in set, and those namespaces.
func (c *mapCensus) outside(set map[uint32]bool) (entries, namespaces int) {
	for ns, n := range c.ByNetns {
		if !set[ns] {
			entries += n
			namespaces++
		}
	}
	return entries, namespaces
}

func census(bpftool string, pid int) (mapCensus, error) {
	var c mapCensus
	counters, err := bpfMapNetns(bpftool, pid, "counters")
	if err != nil {
		return c, err
	}
	tracked, err := bpfMapNetns(bpftool, pid, "tracked")
	if err != nil {
		return c, err
	}
	c.Tracked, c.ByNetns = map[uint32]bool{}, map[uint32]int{}
	for _, ns := range tracked {
		c.Tracked[ns] = true
	}
	for _, ns := range counters {
		c.ByNetns[ns]++
	}
	c.Counters = len(counters)
	c.Stale, c.StaleNS = c.outside(c.Tracked)
	return c, nil
}
