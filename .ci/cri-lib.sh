# shellcheck shell=bash
# What the standalone CRI containerds of the tests share, sourced by .ci/cri.sh (Debian's containerd
# 1.6) and .ci/cri2.sh (containerd 2.x, built from source): the CNI network, the offline images, and
# starting, checking and smoke-testing a daemon. Not meant to run by itself.
#
# The caller sets, before cri_init:
#   PROG                              the prefix of its messages (cri.sh)
#   ROOT STATE SOCK CONFIG PIDFILE LOG  the daemon's root and state directories, socket, config,
#                                     pid file and log
#   CONTAINERD                        the daemon's binary as it is started: containerd (on PATH) or
#                                     an absolute path
#   CTR                               the ctr that talks to it
#   DAEMON_PATH                       the daemon's PATH (default: this one): containerd runs the
#                                     first containerd-shim-runc-v2 on it
# and may set WANT_VERSION: a daemon that answers with another version is restarted.

# The CNI network both runtimes use: one conflist, one bridge, one IPAM store (host-local, which
# locks it), so that pods of the two runtimes share the bridge but never an address. The names are
# those .ci/cri.sh always had.
CRI_NET_NAME=sockscope-cri
CRI_NET_DIR=/etc/sockscope-cri/net.d
CRI_NET_IPAM=/var/lib/sockscope-cri/cni-ipam
SUBNET=198.51.100.0/24
BRIDGE=sscri0
# The offline images (internal/critest's Image and PauseImage).
IMAGE=docker.io/sockscope-test/busybox:latest
PAUSE=docker.io/sockscope-test/pause:latest

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
fail() {
	log "$*"
	if [ -f "$LOG" ]; then
		log "last lines of $LOG:"
		tail -n 40 "$LOG" >&2 || true
	fi
	exit 1
}

# cri_init checks for root and makes the scratch directory, removed on exit with whatever the
# caller adds to CRI_CLEANUP.
CRI_CLEANUP=()
cri_init() {
	if [ "$(id -u)" -ne 0 ]; then
		log "must run as root (apt-get, containerd, runc, CNI)"
		exit 1
	fi
	: "${DAEMON_PATH:=$PATH}"
	CRI_TMP=$(mktemp -d)
	trap 'rm -rf "$CRI_TMP" "${CRI_CLEANUP[@]}"' EXIT
	mkdir -p "$CRI_NET_DIR" "$ROOT" "$STATE" "$(dirname "$CONFIG")"
}

# cri_packages installs those of the Debian packages given that are missing.
cri_packages() {
	local p need=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || need+=("$p")
	done
	if [ "${#need[@]}" -gt 0 ]; then
		log "installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update
		apt-get install -y "${need[@]}"
	fi
}

# cri_config writes its standard input to $CONFIG when that differs, and then sets CONFIG_CHANGED:
# the daemon is restarted only for a changed config.
CONFIG_CHANGED=
cri_config() {
	cat >"$CRI_TMP/config.toml"
	if ! cmp -s "$CRI_TMP/config.toml" "$CONFIG"; then
		cp "$CRI_TMP/config.toml" "$CONFIG"
		CONFIG_CHANGED=1
	fi
}

# cri_network writes the shared CNI network: a bridge on the documentation range with no gateway,
# no masquerading and no host route, plus loopback, so pods get an interface but their traffic
# cannot leave the machine. The CRI plugin re-reads the CNI directory on its own; a changed
# conflist needs no restart.
cri_network() {
	cat >"$CRI_TMP/net.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CRI_NET_NAME",
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
        "dataDir": "$CRI_NET_IPAM"
      }
    },
    { "type": "loopback" }
  ]
}
EOF
	if ! cmp -s "$CRI_TMP/net.conflist" "$CRI_NET_DIR/10-$CRI_NET_NAME.conflist"; then
		cp "$CRI_TMP/net.conflist" "$CRI_NET_DIR/10-$CRI_NET_NAME.conflist"
	fi
}

ctr_() { timeout 10 "$CTR" --address "$SOCK" "$@"; }
answers() { [ -S "$SOCK" ] && ctr_ version >/dev/null 2>&1; }
# The server's version as ctr reports it (v2.4.2, 1.6.20~ds1).
server_version() { ctr_ version 2>/dev/null | awk '/Server:/{s=1} s&&/Version:/{print $2; exit}'; }

# ours prints the containerd processes started with $CONFIG (by this script now or in an earlier
# run, from whichever binary), found by their exact command line rather than by name: Docker's
# containerd, and the other runtime's, must be left alone.
ours() {
	local p args
	for p in /proc/[0-9]*; do
		mapfile -d '' -t args 2>/dev/null <"$p/cmdline" || continue
		if [ "${#args[@]}" -eq 3 ] && [ "${args[0]##*/}" = containerd ] &&
			[ "${args[1]}" = --config ] && [ "${args[2]}" = "$CONFIG" ]; then
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

# cri_daemon keeps a daemon that answers with the current config (and WANT_VERSION), restarts one
# that does not, starts one when none answers, and checks that its CRI plugin loaded. Pods and
# their shims survive a restart.
cri_daemon() {
	local v up
	if [ -n "$CONFIG_CHANGED" ] && answers; then
		log "config changed: restarting containerd (pods and their shims survive a restart)"
		stop_ours
	fi
	if [ -n "${WANT_VERSION:-}" ] && answers && [ "$(server_version)" != "$WANT_VERSION" ]; then
		log "containerd $(server_version) answers, want $WANT_VERSION: restarting it"
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
		# setsid + nohup: the daemon outlives this script and the shell that ran it. env execs
		# containerd, so the pid and the command line are containerd's own.
		(cd / && exec setsid nohup env PATH="$DAEMON_PATH" "$CONTAINERD" --config "$CONFIG" >"$LOG" 2>&1 </dev/null) &
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
	v=$(server_version) || true
	[ -n "$v" ] || fail "ctr --address $SOCK version failed"
	if [ -n "${WANT_VERSION:-}" ] && [ "$v" != "$WANT_VERSION" ]; then
		fail "containerd on $SOCK is $v, want $WANT_VERSION"
	fi
	log "containerd answers on $SOCK: server $v"
	# The CRI plugin loads after the socket listens; a config it rejects leaves containerd up
	# without it.
	local plugins
	plugins=$(ctr_ plugins ls 2>/dev/null) || fail "ctr --address $SOCK plugins ls failed"
	if ! grep -qE '^io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*[[:space:]]ok[[:space:]]*$' <<<"$plugins"; then
		fail "the CRI plugin did not load (ctr --address $SOCK plugins ls)"
	fi
}

have_image() {
	local refs
	# Read whole before grep: with pipefail, `grep -q` closing the pipe early fails ctr with SIGPIPE.
	refs=$(ctr_ -n k8s.io images ls -q 2>/dev/null) || return 1
	grep -qxF "$1" <<<"$refs"
}

# cri_images imports the offline images into the k8s.io namespace, where the CRI plugin looks for
# them, unless this daemon has them already. Both share one layer (busybox-static and its applet
# links) but are two images with their own IDs, as an app image and a pause image are in a
# cluster: CRI reports an image by its first tag, so one image under both tags would show app
# containers as running the pause image.
cri_images() {
	local dir=$CRI_TMP/images fs a diff_id manifest role cfg ref sum refs old
	mkdir -p "$dir"
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
	mkdir "$dir/archive"
	rtar -C "$fs" -cf "$dir/archive/layer.tar" .
	diff_id=sha256:$(sha256sum "$dir/archive/layer.tar" | cut -d' ' -f1)
	manifest=
	for role in app pause; do
		image_config "$role" "$diff_id" >"$dir/config.json"
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
		# Remove what an earlier run imported first, the CRI plugin's ID references (sha256:...)
		# included: a tag moved by the import onto a new image would leave the old image behind
		# under its ID, and the plugin adds an ID reference only for an image it sees created.
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
}

# Reproducible tars (sorted, numeric owners, fixed times), so that an unchanged image is recognised
# by the archive's digest and not imported again.
rtar() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 "$@"; }

# image_config ROLE DIFF_ID prints the image config. Both default commands sleep (about 68 years):
# a sandbox whose process exits takes its pod down, and an app container started without a
# command stays up.
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
  "rootfs": { "type": "layers", "diff_ids": ["$2"] },
  "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": ".ci/cri.sh: busybox-static" }]
}
EOF
}

# cri_smoke REGEX [VAR=VALUE...] runs the internal/critest tests matching REGEX against this
# daemon (SOCKSCOPE_TEST_CRI_ENDPOINT, plus the variables given), as a kubelet would talk to it.
cri_smoke() {
	local run=$1 out
	shift
	if ! command -v go >/dev/null 2>&1; then
		fail "the smoke test needs go on PATH (it drives CRI through internal/critest)"
	fi
	if ! out=$(env CI=true SOCKSCOPE_TEST_CRI_ENDPOINT="$SOCK" "$@" go test -count=1 -run "$run" ./internal/critest 2>&1); then
		printf '%s\n' "$out" >&2
		fail "CRI smoke test failed"
	fi
}
