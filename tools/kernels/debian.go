package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// kernel is one Debian kernel of the matrix, pinned: the package at exactly this version.
type kernel struct {
	Name    string // short name for reports and -kernels
	Package string // Debian binary package
	Version string // its exact version
	Suite   string // the archive suite that has it
	About   string // who runs it
	// Tests are the tests this kernel runs: matrixTests, or belowMinimumTests for a kernel
	// older than sockscope needs, kept to prove that it says so clearly.
	Tests []string
}

func (k kernel) tests() []string {
	if k.Tests != nil {
		return k.Tests
	}
	return matrixTests
}

// kernels is the matrix; the one place its versions are pinned. A pin that has left the archive
// (security updates replace the 6.12 and 6.1 packages every few weeks) fails the run with the
// package's name until it is cached or bumped: `apt-cache policy 'linux-image-6.1.0-*-amd64'`
// after an `apt-get update` with the suite below lists what there is.
var kernels = []kernel{
	{Name: "5.10", Package: "linux-image-5.10.0-32-amd64", Version: "5.10.223-1", Suite: "bullseye",
		About: "Debian 11's kernel, older than sockscope needs: it must say what is missing", Tests: belowMinimumTests},
	{Name: "6.1", Package: "linux-image-6.1.0-50-amd64", Version: "6.1.176-1", Suite: "bookworm",
		About: "Debian 12's kernel (generic flavour), as of the 12.x point release"},
	{Name: "6.12-cloud", Package: "linux-image-6.12.117+deb12-cloud-amd64", Version: "6.12.117-1~deb12u1", Suite: "bookworm-security",
		About: "Debian 12's 6.12 kernel, cloud flavour (what cloud images boot)"},
}

// diagModules are what ss needs from a Debian kernel to list TCP sockets through netlink
// (sock_diag); they are modules there, loaded in this order.
var diagModules = []string{"inet_diag", "tcp_diag"}

// debian fetches kernel packages with apt-get, through a sources list and package lists of its
// own under the cache, so that it depends neither on this machine's apt sources nor changes them.
type debian struct {
	cache  string // the cache root
	mirror string // e.g. http://deb.debian.org
	log    func(format string, args ...any)
	update bool // the private package lists are fresh in this run
}

func (d *debian) aptDir() string { return filepath.Join(d.cache, "apt") }

func (d *debian) aptArgs() []string {
	a := d.aptDir()
	return []string{
		"-q",
		"-o", "Dir::Etc::sourcelist=" + filepath.Join(a, "sources.list"),
		"-o", "Dir::Etc::sourceparts=-",
		"-o", "Dir::State::Lists=" + filepath.Join(a, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(a, "cache"),
		"-o", "APT::Sandbox::User=" + sandboxUser(),
	}
}

// sandboxUser keeps apt from dropping to _apt, which may not read a cache in root's home.
func sandboxUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return os.Getenv("USER")
}

// sourcesList names the suites the pins come from, signed by Debian's archive keys.
func (d *debian) sourcesList(ks []kernel) string {
	suites := map[string]bool{}
	for _, k := range ks {
		suites[k.Suite] = true
	}
	var names []string
	for s := range suites {
		names = append(names, s)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, s := range names {
		archive := d.mirror + "/debian"
		if strings.HasSuffix(s, "-security") {
			archive = d.mirror + "/debian-security"
		}
		fmt.Fprintf(&b, "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n", archive, s)
	}
	return b.String()
}

// refresh writes the sources list and runs apt-get update on it, once per run.
func (d *debian) refresh(ks []kernel) error {
	if d.update {
		return nil
	}
	a := d.aptDir()
	for _, dir := range []string{filepath.Join(a, "lists", "partial"), filepath.Join(a, "cache", "archives", "partial")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(a, "sources.list"), []byte(d.sourcesList(ks)), 0o644); err != nil {
		return err
	}
	d.log("apt-get update (kernel package lists, in %s)", a)
	if out, err := exec.Command("apt-get", append(d.aptArgs(), "update")...).CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update for the kernel packages: %v\n%s", err, tail(string(out), 10))
	}
	d.update = true
	return nil
}

// unpacked is what a guest needs of a kernel package, kept in the cache.
type unpacked struct {
	Dir     string // cache dir of this package version
	Release string // uname -r
	Vmlinuz string
	Modules string // the cpio of diagModules
	Config  string // the kernel's build configuration
}

func (d *debian) kernelDir(k kernel) string {
	return filepath.Join(d.cache, "kernels", k.Package+"_"+k.Version)
}

// fetch returns the unpacked kernel, downloading and unpacking it unless it is cached.
func (d *debian) fetch(k kernel, all []kernel) (unpacked, error) {
	dir := d.kernelDir(k)
	if u, err := readUnpacked(dir); err == nil {
		return u, nil
	}
	if err := d.refresh(all); err != nil {
		return unpacked{}, err
	}
	if err := os.MkdirAll(d.cache, 0o755); err != nil {
		return unpacked{}, err
	}
	tmp, err := os.MkdirTemp(d.cache, "fetch-")
	if err != nil {
		return unpacked{}, err
	}
	defer os.RemoveAll(tmp)
	pin := k.Package + "=" + k.Version
	d.log("apt-get download %s", pin)
	cmd := exec.Command("apt-get", append(d.aptArgs(), "download", pin)...)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return unpacked{}, fmt.Errorf("kernel package %s cannot be downloaded: %s", pin, aptError(out, err))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return unpacked{}, fmt.Errorf("kernel package %s: apt-get download left %d .deb files", pin, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return unpacked{}, fmt.Errorf("unpack %s: %v %s", filepath.Base(debs[0]), err, out)
	}
	if err := keepForGuest(root, tmp+"/keep"); err != nil {
		return unpacked{}, fmt.Errorf("kernel package %s: %w", pin, err)
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return unpacked{}, err
	}
	if err := os.Rename(tmp+"/keep", dir); err != nil {
		return unpacked{}, err
	}
	return readUnpacked(dir)
}

// aptError is apt's own reason, one line ("E: Version '...' for '...' was not found").
func aptError(out []byte, err error) string {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") {
			return strings.TrimPrefix(l, "E: ")
		}
	}
	return fmt.Sprintf("%v: %s", err, tail(string(out), 3))
}

// keepForGuest copies from an unpacked linux-image package what a guest needs into keep:
// vmlinuz, config, release (uname -r), and modules.cpio with diagModules, decompressed (the 6.12
// packages ship .ko.xz, which busybox's insmod does not read) and listed in load order.
func keepForGuest(root, keep string) error {
	vmlinuz, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return fmt.Errorf("%d vmlinuz files in /boot", len(vmlinuz))
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	if err := os.MkdirAll(keep, 0o755); err != nil {
		return err
	}
	if err := os.Rename(vmlinuz[0], filepath.Join(keep, "vmlinuz")); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(root, "boot", "config-"+release), filepath.Join(keep, "config")); err != nil {
		return err
	}
	modDir := filepath.Join(root, "lib", "modules", release)
	var a archive
	var load []string
	for _, m := range diagModules {
		b, err := readModule(modDir, m)
		if errors.Is(err, os.ErrNotExist) {
			continue // built in
		}
		if err != nil {
			return err
		}
		a.bytes("/lib/modules/"+release+"/"+m+".ko", 0o644, b)
		load = append(load, m)
	}
	a.bytes("/lib/modules/"+release+"/load", 0o644, []byte(strings.Join(load, "\n")+"\n"))
	if err := a.write(filepath.Join(keep, "modules.cpio")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(keep, "release"), []byte(release+"\n"), 0o644)
}

// readModule finds module name under modDir/kernel and returns it uncompressed.
func readModule(modDir, name string) ([]byte, error) {
	var found string
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		base := de.Name()
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
			if base == name+ext {
				found = p
				return filepath.SkipAll
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == "" {
		return nil, os.ErrNotExist
	}
	var decompress []string
	switch {
	case strings.HasSuffix(found, ".xz"):
		decompress = []string{"xz", "-dc", found}
	case strings.HasSuffix(found, ".zst"):
		decompress = []string{"zstd", "-dcq", found}
	case strings.HasSuffix(found, ".gz"):
		decompress = []string{"gzip", "-dc", found}
	default:
		return os.ReadFile(found)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(decompress[0], decompress[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v %s", strings.Join(decompress, " "), err, stderr.String())
	}
	return out, nil
}

func readUnpacked(dir string) (unpacked, error) {
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return unpacked{}, err
	}
	u := unpacked{
		Dir: dir, Release: strings.TrimSpace(string(rel)),
		Vmlinuz: filepath.Join(dir, "vmlinuz"), Modules: filepath.Join(dir, "modules.cpio"), Config: filepath.Join(dir, "config"),
	}
	for _, f := range []string{u.Vmlinuz, u.Modules, u.Config} {
		if _, err := os.Stat(f); err != nil {
			return unpacked{}, err
		}
	}
	return u, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
