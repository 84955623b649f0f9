#!/usr/bin/env bash
# Brings up what the podman tests need, offline and idempotently:
#   - Debian's podman (4.3), catatonit (podman builds its pod infra image, localhost/podman-pause,
#     from it offline), busybox-static, curl,
#   - a containers.conf drop-in (/etc/containers/containers.conf.d/50-sockscope.conf) for this
#     machine: ulimits the container may have, and no network by default,
#   - rootful podman's Docker-compatible API on unix:///run/podman/podman.sock
#     (`podman system service --time=0`, log /tmp/podman-service.log),
#   - the image localhost/sockscope-test/busybox:latest (short name sockscope-test/busybox), built
#     from busybox-static with `podman import` because no registry can be reached.
# Ends with a smoke test through the socket. Safe to run again: a service that answers with the
# current config is kept; a stale socket or a leftover service from an earlier run is cleaned up.
set -euo pipefail

SOCK=/run/podman/podman.sock
LOG=/tmp/podman-service.log
CONF=/etc/containers/containers.conf.d/50-sockscope.conf
IMAGE=localhost/sockscope-test/busybox:latest
SERVICE_CMD="podman system service --time=0 unix://$SOCK"

log() { printf 'podman.sh: %s\n' "$*" >&2; }
fail() {
	log "$*"
	if [ -f "$LOG" ]; then
		log "last lines of $LOG:"
		tail -n 40 "$LOG" >&2 || true
	fi
	exit 1
}

if [ "$(id -u)" -ne 0 ]; then
	log "must run as root (apt-get, rootful podman)"
	exit 1
fi

# 1. Packages.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
need=()
for p in podman catatonit busybox-static curl; do
	installed "$p" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y "${need[@]}"
fi

# 2. Configuration.
# default_ulimits: rootful podman asks for nofile and nproc of 1048576, and setting a hard limit above
#   one's own needs CAP_SYS_RESOURCE, which this machine withholds: every container then fails with
#   "error setting rlimits for ready process: error setting rlimit type 7 (nofile) / 6 (nproc):
#   operation not permitted". Use the limits podman itself runs with (nofile: this shell's hard
#   limit; nproc: podman lowers its own to 32768).
# netns = "none": containers and pods get only loopback unless a test asks for more, like dockerd
#   --bridge=none; netavark then never creates its bridge nor touches the firewall.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nofile" != unlimited ] || nofile=1048576
[ "$nproc" != unlimited ] && [ "$nproc" -le 32768 ] || nproc=32768
new=$(mktemp)
trap 'rm -f "$new"' EXIT
cat >"$new" <<EOF
# Written by .ci/podman.sh for sockscope's tests.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "none"
EOF
changed=
if ! cmp -s "$new" "$CONF"; then
	mkdir -p "$(dirname "$CONF")"
	cp "$new" "$CONF"
	changed=1
fi

# 3. The API service.
answers() { [ -S "$SOCK" ] && [ "$(curl -fsS --max-time 5 --unix-socket "$SOCK" http://d/_ping 2>/dev/null)" = OK ]; }

# Services started with this command line (by this script, now or in an earlier run), found by the
# exact command line rather than by name.
ours() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		if [ "$cmd" = "$SERVICE_CMD " ]; then
			echo "${p#/proc/}"
		fi
	done
}

stop_ours() {
	local pids
	pids=$(ours)
	[ -n "$pids" ] || return 0
	log "stopping the previous podman service (pid ${pids//$'\n'/ })"
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
	log "config changed: restarting the podman service (containers survive it)"
	stop_ours
fi
# A service started from a directory that was deleted since (an earlier run's clone) starts
# conmon there, which fails every container: restart it from /.
for pid in $(ours); do
	if [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == *" (deleted)" ]]; then
		log "the podman service (pid $pid) runs in a deleted directory: restarting it"
		stop_ours
		break
	fi
done
if ! answers; then
	stop_ours
	rm -f "$SOCK"
	mkdir -p "$(dirname "$SOCK")"
	log "starting $SERVICE_CMD (log: $LOG)"
	[ ! -f "$LOG" ] || mv -f "$LOG" "$LOG.1"
	# setsid + nohup: the service outlives this script and the shell that ran it.
	# shellcheck disable=SC2086 # the command line is words
	# From /: the service and the conmon processes it starts keep its working directory.
	(cd / && exec setsid nohup $SERVICE_CMD >"$LOG" 2>&1 </dev/null) &
	pid=$!
	up=
	for _ in $(seq 1 60); do
		if answers; then
			up=1
			break
		fi
		kill -0 "$pid" 2>/dev/null || fail "the podman service exited at start"
		sleep 0.5
	done
	[ -n "$up" ] || fail "the podman service did not answer on $SOCK within 30 s"
fi
version=$(curl -fsS --max-time 5 --unix-socket "$SOCK" http://d/version) || fail "GET /version on $SOCK failed"
log "podman answers on $SOCK: $(sed -E 's/.*"Version":"([^"]*)".*"ApiVersion":"([^"]*)".*/podman \1 (Docker API \2)/' <<<"$version")"

# 4. The offline test image. The rootfs tar is reproducible; its digest, kept as a label, tells
# whether the image is current.
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
tar -C "$fs" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$dir/rootfs.tar" .
sum=$(sha256sum "$dir/rootfs.tar" | cut -d' ' -f1)
have=$(podman image inspect -f '{{index .Labels "org.sockscope.test.rootfs"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" != "$sum" ]; then
	log "importing $IMAGE from busybox-static"
	# The default command sleeps (about 68 years): a container started without a command stays up.
	podman import --quiet \
		--change 'ENV PATH=/bin' \
		--change 'CMD ["/bin/sleep", "2147483647"]' \
		--change "LABEL org.sockscope.test.rootfs=$sum" \
		"$dir/rootfs.tar" "$IMAGE" >/dev/null || fail "podman import failed"
fi
log "image: $IMAGE"

# 5. Smoke test through the socket: podman's remote client (libpod API) runs httpd, wget answers
# inside the container, the Docker-compatible API lists it, and a pod (its infra container comes
# from the locally built pause image) starts.
remote() { podman --remote --url "unix://$SOCK" "$@"; }
name=sockscope-ci-smoke-$$
pod=sockscope-ci-smoke-pod-$$
cleanup_smoke() {
	remote rm -f -t 0 "$name" >/dev/null 2>&1 || true
	remote pod rm -f -t 0 "$pod" >/dev/null 2>&1 || true
}
trap 'cleanup_smoke; rm -f "$new"; rm -rf "$dir"' EXIT
out=$(remote run --rm "$IMAGE" sh -c 'echo ok') || fail "podman --remote run $IMAGE failed"
[ "$out" = ok ] || fail "podman --remote run $IMAGE printed ${out@Q}, want ok"
remote run -d --name "$name" "$IMAGE" httpd -f -p 127.0.0.1:8080 -h /www >/dev/null || fail "podman --remote run -d httpd failed"
ok=
for _ in $(seq 1 20); do
	if [ "$(remote exec "$name" wget -q -O- http://127.0.0.1:8080/ 2>/dev/null)" = ok ]; then
		ok=1
		break
	fi
	sleep 0.25
done
[ -n "$ok" ] || fail "httpd in $IMAGE did not answer wget on 127.0.0.1:8080"
list=$(curl -fsS --max-time 5 --unix-socket "$SOCK" "http://d/v1.41/containers/json") || fail "GET /v1.41/containers/json failed"
grep -qF "\"/$name\"" <<<"$list" || fail "the Docker-compatible API does not list $name"
remote pod create --name "$pod" >/dev/null || fail "podman pod create failed (is catatonit installed?)"
remote run -d --pod "$pod" "$IMAGE" >/dev/null || fail "podman run --pod failed"
cleanup_smoke
log "ready: Docker-compatible API on unix://$SOCK (DOCKER_HOST=unix://$SOCK), image $IMAGE"
