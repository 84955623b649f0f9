package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// cpioWriter writes the "newc" cpio format that the kernel unpacks as an initramfs. The kernel
// unpacks archives laid end to end one after the other, so the guest's root is several archives
// concatenated: the cached tools, this run's binaries, one kernel's modules. Entries have uid 0,
// mtime 0 and inode numbers in order, so the same input gives the same bytes.
type cpioWriter struct {
	w    *bufio.Writer
	n    int64 // bytes written, for padding
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCpioWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), ino: 1, dirs: map[string]bool{"": true, "/": true}}
}

// Mode bits of cpio entries (stat's S_IF*).
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
)

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) header(name string, mode uint32, size int64) {
	name = strings.TrimPrefix(name, "/")
	c.write(fmt.Appendf(nil, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0))
	c.write(append([]byte(name), 0))
	c.pad()
	c.ino++
}

// parents creates the directories above p that this archive has not created yet.
func (c *cpioWriter) parents(p string) {
	d := path.Dir(path.Clean("/" + p))
	if c.dirs[d] {
		return
	}
	c.parents(d)
	c.header(d, cpioDir|0o755, 0)
	c.dirs[d] = true
}

// Dir adds a directory (and its parents).
func (c *cpioWriter) Dir(p string, perm uint32) {
	p = path.Clean("/" + p)
	if c.dirs[p] {
		return
	}
	c.parents(p)
	c.header(p, cpioDir|perm, 0)
	c.dirs[p] = true
}

// Bytes adds a regular file with contents b.
func (c *cpioWriter) Bytes(p string, perm uint32, b []byte) {
	c.parents(p)
	c.header(p, cpioFile|perm, int64(len(b)))
	c.write(b)
	c.pad()
}

// File adds a regular file with the contents of the host file src (symlinks followed).
func (c *cpioWriter) File(p string, perm uint32, src string) {
	if c.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.err = err
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.err = err
		return
	}
	c.parents(p)
	c.header(p, cpioFile|perm, st.Size())
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, f)
	c.n += n
	if err == nil && n != st.Size() {
		err = fmt.Errorf("%s changed size while it was copied", src)
	}
	if err != nil {
		c.err = err
		return
	}
	c.pad()
}

// Symlink adds a symbolic link p -> target.
func (c *cpioWriter) Symlink(p, target string) {
	c.parents(p)
	c.header(p, cpioSymlink|0o777, int64(len(target)))
	c.write([]byte(target))
	c.pad()
}

// Close writes the trailer and flushes; it returns the first error of any call.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}
