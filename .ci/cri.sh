#!/usr/bin/env bash
# Brings up what the Kubernetes-runtime (CRI) tests need, offline and idempotently:
#   - Debian's containerd (1.6, CRI plugin built in), runc, containernetworking-plugins, busybox-static,
#   - a standalone containerd with CRI enabled, separate from Docker's own containerd (which runs with
#     CRI disabled): root /var/lib/sockscope-cri, state /run/sockscope-cri,
#     socket /run/sockscope-cri/containerd.sock, config /etc/sockscope-cri/config.toml,
#   - a CNI network of its own (/etc/sockscope-cri/net.d): a bridge on the documentation range
#     198.51.100.0/24 with no gateway, no masquerading and no host route, plus loopback, so pods get an
#     interface but their traffic cannot leave the machine,
#   - the images docker.io/sockscope-test/busybox:latest (for containers) and
#     docker.io/sockscope-test/pause:latest (the sandbox image), built offline from busybox-static as a
#     docker-archive tar and imported into the k8s.io namespace, because no registry can be reached.
# Ends with a smoke test through CRI (the Go helper in internal/critest, as a kubelet would talk).
# Safe to run again: a daemon that answers with the current config is kept; a stale socket or a
# leftover daemon from an earlier run is cleaned up first.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=sockscope-cri
ETC=/etc/$NAME
ROOT=/var/lib/$NAME
STATE=/run/$NAME
SOCK=$STATE/containerd.sock
CONFIG=$ETC/config.toml
CNI_DIR=$ETC/net.d
PIDFILE=$STATE/containerd.pid
LOG=/tmp/$NAME.log
IMAGE=docker.io/sockscope-test/busybox:latest
PAUSE=docker.io/sockscope-test/pause:latest
SUBNET=198.51.100.0/24
BRIDGE=sscri0

log() { printf 'cri.sh: %s\n' "$*" >&2; }
fail() {
	log "$*"
	if [ -f "$LOG" ]; then
		log "last lines of $LOG:"
		tail -n 40 "$LOG" >&2 || true
	fi
	exit 1
}

if [ "$(id -u)" -ne 0 ]; then
	log "must run as root (apt-get, containerd, runc, CNI)"
	exit 1
fi

# 1. Packages.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
need=()
for p in containerd runc containernetworking-plugins busybox-static; do
	installed "$p" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y "${need[@]}"
fi

# 2. Configuration. Written to a temporary file first: the daemon is restarted only when it changed.
mkdir -p "$ETC" "$CNI_DIR" "$ROOT" "$STATE"
new=$(mktemp)
trap 'rm -f "$new"' EXIT
# Why each non-default setting:
#   restrict_oom_score_adj: without CAP_SYS_RESOURCE (not in this machine's bounding set) runc cannot
#     lower oom_score_adj and fails with "can't get final child's PID from pipe".
#   SystemdCgroup = false: there is no systemd; cgroups are v1 and driven through cgroupfs.
#   runc Root under the state dir: Docker's runc state (/run/docker/runtime-runc) stays separate.
#   sandbox_image: a local image; registry.k8s.io cannot be reached.
#   disable_apparmor: the kernel has no AppArmor (no securityfs), yet apparmor_parser may be installed.
#   tcp/metrics/debug listeners stay off; the streaming server (attach/exec -it) stays on loopback.
cat >"$new" <<EOF
# Written by .ci/cri.sh: a containerd with CRI for sockscope's tests, separate from Docker's.
version = 2
root = "$ROOT"
state = "$STATE"
oom_score = 0

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$ROOT/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE"
    restrict_oom_score_adj = true
    disable_apparmor = true
    disable_tcp_service = true
    enable_selinux = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$CNI_DIR"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = "$STATE/runc"
          SystemdCgroup = false
EOF
changed=
if ! cmp -s "$new" "$CONFIG"; then
	cp "$new" "$CONFIG"
	changed=1
fi
cat >"$new" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$SUBNET" }]],
        "dataDir": "$ROOT/cni-ipam"
      }
    },
    { "type": "loopback" }
  ]
}
EOF
# The CRI plugin re-reads the CNI directory on its own; a changed conflist needs no restart.
if ! cmp -s "$new" "$CNI_DIR/10-$NAME.conflist"; then
	cp "$new" "$CNI_DIR/10-$NAME.conflist"
fi

# 3. The daemon.
ctr_() { timeout 10 ctr --address "$SOCK" "$@"; }
answers() { [ -S "$SOCK" ] && ctr_ version >/dev/null 2>&1; }

# The containerd processes started with this config (by this script now or in an earlier run), found
# by their exact command line rather than by name: Docker's containerd must be left alone.
ours() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		if [ "$cmd" = "containerd --config $CONFIG " ]; then
			echo "${p#/proc/}"
		fi
	done
}

stop_ours() {
	local pids
	pids=$(ours)
	[ -n "$pids" ] || return 0
	log "stopping the previous containerd (pid ${pids//$'\n'/ })"
	# shellcheck disable=SC2086 # one pid per word
	kill $pids 2>/dev/null || true
	for _ in $(seq 1 50); do
		[ -n "$(ours)" ] || return 0
		sleep 0.2
	done
	pids=$(ours)
	# shellcheck disable=SC2086
	[ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
	sleep 0.5
}

if [ -n "$changed" ] && answers; then
	log "config changed: restarting containerd (pods and their shims survive a restart)"
	stop_ours
fi
if ! answers; then
	# A socket that does not answer is a leftover of a daemon that died: remove it, or the new
	# daemon fails to listen. A daemon that hangs is stopped, too.
	stop_ours
	rm -f "$SOCK" "$SOCK.ttrpc" "$PIDFILE"
	log "starting containerd (config: $CONFIG, log: $LOG)"
	# Keep the previous daemon's log: it may say why that one died.
	[ ! -f "$LOG" ] || mv -f "$LOG" "$LOG.1"
	# setsid + nohup: the daemon outlives this script and the shell that ran it.
	setsid nohup containerd --config "$CONFIG" >"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	up=
	for _ in $(seq 1 60); do
		if answers; then
			up=1
			break
		fi
		if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
			fail "containerd exited at start"
		fi
		sleep 0.5
	done
	[ -n "$up" ] || fail "containerd did not answer on $SOCK within 30 s"
fi
v=$(ctr_ version 2>/dev/null) || fail "ctr --address $SOCK version failed"
log "containerd answers on $SOCK: server $(awk '/Server:/{s=1} s&&/Version:/{print $2; exit}' <<<"$v")"
# The CRI plugin loads after the socket listens; a config it rejects leaves containerd up without it.
plugins=$(ctr_ plugins ls 2>/dev/null) || fail "ctr --address $SOCK plugins ls failed"
if ! grep -qE '^io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*[[:space:]]ok[[:space:]]*$' <<<"$plugins"; then
	fail "the CRI plugin did not load (ctr --address $SOCK plugins ls)"
fi

# 4. The offline images, in the k8s.io namespace where the CRI plugin looks for them. Both share one
# layer (busybox-static and its applet links) but are two images with their own IDs, as an app image
# and a pause image are in a cluster: CRI reports an image by its first tag, so one image under both
# tags would show app containers as running the pause image.
have_image() {
	local refs
	# Read whole before grep: with pipefail, `grep -q` closing the pipe early fails ctr with SIGPIPE.
	refs=$(ctr_ -n k8s.io images ls -q 2>/dev/null) || return 1
	grep -qxF "$1" <<<"$refs"
}
dir=$(mktemp -d)
trap 'rm -f "$new"; rm -rf "$dir"' EXIT
umask 022
fs=$dir/rootfs
mkdir -p "$fs/bin" "$fs/tmp" "$fs/www" "$fs/etc" "$fs/proc" "$fs/sys" "$fs/dev" "$fs/root"
chmod 755 "$fs"
chmod 1777 "$fs/tmp"
cp /bin/busybox "$fs/bin/busybox"
for a in sh ash httpd wget nc sleep cat echo ls ps kill true false env id hostname ip ifconfig \
	netstat mkdir rm cp mv touch grep sed head tail wc date printf test seq timeout top pidof; do
	ln -s busybox "$fs/bin/$a"
done
# A page for `httpd -f -p 127.0.0.1:8080 -h /www` to serve.
echo ok >"$fs/www/index.html"
echo 'root:x:0:0:root:/root:/bin/sh' >"$fs/etc/passwd"
echo 'root:x:0:' >"$fs/etc/group"
# Reproducible tars (sorted, numeric owners, fixed times), so that an unchanged image is recognised
# by the archive's digest and not imported again.
rtar() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 "$@"; }
mkdir "$dir/archive"
rtar -C "$fs" -cf "$dir/archive/layer.tar" .
diff_id=sha256:$(sha256sum "$dir/archive/layer.tar" | cut -d' ' -f1)
# Both default commands sleep (about 68 years): a sandbox whose process exits takes its pod down,
# and an app container started without a command stays up.
image_config() {
	cat <<EOF
{
  "architecture": "amd64",
  "os": "linux",
  "created": "1970-01-01T00:00:00Z",
  "config": {
    "Env": ["PATH=/bin"],
    "Cmd": ["/bin/sleep", "2147483647"],
    "WorkingDir": "/",
    "Labels": { "org.sockscope.test.role": "$1" }
  },
  "rootfs": { "type": "layers", "diff_ids": ["$diff_id"] },
  "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": ".ci/cri.sh: busybox-static" }]
}
EOF
}
manifest=
for role in app pause; do
	image_config "$role" >"$dir/config.json"
	cfg=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
	mv "$dir/config.json" "$dir/archive/$cfg.json"
	ref=$IMAGE
	[ "$role" = app ] || ref=$PAUSE
	# A short name in RepoTags: the importer normalises it to docker.io/..., as a pull would.
	manifest+="${manifest:+,}{\"Config\":\"$cfg.json\",\"RepoTags\":[\"${ref#docker.io/}\"],\"Layers\":[\"layer.tar\"]}"
done
printf '[%s]\n' "$manifest" >"$dir/archive/manifest.json"
rtar -C "$dir/archive" -cf "$dir/image.tar" .
sum=$(sha256sum "$dir/image.tar" | cut -d' ' -f1)
if [ "$(cat "$ROOT/test-images.sha256" 2>/dev/null)" != "$sum" ] || ! have_image "$IMAGE" || ! have_image "$PAUSE"; then
	log "importing $IMAGE and $PAUSE (built from busybox-static)"
	# Remove what an earlier run imported first, the CRI plugin's ID references (sha256:...) included:
	# a tag moved by the import onto a new image would leave the old image behind under its ID, and
	# the plugin adds an ID reference only for an image it sees created.
	refs=$(ctr_ -n k8s.io images ls -q) || fail "ctr images ls failed"
	old=()
	for ref in $(grep -E '^sha256:' <<<"$refs" || true) "$IMAGE" "$PAUSE"; do
		grep -qxF "$ref" <<<"$refs" && old+=("$ref")
	done
	if [ "${#old[@]}" -gt 0 ]; then
		ctr_ -n k8s.io images rm "${old[@]}" >/dev/null || fail "ctr images rm ${old[*]} failed"
	fi
	ctr_ -n k8s.io images import "$dir/image.tar" >/dev/null || fail "ctr images import failed"
	for ref in "$IMAGE" "$PAUSE"; do
		have_image "$ref" || fail "$ref is not listed after the import"
	done
	echo "$sum" >"$ROOT/test-images.sha256"
fi
log "images: $IMAGE, $PAUSE"

# 5. Smoke test through CRI: a pod whose container serves httpd and answers wget inside the pod.
if ! command -v go >/dev/null 2>&1; then
	fail "the smoke test needs go on PATH (it drives CRI through internal/critest)"
fi
if ! out=$(CI=true SOCKSCOPE_TEST_CRI_ENDPOINT="$SOCK" go test -count=1 -run '^TestSmoke$' ./internal/critest 2>&1); then
	printf '%s\n' "$out" >&2
	fail "CRI smoke test failed"
fi
log "ready: CRI answers on unix://$SOCK (SOCKSCOPE_TEST_CRI_ENDPOINT), images $IMAGE and $PAUSE"
