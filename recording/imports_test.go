package recording

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestRecordingAndDiagnoseDoNotImportTheBPFLoader keeps the file format and its readers apart
// from the kernel side: a recording is read on machines that never load BPF, and a loader
// struct in a block would make renaming its fields change the format.
func TestRecordingAndDiagnoseDoNotImportTheBPFLoader(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command to list imports")
	}
	const mod = "github.com/sockscope/sockscope/"
	out, err := exec.Command(gobin, "list", "-deps", "-test", mod+"recording", mod+"diagnose").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var bad []string
	for _, p := range strings.Fields(string(out)) {
		if p == mod+"loader" || strings.HasPrefix(p, mod+"loader/") || p == "github.com/cilium/ebpf" || strings.HasPrefix(p, "github.com/cilium/ebpf/") {
			bad = append(bad, p)
		}
	}
	if len(bad) > 0 {
		// The loader or the library's root names the mistake; its own imports follow from it.
		if roots := slices.DeleteFunc(slices.Clone(bad), func(p string) bool { return strings.HasPrefix(p, "github.com/cilium/ebpf/") }); len(roots) > 0 {
			bad = roots
		}
		t.Errorf("recording or diagnose (or their tests) depend on %s", strings.Join(bad, ", "))
	}
}
