#!/usr/bin/env bash
# Brings up a second standalone containerd with CRI, 2.x, beside the 1.6 of .ci/cri.sh, offline
# (apart from the Go module proxy) and idempotently. containerd 2 streams CRI's container events
# (GetContainerEvents) to every subscriber, which sockscope follows there (containers/cri.go,
# eventsSafe) and 1.6 does not implement; the tests of that path need this runtime.
#   - containerd, containerd-shim-runc-v2 and ctr $V2 (below), built with `go install` from the Go
#     module proxy (Debian ships no containerd 2), into /var/cache/sockscope/containerd-$V2/bin:
#     built once per machine and version, then reused; Debian's runc, containernetworking-plugins
#     and busybox-static,
#   - root /var/lib/sockscope-cri2, state /run/sockscope-cri2,
#     socket /run/sockscope-cri2/containerd.sock, config /etc/sockscope-cri2/config.toml,
#     log /tmp/sockscope-cri2.log, separate from Docker's containerd and from .ci/cri.sh's,
#   - .ci/cri.sh's CNI network and offline images (.ci/cri-lib.sh), imported with its own ctr into
#     its own k8s.io namespace.
# Ends with the CRI smoke test and a check of the event stream (internal/critest). Safe to run
# again: the build is skipped when the cache has it, and a daemon that answers with the current
# config and version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PROG=cri2.sh
# The containerd release built. A new version builds into a new cache directory, and the daemon
# that answers with the old one is restarted.
V2=v2.4.2
CACHE=/var/cache/sockscope/containerd-$V2
BIN=$CACHE/bin
NAME=sockscope-cri2
ETC=/etc/$NAME
ROOT=/var/lib/$NAME
STATE=/run/$NAME
SOCK=$STATE/containerd.sock
CONFIG=$ETC/config.toml
PIDFILE=$STATE/containerd.pid
LOG=/tmp/$NAME.log
BUILD_LOG=/tmp/$NAME-build.log
CONTAINERD=$BIN/containerd
CTR=$BIN/ctr
# containerd runs the first containerd-shim-runc-v2 on its PATH: the 2.x shim must come before
# Debian's 1.6 one in /usr/bin.
DAEMON_PATH=$BIN:$PATH
WANT_VERSION=$V2
# ctr warns at every call that cgroup v1 is deprecated (the daemon logs it, too).
export CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1
# shellcheck source=.ci/cri-lib.sh
. .ci/cri-lib.sh
cri_init

# 1. Packages: what .ci/cri.sh installs, but Debian's containerd.
cri_packages runc containernetworking-plugins busybox-static util-linux

# 2. The binaries, from the cache or built. The build goes to a scratch directory beside the cache
# that is moved into place only when all three binaries built, so that an interrupted build leaves
# no cache behind; a lock keeps two runs on the machine from building at once.
built() {
	local b
	for b in containerd containerd-shim-runc-v2 ctr; do
		[ -x "$BIN/$b" ] || return 1
	done
	[ "$("$BIN/containerd" --version 2>/dev/null | awk '{print $3}')" = "$V2" ]
}
if ! command -v go >/dev/null 2>&1; then
	fail "building containerd $V2 needs go on PATH"
fi
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9
if built; then
	log "containerd $V2: cached in $BIN"
else
	log "building containerd $V2 with go install into $BIN (a few minutes, once per machine; log: $BUILD_LOG)"
	start=$SECONDS
	# What a killed build left.
	rm -rf "$CACHE".build.*
	work=$(mktemp -d "$CACHE.build.XXXXXX")
	CRI_CLEANUP+=("$work")
	# Outside any module (GOWORK=off, cwd the scratch dir) and with a build cache of its own, removed
	# afterwards: containerd's compiled packages would only sit in the user's cache, unused once the
	# binaries are cached. No cgo: static binaries, and no C toolchain needed. The version is stamped as a release's is (without it
	# containerd says 2.4.2+unknown); no build tags are needed for CRI.
	if ! (cd "$work" && env GOWORK=off GOFLAGS= CGO_ENABLED=0 GOBIN="$work/bin" GOCACHE="$work/gocache" \
		go install -trimpath -ldflags "-X github.com/containerd/containerd/v2/version.Version=$V2" \
		"github.com/containerd/containerd/v2/cmd/containerd@$V2" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$V2" \
		"github.com/containerd/containerd/v2/cmd/ctr@$V2") >"$BUILD_LOG" 2>&1; then
		LOG=$BUILD_LOG fail "go install of containerd $V2 failed"
	fi
	rm -rf "$BIN"
	mkdir -p "$CACHE"
	mv "$work/bin" "$BIN"
	rm -rf "$work"
	built || fail "$BIN/containerd --version does not say $V2"
	log "built containerd $V2 in $((SECONDS - start)) s"
fi
exec 9>&-

# 3. Configuration, version 4 (containerd 2.2+; an older version is migrated at every start, with
# a warning). Why each non-default setting:
#   server addresses: its own socket; tcp, debug and metrics listeners stay off.
#   opt and shim socket_dir: under its own root and state, not /opt/containerd and
#     /run/containerd/s (shared with every other containerd).
#   nri disabled: it would listen on the machine's one /var/run/nri/nri.sock.
#   pinned_images.sandbox (1.6: sandbox_image): a local image; registry.k8s.io cannot be reached.
#   restrict_oom_score_adj, disable_apparmor, SystemdCgroup = false, runc Root under the state dir:
#     as in .ci/cri.sh (no CAP_SYS_RESOURCE, no AppArmor, no systemd, runc state of its own).
#   cni: .ci/cri.sh's network (bin_dirs is a list since 2.0).
#   the streaming server (attach/exec -it) stays on loopback.
cri_config <<EOF
# Written by .ci/cri2.sh: a containerd $V2 with CRI for sockscope's tests, separate from Docker's
# and from .ci/cri.sh's.
version = 4
root = "$ROOT"
state = "$STATE"
oom_score = 0

[debug]
  level = "info"

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = "$SOCK"

  [plugins.'io.containerd.server.v1.ttrpc']
    address = "$SOCK.ttrpc"

  [plugins.'io.containerd.server.v1.grpc-tcp']
    address = ""

  [plugins.'io.containerd.server.v1.debug']
    address = ""

  [plugins.'io.containerd.server.v1.metrics']
    address = ""

  [plugins.'io.containerd.internal.v1.opt']
    path = "$ROOT/opt"

  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = "$STATE/s"

  [plugins.'io.containerd.nri.v1.nri']
    disable = true

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"

    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$PAUSE"

  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = "$CRI_NET_DIR"
      max_conf_num = 1

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = "$STATE/runc"
          SystemdCgroup = false

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
EOF
cri_network

# 4. The daemon.
cri_daemon

# 5. The offline images.
cri_images

# 6. Smoke test through CRI (a pod serving httpd, wget inside it), and the event stream that is the
# reason for this runtime.
cri_smoke '^(TestSmoke|TestContainerd2Events)$' SOCKSCOPE_TEST_CRI2_ENDPOINT="$SOCK"
log "ready: containerd $V2 with CRI answers on unix://$SOCK (SOCKSCOPE_TEST_CRI2_ENDPOINT), images $IMAGE and $PAUSE"
