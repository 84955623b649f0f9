package loader

import (
	"runtime/debug"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// The kernel's BTF, parsed once for everything one command loads: the feature probes, the
// tracepoints' argument counts, and every program set's CO-RE relocations and attach targets.
// cilium/ebpf parses it afresh for each program or collection loaded without a shared cache, and
// a parse is a few megabytes of heap and milliseconds of CPU; `export` and `record` load four
// program sets after half a dozen probes. The parse is dropped, and its memory returned to the
// kernel, btfKeep after the last load ends (a command's loads follow each other closely), so that
// a long-running command does not keep it; a command whose loads are over releases it at once
// (ReleaseBTF).
var kernelBTF struct {
	sync.Mutex
	cache *btf.Cache
	drop  *time.Timer
}

const btfKeep = time.Second

// LoadOptions are the options every collection is loaded with: the shared kernel BTF. Call
// DoneLoading once the load is over.
func LoadOptions() *ebpf.CollectionOptions {
	return &ebpf.CollectionOptions{Cache: btfCache()}
}

// btfCache is the shared parse, made on first use; it is kept until DoneLoading's timer fires.
func btfCache() *btf.Cache {
	kernelBTF.Lock()
	defer kernelBTF.Unlock()
	if kernelBTF.drop != nil {
		kernelBTF.drop.Stop()
	}
	if kernelBTF.cache == nil {
		kernelBTF.cache = btf.NewCache()
	}
	return kernelBTF.cache
}

// DoneLoading says that a load that used the shared parse is over: unless another load begins
// within btfKeep, the parse is dropped and the heap returned.
func DoneLoading() {
	kernelBTF.Lock()
	defer kernelBTF.Unlock()
	if kernelBTF.drop != nil {
		kernelBTF.drop.Stop()
	}
	kernelBTF.drop = time.AfterFunc(btfKeep, ReleaseBTF)
}

// ReleaseBTF drops the shared parse now and returns the heap to the kernel: a command calls it
// once everything it loads is loaded, so that it is attached with its memory settled; a later
// load parses again.
func ReleaseBTF() {
	kernelBTF.Lock()
	if kernelBTF.drop != nil {
		kernelBTF.drop.Stop()
	}
	kernelBTF.cache = nil
	kernelBTF.Unlock()
	debug.FreeOSMemory()
}
