// Package testenv decides what a test does when its prerequisites (root, kernel BTF, a Docker
// daemon, a command) are missing: in CI (CI=true) the test fails, because a skipped test proves
// nothing there; on a developer's machine it skips with a message naming what it needs.
package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI, where missing prerequisites are failures.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing (CI=true, so this fails instead of skipping): "+format, args...)
	}
	t.Skipf("skipped: "+format, args...)
}

// Root requires uid 0 (the BPF programs, tracefs and namespaces need it).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN); run the tests with sudo")
	}
}

// BTF requires kernel BTF, which the CO-RE programs need.
func BTF(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		missing(t, "needs kernel BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF=y)")
	}
}

// Command requires an executable on PATH.
func Command(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "needs the command %q on PATH", name)
	}
	return p
}

// DockerSocket returns the path of the Docker daemon's unix socket, requiring that it answers.
func DockerSocket(t testing.TB) string {
	t.Helper()
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(context.Background(), "unix", sock)
	if err != nil {
		missing(t, "needs a running Docker daemon at %s (start one with: bash .ci/docker.sh)", sock)
		return sock
	}
	c.Close()
	return sock
}

// Postgres returns the bin directory of Debian's newest PostgreSQL server
// (/usr/lib/postgresql/VERSION/bin, with initdb, postgres and psql), requiring the OS user
// postgres it must run as.
func Postgres(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVersion := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil || v <= bestVersion {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			best, bestVersion = d, v
		}
	}
	if best == "" {
		missing(t, "needs a PostgreSQL server from Debian's packages (apt-get install postgresql)")
		return ""
	}
	if _, err := user.Lookup("postgres"); err != nil {
		missing(t, "needs the OS user postgres, which Debian's postgresql package creates")
	}
	return best
}
