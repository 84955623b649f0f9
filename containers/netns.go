package containers

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// nsGetNstype is ioctl NS_GET_NSTYPE, _IO(0xb7, 0x3) in linux/nsfs.h (Linux 4.11+).
const nsGetNstype = 0xb703

// NetnsInode returns the inode of /proc/PID/ns/net: the identity of the process's network
// namespace, the same number the kernel exposes as net->ns.inum to BPF programs.
func NetnsInode(pid int) (uint32, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("invalid PID %d", pid)
	}
	return NetnsInodeOfPath("/proc/" + strconv.Itoa(pid) + "/ns/net")
}

// NetnsInodeOfPath returns the inode of a network namespace file such as /proc/PID/ns/net or
// /run/netns/NAME. It fails clearly when the path is not a namespace file (for instance a
// /run/netns entry whose bind mount is gone) or is a namespace of another kind.
func NetnsInodeOfPath(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("network namespace: %w", err)
	}
	defer f.Close()

	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if uint64(sfs.Type) != unix.NSFS_MAGIC {
		return 0, fmt.Errorf("%s is not a namespace file (filesystem magic %#x, want nsfs %#x); give /proc/PID/ns/net or a bind-mounted /run/netns/NAME", path, uint64(sfs.Type), unix.NSFS_MAGIC)
	}
	// Namespace files of other kinds (mnt, pid, ...) are nsfs too.
	kind, err := unix.IoctlRetInt(int(f.Fd()), nsGetNstype)
	if err == nil && kind != unix.CLONE_NEWNET {
		return 0, fmt.Errorf("%s is a namespace file but not of a network namespace (type %#x)", path, kind)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Ino == 0 || st.Ino > math.MaxUint32 {
		return 0, fmt.Errorf("%s: unexpected namespace inode %d", path, st.Ino)
	}
	return uint32(st.Ino), nil
}

// HostNetns returns the inode of the host's network namespace: /proc/1/ns/net when readable,
// otherwise the namespace sockscope itself runs in (/proc/self/ns/net). It never fails because
// /proc/1 is unreadable (some sandboxes deny it even to root).
func HostNetns() (uint32, error) {
	_, ino, err := HostNetnsPath()
	return ino, err
}

// HostNetnsPath is HostNetns with the namespace file it chose, for entering the namespace.
func HostNetnsPath() (path string, inode uint32, err error) {
	if ns, err := NetnsInode(1); err == nil {
		return "/proc/1/ns/net", ns, nil
	}
	ns, err := NetnsInodeOfPath("/proc/self/ns/net")
	if err != nil {
		return "", 0, errors.Join(errors.New("cannot tell the host's network namespace"), err)
	}
	return "/proc/self/ns/net", ns, nil
}
