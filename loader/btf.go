package loader

import (
	"runtime/debug"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// The kernel's BTF, parsed once for everything one command loads: the feature probes, the
// tracepoints' argument counts, and every program set's CO-RE relocations and attach targets.
// cilium/ebpf parses it afresh for each program or collection loaded without a shared cache, and
// a parse is a few megabytes of heap and milliseconds of CPU; `export` and `record` load four
// program sets after half a dozen probes. A command releases it once everything it loads is
// loaded (ReleaseBTF); a short-lived one (`sockets`) just exits.
var kernelBTF struct {
	sync.Mutex
	cache *btf.Cache
}

// LoadOptions are the options every collection is loaded with: the shared kernel BTF.
func LoadOptions() *ebpf.CollectionOptions {
	return &ebpf.CollectionOptions{Cache: btfCache()}
}

// btfCache is the shared parse, made on first use and kept until ReleaseBTF.
func btfCache() *btf.Cache {
	kernelBTF.Lock()
	defer kernelBTF.Unlock()
	if kernelBTF.cache == nil {
		kernelBTF.cache = btf.NewCache()
	}
	return kernelBTF.cache
}

// ReleaseBTF drops the shared parse and returns the heap to the kernel: a long-running command
// calls it once everything it loads is loaded, so that it is attached with its memory settled;
// a later load parses again.
func ReleaseBTF() {
	kernelBTF.Lock()
	kernelBTF.cache = nil
	kernelBTF.Unlock()
	debug.FreeOSMemory()
}
