package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/loader"
)

// prepare is what every kernel-facing command checks and sets first: kernel BTF and the
// capabilities (one clear line each when missing), and one P for the Go runtime. One goroutine
// does the per-event work; with more Ps the runtime's idle threads spin looking for work on
// every wakeup, on whichever CPU the traced workload runs (measured for trace: 7.3 -> 5.8 µs of
// sockscope CPU per connection, and a faster storm). GOMAXPROCS set by the user wins.
func prepare() error {
	if err := loader.CheckBTF(); err != nil {
		return err
	}
	if err := loader.CheckPrivileges(); err != nil {
		return err
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	return nil
}

// runtimeFlags say where the container runtimes are; every command that names namespaces
// declares them through add.
type runtimeFlags struct {
	endpoints  []string
	dockerHost string
	hostRoot   string
}

func (r *runtimeFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&r.endpoints, "runtime-endpoint", nil, "a container runtime to name namespaces with, instead of probing the well-known sockets: unix:///PATH of a CRI runtime (containerd, CRI-O, cri-dockerd) or of a Docker/podman socket, or tcp://HOST:PORT of a Docker engine; repeatable; \"none\" turns naming off (default $CONTAINER_RUNTIME_ENDPOINT)")
	fs.StringVar(&r.dockerHost, "docker-host", "", "a Docker engine to name namespaces with, instead of probing (e.g. unix:///var/run/docker.sock, tcp://HOST:2375)")
	fs.StringVar(&r.hostRoot, "host-root", "", "where the host's / is mounted, when sockscope runs in a container: the runtime sockets are probed under it")
}

func (r *runtimeFlags) options() containers.Options {
	o := containers.Options{Endpoints: r.endpoints, DockerHost: r.dockerHost, HostRoot: r.hostRoot}
	if len(o.Endpoints) == 0 && o.DockerHost == "" {
		if e := strings.TrimSpace(os.Getenv("CONTAINER_RUNTIME_ENDPOINT")); e != "" {
			o.Endpoints = []string{e}
		}
	}
	return o
}

// spec is the scope of --container and --netns, with the runtimes that name them.
func (r *runtimeFlags) spec(queries, netns []string) containers.Spec {
	return containers.Spec{Runtime: r.options(), Containers: queries, Netns: netns}
}

// checkPid checks that --pid names a process of this machine.
func checkPid(pid int) error {
	if pid == 0 {
		return nil
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return fmt.Errorf("--pid %d: no such process", pid)
	}
	return nil
}

// catchSignals gives a context that SIGINT or SIGTERM (and the extra signals) end, from the moment
// catch is called: a command calls it just before it says "attached", so that a stop right after
// that line still ends the run with everything written. From then on a closed pipe is EPIPE, not
// death. release undoes it all.
func catchSignals(extra ...os.Signal) (ctx context.Context, catch func(), release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var sigs chan os.Signal
	catch = func() {
		sigs = make(chan os.Signal, 1)
		signal.Notify(sigs, append([]os.Signal{syscall.SIGINT, syscall.SIGTERM}, extra...)...)
		signal.Ignore(syscall.SIGPIPE)
		go func() {
			select {
			case <-sigs:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	release = func() {
		if sigs != nil {
			signal.Stop(sigs)
		}
		cancel()
	}
	return ctx, catch, release
}
