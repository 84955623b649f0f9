package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// The guest's root is an initramfs, unpacked into RAM by the kernel itself: the Debian kernels
// need no module to mount it, and the cloud flavour has no 9p or virtiofs to share a directory
// with. It holds busybox, the commands the tests use as ground truth or need (copied from this
// machine's Debian packages with the libraries they load), the static sockscope binaries and
// test binary, and the modules ss needs from the kernel's own package.

// entry is one file of an archive: exactly one of src, data or link is set.
type entry struct {
	path string
	perm uint32
	src  string // a host file
	data []byte
	link string // a symlink's target
}

// archive is an ordered list of entries, written with writeArchive.
type archive []entry

func (a *archive) file(p string, perm uint32, src string) {
	*a = append(*a, entry{path: p, perm: perm, src: src})
}

func (a *archive) bytes(p string, perm uint32, b []byte) {
	*a = append(*a, entry{path: p, perm: perm, data: b})
}

func (a *archive) symlink(p, target string) { *a = append(*a, entry{path: p, link: target}) }

// rootFormat changes whenever write lays out an archive differently, so that no cached archive
// of the old layout is taken for the new.
const rootFormat = 1

// key is a hash of the archive's paths, modes and contents: the name it is cached under.
func (a archive) key() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "sockscope initramfs %d\n", rootFormat)
	for _, e := range a {
		fmt.Fprintf(h, "%s\x00%o\x00%s\x00", e.path, e.perm, e.link)
		h.Write(e.data)
		if e.src != "" {
			f, err := os.Open(e.src)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", fmt.Errorf("read %s: %w", e.src, err)
			}
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// write writes the archive to file, through a temporary file, so that a cached archive is
// never a partial one.
func (a archive) write(file string) error {
	tmp := file + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := newCpioWriter(f)
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root"} {
		w.Dir(d, 0o755)
	}
	for _, e := range a {
		switch {
		case e.link != "":
			w.Symlink(e.path, e.link)
		case e.src != "":
			w.File(e.path, e.perm, e.src)
		default:
			w.Bytes(e.path, e.perm, e.data)
		}
	}
	err = w.Close()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return os.Rename(tmp, file)
}

// cached writes the archive under dir/prefix-KEY.cpio unless it is there already.
func (a archive) cached(dir, prefix string) (file string, hit bool, err error) {
	key, err := a.key()
	if err != nil {
		return "", false, err
	}
	file = filepath.Join(dir, prefix+"-"+key+".cpio")
	if _, err := os.Stat(file); err == nil {
		return file, true, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	return file, false, a.write(file)
}

// guestCommands are what the tests run inside the guest besides busybox: iproute2 for network
// namespaces (busybox's ip has no `ip netns`) and the ground truth (ss, nstat), procps's sysctl
// (the tests set per-netns sysctls with -q -w), and Prometheus for the exporter's test.
var guestCommands = []string{"ip", "ss", "nstat", "sysctl", "prometheus", "promtool"}

// toolsArchive is busybox plus guestCommands with their libraries, as this machine has them.
func toolsArchive() (archive, error) {
	var a archive
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox is not installed (Debian: apt-get install busybox-static)")
	}
	if err := a.withLibraries("/bin/busybox", bb); err != nil {
		return nil, err
	}
	shadowed := map[string]bool{}
	for _, name := range guestCommands {
		p, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("the guest needs %s, which is not installed here (Debian packages: iproute2 procps prometheus)", name)
		}
		if p, err = filepath.EvalSymlinks(p); err != nil {
			return nil, err
		}
		if err := a.withLibraries("/usr/bin/"+name, p); err != nil {
			return nil, err
		}
		shadowed[name] = true
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if !shadowed[applet] && applet != "busybox" {
			a.symlink("/bin/"+applet, "busybox")
		}
	}
	a.bytes("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	a.bytes("/etc/group", 0o644, []byte("root:x:0:\n"))
	a.bytes("/etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n"))
	return a, nil
}

// withLibraries adds the host file src at p, and the shared libraries and loader that ldd says
// it needs at the paths ldd names (their contents, symlinks followed).
func (a *archive) withLibraries(p, src string) error {
	a.file(p, 0o755, src)
	libs, err := sharedLibraries(src)
	if err != nil {
		return err
	}
	for _, lib := range libs {
		if !a.has(lib) {
			a.file(lib, 0o755, lib)
		}
	}
	return nil
}

func (a archive) has(p string) bool {
	for _, e := range a {
		if e.path == p {
			return true
		}
	}
	return false
}

// sharedLibraries lists the absolute paths in ldd's output for bin; none for a static binary.
func sharedLibraries(bin string) ([]string, error) {
	cmd := exec.Command("ldd", bin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if strings.Contains(string(out)+stderr.String(), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	return parseLdd(out), nil
}

// parseLdd takes "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
// "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
func parseLdd(out []byte) []string {
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for i, w := range f {
			if strings.HasPrefix(w, "/") && (i == 0 || f[i-1] == "=>") {
				libs = append(libs, w)
			}
		}
	}
	sort.Strings(libs)
	return libs
}

//go:embed init.sh
var guestInit []byte

// binArchive is this run's part of the root: /init and the sockscope binaries in binDir.
func binArchive(binDir string, bins []string) archive {
	var a archive
	a.bytes("/init", 0o755, guestInit)
	for _, b := range bins {
		a.file("/opt/sockscope/"+b, 0o755, filepath.Join(binDir, b))
	}
	return a
}

// testsArchive is one kernel's part: the tests its init runs, and their timeout.
func testsArchive(pattern, testTimeout string) archive {
	var a archive
	a.bytes("/opt/sockscope/run", 0o644, []byte(pattern+"\n"))
	a.bytes("/opt/sockscope/timeout", 0o644, []byte(testTimeout+"\n"))
	return a
}

// concat writes the archives one after the other into file.
func concat(file string, parts ...string) error {
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	for _, p := range parts {
		in, err := os.Open(p)
		if err != nil {
			out.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			out.Close()
			return fmt.Errorf("write %s: %w", file, err)
		}
	}
	return out.Close()
}
