package loader

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Ring reads a BPF ring buffer in batches. sockscope's programs never wake the reader (a wakeup
// is a self-IPI on the traced CPU), so the reader polls: Drain takes every record committed so
// far and moves the consumer position once for the whole batch. A reader that moved it after
// each record (as cilium/ebpf's does) would pull the consumer's cache line away from the
// producer at every record, and every reservation on the traced CPU would pay a cache miss for
// it while the reader runs.
type Ring struct {
	cons, prod []byte // the consumer page; the producer page and the data, mapped twice
	consPos    *uint64
	prodPos    *uint64
	data       []byte
	mask       uint64
}

// Record header bits (include/uapi/linux/bpf.h, BPF_RINGBUF_*).
const (
	ringBusy    = 1 << 31
	ringDiscard = 1 << 30
	ringHdrSize = 8
)

// NewRing maps the ring buffer m for reading.
func NewRing(m *ebpf.Map) (*Ring, error) {
	size := int(m.MaxEntries())
	if m.Type() != ebpf.RingBuf || size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("map %s is not a ring buffer", m)
	}
	page := os.Getpagesize()
	cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the ring buffer's consumer page: %w", err)
	}
	// The data pages follow the producer page twice over, so a record that wraps around the end
	// is contiguous in this mapping.
	prod, err := unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("map the ring buffer's data: %w", err)
	}
	return &Ring{
		cons: cons, prod: prod,
		consPos: (*uint64)(unsafe.Pointer(&cons[0])),
		prodPos: (*uint64)(unsafe.Pointer(&prod[0])),
		data:    prod[page:],
		mask:    uint64(size - 1),
	}, nil
}

// Drain hands every committed record to fn, in the order they were reserved, and returns how
// many it handed. A record still being written stops the batch there; the next Drain goes on
// from it. rec is valid only during the call.
func (r *Ring) Drain(fn func(rec []byte)) int {
	cons := atomic.LoadUint64(r.consPos)
	prod := atomic.LoadUint64(r.prodPos)
	n := 0
	for cons < prod {
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[cons&r.mask])))
		if hdr&ringBusy != 0 {
			break
		}
		size := uint64(hdr &^ (ringBusy | ringDiscard))
		if hdr&ringDiscard == 0 {
			start := (cons + ringHdrSize) & r.mask
			fn(r.data[start : start+size : start+size])
			n++
		}
		cons += (size + ringHdrSize + 7) &^ 7
	}
	atomic.StoreUint64(r.consPos, cons)
	return n
}

// Pending is how many bytes the producer has written that the reader has not consumed.
func (r *Ring) Pending() uint64 {
	return atomic.LoadUint64(r.prodPos) - atomic.LoadUint64(r.consPos)
}

// Close unmaps the ring.
func (r *Ring) Close() error {
	if r.cons == nil {
		return nil
	}
	err := errors.Join(unix.Munmap(r.prod), unix.Munmap(r.cons))
	r.cons, r.prod, r.data = nil, nil, nil
	return err
}
