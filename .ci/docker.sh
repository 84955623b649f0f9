#!/usr/bin/env bash
# Brings up what the container tests need, offline and idempotently:
#   - Debian's docker.io and busybox-static,
#   - a Docker daemon on /var/run/docker.sock (started with --bridge=none --iptables=false when none
#     answers, so containers get only loopback and the host's firewall is left alone),
#   - the image sockscope-test/busybox, built from busybox-static with `docker import` because no
#     registry can be reached.
# Safe to run again: each step is skipped when its result is already there.
set -euo pipefail

IMAGE=sockscope-test/busybox
LOG=/tmp/dockerd.log

log() { printf 'docker.sh: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
	log "must run as root (apt-get, dockerd)"
	exit 1
fi

# 1. Packages.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
need=()
for p in docker.io busybox-static; do
	installed "$p" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y "${need[@]}"
fi

# 2. The daemon. Talk to the standard socket even when the caller's environment points elsewhere.
export DOCKER_HOST=unix:///var/run/docker.sock
if ! docker version >/dev/null 2>&1; then
	log "starting dockerd (log: $LOG)"
	# setsid + nohup: the daemon outlives this script and the shell that ran it.
	(cd / && exec setsid nohup dockerd --bridge=none --iptables=false >"$LOG" 2>&1 </dev/null) &
	up=
	for _ in $(seq 1 60); do
		if docker version >/dev/null 2>&1; then
			up=1
			break
		fi
		sleep 0.5
	done
	if [ -z "$up" ]; then
		log "dockerd did not answer within 30 s; last lines of $LOG:"
		tail -n 40 "$LOG" >&2 || true
		exit 1
	fi
fi
log "daemon answers: server $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

# 3. The offline test image.
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
	log "building $IMAGE from busybox-static"
	dir=$(mktemp -d)
	trap 'rm -rf "$dir"' EXIT
	mkdir -p "$dir/bin" "$dir/tmp" "$dir/www" "$dir/etc" "$dir/proc" "$dir/sys" "$dir/dev"
	chmod 1777 "$dir/tmp"
	cp /bin/busybox "$dir/bin/busybox"
	for a in sh ash httpd wget nc sleep cat echo ls ps kill true false env id hostname ip ifconfig \
		netstat mkdir rm cp mv touch grep sed head tail wc date printf test seq timeout top pidof; do
		ln -s busybox "$dir/bin/$a"
	done
	# A page for `httpd -f -p 8080 -h /www` to serve.
	echo ok >"$dir/www/index.html"
	echo 'root:x:0:0:root:/:/bin/sh' >"$dir/etc/passwd"
	echo 'root:x:0:' >"$dir/etc/group"
	tar -C "$dir" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
fi

# 4. Smoke test: a shell runs, and httpd answers wget from inside its container.
out=$(docker run --rm "$IMAGE" sh -c 'echo ok')
if [ "$out" != ok ]; then
	log "docker run $IMAGE printed ${out@Q}, want ok"
	exit 1
fi
name=sockscope-ci-smoke-$$
docker rm -f "$name" >/dev/null 2>&1 || true
docker run -d --name "$name" "$IMAGE" httpd -f -p 8080 -h /www >/dev/null
ok=
for _ in $(seq 1 20); do
	if [ "$(docker exec "$name" wget -q -O- http://127.0.0.1:8080/ 2>/dev/null)" = ok ]; then
		ok=1
		break
	fi
	sleep 0.25
done
docker rm -f "$name" >/dev/null
if [ -z "$ok" ]; then
	log "httpd in $IMAGE did not answer wget on 127.0.0.1:8080"
	exit 1
fi
log "ready: $IMAGE runs, httpd answers wget"
