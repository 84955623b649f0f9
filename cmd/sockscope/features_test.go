package main

import (
	"bufio"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kernelFeatures is what sockscope version found: feature name -> its status ("yes" or "no (...)").
func kernelFeatures(t *testing.T) map[string]string {
	t.Helper()
	out := sh(t, sockscopeBin, "version")
	fs := map[string]string{}
	in := false
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, " ") {
			in = line == "kernel features:"
			continue
		}
		if !in {
			continue
		}
		name, status, ok := strings.Cut(strings.TrimSpace(line), "  ")
		if !ok {
			t.Fatalf("feature line without a status: %q", line)
		}
		fs[name] = strings.TrimSpace(status)
	}
	if len(fs) == 0 {
		t.Fatalf("sockscope version lists no kernel features:\n%s", out)
	}
	return fs
}

// kernelHas reports whether sockscope version finds the kernel feature name.
func kernelHas(t *testing.T, name string) bool {
	t.Helper()
	status, ok := kernelFeatures(t)[name]
	if !ok {
		t.Fatalf("sockscope version lists no feature %q", name)
	}
	return status == "yes"
}

// On a kernel without something a command needs, the command says which feature, since when
// Linux has it and what is lost, in one line, and exits 1; with everything there, it runs. So
// the test checks something on every kernel: on the matrix's 5.10 the failures, on 6.1 the
// exporter's warning about resets, elsewhere that every command starts.
func TestMissingKernelFeaturesAreNamedInOneLine(t *testing.T) {
	requireTracing(t)
	ns := newNetns(t)
	features := kernelFeatures(t)
	base := []string{"BTF (/sys/kernel/btf/vmlinux)", "tp_btf (BTF tracepoints)"}
	traceNeeds := append([]string{"ring buffer", "task storage", "owner walk (iter/task_file)"}, base...)
	// The commands that run until stopped get --duration rather than a signal: trace, syscalls
	// and record install their signal handlers only after they say they are attached.
	for _, c := range []struct {
		args  []string
		ready string // the stderr line after which export is stopped; "" for a command that ends
		needs []string
	}{
		{[]string{"trace", "--netns", ns.path, "--duration", "1s"}, "", traceNeeds},
		{[]string{"sockets", "--netns", ns.path}, "", []string{"BTF (/sys/kernel/btf/vmlinux)", "socket iterators (iter/tcp)", "owner walk (iter/task_file)"}},
		{[]string{"syscalls", "--netns", ns.path, "--duration", "1s"}, "", append([]string{"task storage"}, base...)},
		{[]string{"export", "--web.listen-address", "127.0.0.1:0", "--host=false", "--netns", "t=" + ns.path}, "sockscope: exporting on",
			append([]string{"socket iterators (iter/tcp)", "owner walk (iter/task_file)", "map walks (bpf_for_each_map_elem)"}, base...)},
		{[]string{"record", "-w", filepath.Join(t.TempDir(), "r.rec"), "--netns", ns.path, "--duration", "1s"}, "",
			append([]string{"socket iterators (iter/tcp)"}, traceNeeds...)},
	} {
		var lacks []string
		for _, f := range c.needs {
			status, ok := features[f]
			if !ok {
				t.Fatalf("sockscope version lists no feature %q", f)
			}
			if status != "yes" {
				lacks = append(lacks, f)
			}
		}
		stderr := runUntilReady(t, c.ready, append(c.args, noDocker)...)
		lines := strings.FieldsFunc(stderr.text, func(r rune) bool { return r == '\n' })
		var problems []string
		for _, l := range lines {
			if !strings.HasPrefix(l, "sockscope: ") {
				problems = append(problems, "a line that is not sockscope's: "+l)
			}
		}
		if len(lacks) > 0 {
			last := ""
			if len(lines) > 0 {
				last = lines[len(lines)-1]
			}
			if stderr.code != 1 {
				problems = append(problems, "exit status "+stderr.status+", want 1")
			}
			for _, f := range lacks {
				if !strings.Contains(last, f) {
					problems = append(problems, "its last line does not name "+f)
				}
			}
		} else if stderr.code != 0 {
			problems = append(problems, "exit status "+stderr.status+", want 0")
		}
		if c.args[0] == "export" && len(lacks) == 0 {
			warned := strings.Contains(stderr.text, "sockscope: warning: this kernel lacks tcp_send_reset, every reset")
			if warned != (features["tcp_send_reset, every reset"] != "yes") {
				problems = append(problems, "warns about resets sent unless, and only unless, the kernel traces every reset")
			}
		}
		if len(problems) > 0 {
			t.Errorf("sockscope %s, on a kernel that lacks %q: %s\nstderr:\n%s", c.args[0], lacks, strings.Join(problems, "; "), stderr.text)
		} else if len(lacks) > 0 {
			t.Logf("sockscope %s: %s", c.args[0], lines[len(lines)-1])
		}
	}
}

type exitStderr struct {
	text   string
	code   int
	status string
}

// runUntilReady runs sockscope ARGS. A command that prints ready is stopped with SIGTERM once it
// has; one that fails, or ends by itself (ready ""), is waited for.
func runUntilReady(t *testing.T, ready string, args ...string) exitStderr {
	t.Helper()
	cmd := exec.Command(sockscopeBin, args...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var text strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		text.WriteString(sc.Text() + "\n")
		if ready != "" && strings.HasPrefix(sc.Text(), ready) {
			cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	err = cmd.Wait()
	r := exitStderr{text: text.String(), status: "0"}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code, r.status = ee.ExitCode(), ee.String()
	} else if err != nil {
		t.Fatalf("sockscope %v: %v", args, err)
	}
	return r
}
