package loader

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// sockscope version lines the features up under the longest name, each with what it lacks.
func TestWriteFeaturesAlignsNamesAndSaysWhatIsMissing(t *testing.T) {
	var b bytes.Buffer
	WriteFeatures(&b, []Feature{
		{Name: "BTF"},
		{Name: "map walks (bpf_for_each_map_elem)", Err: errors.New("needs Linux 5.13")},
	})
	want := "  BTF                                yes\n" +
		"  map walks (bpf_for_each_map_elem)  no (needs Linux 5.13)\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// A probe that fails says what the kernel or the library said, as a program loaded alone would,
// without naming the one-program collection it is loaded in.
func TestFailedProbeSaysWhatFailed(t *testing.T) {
	requireRoot(t)
	err := probeTracing(ebpf.AttachTraceRawTp, "no_such_tracepoint_in_any_kernel")
	if err == nil {
		t.Fatal("a probe of a tracepoint that does not exist succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "program probe") || !strings.Contains(msg, "no_such_tracepoint_in_any_kernel") {
		t.Errorf("probe error %q: want the missing tracepoint named, and no collection", msg)
	}
}
