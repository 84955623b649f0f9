package stacks

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

const testImage = "sockscope-test/busybox"

func needDocker(t *testing.T) {
	t.Helper()
	testenv.Root(t)
	testenv.Command(t, "docker")
	testenv.DockerSocket(t)
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", testImage).CombinedOutput(); err != nil {
		msg := "needs the image " + testImage + " (build it with: bash .ci/docker.sh): " + strings.TrimSpace(string(out))
		if testenv.InCI() {
			t.Fatal("prerequisite missing (CI=true, so this fails instead of skipping): " + msg)
		}
		t.Skip("skipped: " + msg)
	}
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// findByComm returns the PID of the only process whose comm is name.
func findByComm(t *testing.T, name string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/proc")
		var found []int
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(b)) == name {
				found = append(found, pid)
			}
		}
		if len(found) == 1 {
			return found[0]
		}
		if len(found) > 1 {
			t.Fatalf("%d processes named %s", len(found), name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no process named %s", name)
	return 0
}

// TestContainerOnlyBinary runs the static build of opener.c inside a container, from a file that
// exists only in the container's filesystem (copied in with docker cp, the host's copy deleted),
// samples it from the host by its host PID, and names its frames through /proc/PID/root.
func TestContainerOnlyBinary(t *testing.T) {
	needDocker(t)
	dir := t.TempDir()
	b := make([]byte, 3)
	rand.Read(b)
	name := "opener-" + hex.EncodeToString(b)
	bin := build(t, "gcc", "opener.c", dir, name, "-O2", "-fomit-frame-pointer", "-static")

	ctr := "sockscope-test-stacks-" + hex.EncodeToString(b)
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", "-v", ctr).Run() })
	docker(t, "run", "-d", "--name", ctr, "--label", "sockscope.test=1", testImage, "sleep", "3600")
	docker(t, "cp", bin, ctr+":/"+name)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/" + name); !os.IsNotExist(err) {
		t.Fatalf("/%s exists on the host: %v", name, err)
	}

	p := startTraced(t, "docker", "exec", "-i", ctr, "/"+name, "/tmp")
	pid := findByComm(t, name)
	samples, done := capture(t, pid, p.stdin, p.out)
	u := New(Options{})
	defer u.Close()
	counts := checkOpener(t, u, samples, done)
	st := counts.Sorted()[0].Stack
	for _, f := range st.Frames {
		if f.Module != "/"+name || f.Source != "symtab" {
			t.Errorf("frame %s: module %q, named from %q; want /%s and its .symtab", f.Name(), f.Module, f.Source, name)
		}
	}
	if want := fmt.Sprintf("/proc/%d/root/%s", pid, name); st.Frames[1].obj.origin != want {
		t.Errorf("the binary was read from %s, want %s", st.Frames[1].obj.origin, want)
	}
	if st.Frames[0].BuildID == "" {
		t.Errorf("no build ID read from the container's binary")
	}
}

// TestDeletedBinary deletes the sampled program's file while it runs: the mapping says
// "(deleted)", and the object is read through /proc/PID/map_files instead.
func TestDeletedBinary(t *testing.T) {
	testenv.Root(t)
	dir := t.TempDir()
	bin := build(t, "gcc", "opener.c", dir, "opener-deleted", "-O2", "-fomit-frame-pointer")
	p := startTraced(t, bin, dir)
	waitBlockedOnStdin(t, p.pid)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	samples, done := capture(t, p.pid, p.stdin, p.out)
	u := New(Options{})
	defer u.Close()
	counts := checkOpener(t, u, samples, done)
	st := counts.Sorted()[0].Stack
	if f := st.Frames[1]; !strings.Contains(f.obj.origin, "/map_files/") {
		t.Errorf("the deleted binary was read from %s, want /proc/PID/map_files/...", f.obj.origin)
	}
	if f := st.Frames[1]; f.Module != bin || !f.mapping.Deleted {
		t.Errorf("write_temp_file's module %q deleted=%v, want %s deleted", f.Module, f.mapping.Deleted, bin)
	}
}
