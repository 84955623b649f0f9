// Command gensyscalls writes events/syscallnames_gen.go: the syscall number -> name tables for
// amd64 and arm64, taken from the Linux UAPI headers installed on this machine (linux-libc-dev).
//
//	go run ./tools/gen/syscalls -out events/syscallnames_gen.go
//
// (events/syscallnames.go runs it through go generate.)
//
//   - amd64: asm/unistd_64.h of x86_64 (/usr/include/x86_64-linux-gnu/asm/unistd_64.h on Debian),
//     read as text: one "#define __NR_name number" line per call.
//   - arm64: arm64 has no table of its own; its asm/unistd.h sets a few __ARCH_WANT_* switches
//     and includes asm-generic/unistd.h. That header is run through the C preprocessor (-dM)
//     with the same switches and __BITS_PER_LONG=64, and the __NR_* macros are resolved to
//     numbers (several are aliases, e.g. __NR_lseek -> __NR3264_lseek -> 62).
//
// It needs no network; the output depends only on the headers, so running it twice gives the
// same bytes. The Linux version of the headers (linux/version.h) is written into the output.
//
// Exit status: 0 on success, 3 when an input is missing (headers or the C preprocessor; the
// events tests skip on that), 1 on any other error.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// arm64Wants are the switches arch/arm64/include/uapi/asm/unistd.h defines before including
// asm-generic/unistd.h. With __BITS_PER_LONG=64 the TIME32 switch changes nothing (the 64-bit
// time calls keep the old names and numbers; the *_time64 calls 403-423 are 32-bit only).
var arm64Wants = []string{
	"__ARCH_WANT_RENAMEAT",
	"__ARCH_WANT_NEW_STAT",
	"__ARCH_WANT_SET_GET_RLIMIT",
	"__ARCH_WANT_TIME32_SYSCALLS",
	"__ARCH_WANT_SYS_CLONE3",
	"__ARCH_WANT_MEMFD_SECRET",
}

// notCalls are __NR_ macros that are not system calls.
var notCalls = map[string]bool{
	"syscalls":              true, // the table size
	"arch_specific_syscall": true, // the start of a range reserved for arch-specific calls
}

// spotChecks guard against reading the wrong header (or a preprocessor that resolved the
// wrong branch): well-known numbers that have never changed.
var spotChecks = map[string]map[string]uint32{
	"amd64": {"read": 0, "write": 1, "open": 2, "close": 3, "fsync": 74, "openat": 257, "exit_group": 231},
	"arm64": {"io_setup": 0, "unlinkat": 35, "openat": 56, "close": 57, "lseek": 62, "read": 63, "write": 64,
		"newfstatat": 79, "fstat": 80, "exit_group": 94, "getrlimit": 163, "socket": 198, "mmap": 222},
}

// errMissing marks a missing input (exit status 3).
var errMissing = errors.New("missing input")

func main() {
	out := flag.String("out", "", "write the Go source to this file (default: stdout)")
	include := flag.String("headers", "/usr/include", "directory of the installed UAPI headers (asm-generic/, linux/)")
	amd64Header := flag.String("amd64-header", "", "x86_64 asm/unistd_64.h (default: the first that exists of HEADERS/x86_64-linux-gnu/asm/unistd_64.h, /usr/x86_64-linux-gnu/include/asm/unistd_64.h, HEADERS/asm/unistd_64.h)")
	cc := flag.String("cc", "", "C compiler used as preprocessor (default: $CC, else gcc, else cc)")
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected argument %q", flag.Arg(0)))
	}
	src, err := generate(*include, *amd64Header, *cc)
	if err != nil {
		fail(err)
	}
	if *out == "" {
		if _, err := os.Stdout.Write(src); err != nil {
			fail(err)
		}
		return
	}
	if err := writeFile(*out, src); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "gensyscalls: %v\n", err)
	if errors.Is(err, errMissing) {
		os.Exit(3)
	}
	os.Exit(1)
}

// writeFile replaces path atomically, so an interrupted run never leaves a truncated Go file.
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".gensyscalls-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

type table struct {
	arch   string // GOARCH
	path   string // header it was read from (for error messages)
	source string // the same, independent of where this host installs it (for the output)
	calls  map[string]uint32
}

func generate(include, amd64Header, cc string) ([]byte, error) {
	version, err := headersVersion(filepath.Join(include, "linux", "version.h"))
	if err != nil {
		return nil, err
	}
	if amd64Header == "" {
		amd64Header, err = firstExisting(
			filepath.Join(include, "x86_64-linux-gnu", "asm", "unistd_64.h"),
			"/usr/x86_64-linux-gnu/include/asm/unistd_64.h",
			filepath.Join(include, "asm", "unistd_64.h"))
		if err != nil {
			return nil, err
		}
	}
	amd64, err := readAMD64(amd64Header)
	if err != nil {
		return nil, err
	}
	genericHeader := filepath.Join(include, "asm-generic", "unistd.h")
	arm64, err := readGeneric(genericHeader, cc)
	if err != nil {
		return nil, err
	}
	tables := []table{
		{"amd64", amd64Header, "x86_64 asm/unistd_64.h", amd64},
		{"arm64", genericHeader, "asm-generic/unistd.h with the switches of arm64's asm/unistd.h", arm64},
	}
	for _, t := range tables {
		if err := check(t); err != nil {
			return nil, err
		}
	}
	return render(version, tables)
}

func firstExisting(paths ...string) (string, error) {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no x86_64 asm/unistd_64.h (tried %s); install linux-libc-dev (or linux-libc-dev-amd64-cross) or pass -amd64-header",
		errMissing, strings.Join(paths, ", "))
}

func open(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v (install linux-libc-dev)", errMissing, err)
	}
	return f, err
}

// headersVersion returns "MAJOR.MINOR.SUB" from linux/version.h's LINUX_VERSION_CODE.
func headersVersion(path string) (string, error) {
	f, err := open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	defs, err := parseDefines(f)
	if err != nil {
		return "", fmt.Errorf("%s: %v", path, err)
	}
	code, err := strconv.ParseUint(defs["LINUX_VERSION_CODE"], 0, 32)
	if err != nil {
		return "", fmt.Errorf("%s: LINUX_VERSION_CODE: %v", path, err)
	}
	v := fmt.Sprintf("%d.%d.%d", code>>16, code>>8&0xff, code&0xff)
	// version.h clamps the sublevel to 255 in the code; newer headers also give it on its own.
	if sub, ok := defs["LINUX_VERSION_SUBLEVEL"]; ok {
		if n, err := strconv.ParseUint(sub, 10, 32); err == nil {
			v = fmt.Sprintf("%d.%d.%d", code>>16, code>>8&0xff, n)
		}
	}
	return v, nil
}

var (
	defineRE = regexp.MustCompile(`^\s*#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)\s+(.*?)\s*$`)
	identRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// parseDefines returns the object-like macros of a header or of `cc -E -dM` output (function-
// like macros are skipped: their name is followed directly by '(' and so never matches).
func parseDefines(r io.Reader) (map[string]string, error) {
	defs := make(map[string]string)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m := defineRE.FindStringSubmatch(sc.Text()); m != nil {
			defs[m[1]] = m[2]
		}
	}
	return defs, sc.Err()
}

func readAMD64(path string) (map[string]uint32, error) {
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defs, err := parseDefines(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	calls, err := collect(defs)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return calls, nil
}

func readGeneric(header, cc string) (map[string]uint32, error) {
	if _, err := os.Stat(header); err != nil {
		return nil, fmt.Errorf("%w: %v (install linux-libc-dev)", errMissing, err)
	}
	cc, err := findCC(cc)
	if err != nil {
		return nil, err
	}
	// asm-generic/unistd.h includes <asm/bitsperlong.h>, which belongs to the machine running
	// this. A stub in its place (and no system include directories) makes the result the same
	// on any host.
	stub, err := os.MkdirTemp("", "gensyscalls-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stub)
	if err := os.Mkdir(filepath.Join(stub, "asm"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stub, "asm", "bitsperlong.h"), []byte("#define __BITS_PER_LONG 64\n"), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-E", "-dM", "-undef", "-nostdinc", "-I", stub}
	for _, w := range arm64Wants {
		args = append(args, "-D"+w)
	}
	args = append(args, "-include", header, "-x", "c", os.DevNull)
	cmd := exec.Command(cc, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	outb, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", cc, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	defs, err := parseDefines(bytes.NewReader(outb))
	if err != nil {
		return nil, err
	}
	calls, err := collect(defs)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", header, err)
	}
	return calls, nil
}

func findCC(cc string) (string, error) {
	cands := []string{cc}
	if cc == "" {
		cands = []string{os.Getenv("CC"), "gcc", "cc", "clang"}
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		// $CC may carry flags ("gcc -m64"); the preprocessor only needs the program.
		if p, err := exec.LookPath(strings.Fields(c)[0]); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no C preprocessor (tried %q); install gcc or pass -cc", errMissing, cands)
}

// collect resolves every __NR_name macro to a number. Values are decimal literals or the name
// of another macro (the generic header's __NR_lseek -> __NR3264_lseek); anything else is an
// error rather than a silently missing call.
func collect(defs map[string]string) (map[string]uint32, error) {
	calls := make(map[string]uint32)
	for macro := range defs {
		name, ok := strings.CutPrefix(macro, "__NR_")
		if !ok || notCalls[name] {
			continue
		}
		nr, err := resolve(defs, macro)
		if err != nil {
			return nil, err
		}
		calls[name] = nr
	}
	if len(calls) == 0 {
		return nil, errors.New("no __NR_ macros found")
	}
	return calls, nil
}

func resolve(defs map[string]string, macro string) (uint32, error) {
	v := macro
	for range 8 {
		val, ok := defs[v]
		if !ok {
			return 0, fmt.Errorf("%s: %s is not defined", macro, v)
		}
		val = strings.TrimSpace(val)
		for len(val) > 1 && val[0] == '(' && val[len(val)-1] == ')' {
			val = strings.TrimSpace(val[1 : len(val)-1])
		}
		if n, err := strconv.ParseUint(val, 0, 32); err == nil {
			return uint32(n), nil
		}
		if !identRE.MatchString(val) {
			return 0, fmt.Errorf("%s: cannot resolve %q to a number", macro, val)
		}
		v = val
	}
	return 0, fmt.Errorf("%s: alias chain too long", macro)
}

func check(t table) error {
	for name, want := range spotChecks[t.arch] {
		if got, ok := t.calls[name]; !ok || got != want {
			return fmt.Errorf("%s table from %s: %s = %d (present %v), want %d: wrong header?", t.arch, t.path, name, got, ok, want)
		}
	}
	byNr := make(map[uint32]string)
	for name, nr := range t.calls {
		if other, dup := byNr[nr]; dup {
			a, b := min(name, other), max(name, other)
			return fmt.Errorf("%s table from %s: %s and %s share number %d", t.arch, t.path, a, b, nr)
		}
		byNr[nr] = name
		if nr > 4095 {
			return fmt.Errorf("%s table from %s: %s = %d is implausibly large", t.arch, t.path, name, nr)
		}
	}
	return nil
}

func render(version string, tables []table) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by tools/gen/syscalls; DO NOT EDIT.\n\n")
	b.WriteString("package events\n\n")
	fmt.Fprintf(&b, "// syscallHeadersVersion is the Linux version of the UAPI headers the tables come from.\n")
	fmt.Fprintf(&b, "const syscallHeadersVersion = %q\n", version)
	for _, t := range tables {
		type entry struct {
			nr   uint32
			name string
		}
		var entries []entry
		for name, nr := range t.calls {
			entries = append(entries, entry{nr, name})
		}
		slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.nr, b.nr) })
		fmt.Fprintf(&b, "\n// syscallNames%s is indexed by %s syscall number (%d calls; \"\" = unassigned).\n",
			strings.ToUpper(t.arch), t.arch, len(entries))
		fmt.Fprintf(&b, "// Source: %s.\n", t.source)
		fmt.Fprintf(&b, "var syscallNames%s = [...]string{\n", strings.ToUpper(t.arch))
		for _, e := range entries {
			fmt.Fprintf(&b, "\t%d: %q,\n", e.nr, e.name)
		}
		b.WriteString("}\n")
	}
	return format.Source(b.Bytes())
}
