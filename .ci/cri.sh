#!/usr/bin/env bash
# Brings up what the Kubernetes-runtime (CRI) tests need, offline and idempotently:
#   - Debian's containerd (1.6, CRI plugin built in), runc, containernetworking-plugins, busybox-static,
#   - a standalone containerd with CRI enabled, separate from Docker's own containerd (which runs with
#     CRI disabled): root /var/lib/sockscope-cri, state /run/sockscope-cri,
#     socket /run/sockscope-cri/containerd.sock, config /etc/sockscope-cri/config.toml,
#   - a CNI network of its own (/etc/sockscope-cri/net.d, shared with .ci/cri2.sh's containerd 2): a
#     bridge on the documentation range 198.51.100.0/24 with no gateway, no masquerading and no host
#     route, plus loopback, so pods get an interface but their traffic cannot leave the machine,
#   - the images docker.io/sockscope-test/busybox:latest (for containers) and
#     docker.io/sockscope-test/pause:latest (the sandbox image), built offline from busybox-static as a
#     docker-archive tar and imported into the k8s.io namespace, because no registry can be reached.
# Ends with a smoke test through CRI (the Go helper in internal/critest, as a kubelet would talk).
# The network, the images and the daemon's handling are shared with .ci/cri2.sh (containerd 2.x)
# through .ci/cri-lib.sh.
# Safe to run again: a daemon that answers with the current config is kept; a stale socket or a
# leftover daemon from an earlier run is cleaned up first.
set -euo pipefail
cd "$(dirname "$0")/.."

PROG=cri.sh
NAME=sockscope-cri
ETC=/etc/$NAME
ROOT=/var/lib/$NAME
STATE=/run/$NAME
SOCK=$STATE/containerd.sock
CONFIG=$ETC/config.toml
PIDFILE=$STATE/containerd.pid
LOG=/tmp/$NAME.log
# Debian's containerd and its ctr; its shim (/usr/bin/containerd-shim-runc-v2) is found on PATH.
CONTAINERD=containerd
CTR=ctr
# shellcheck source=.ci/cri-lib.sh
. .ci/cri-lib.sh
cri_init

# 1. Packages.
cri_packages containerd runc containernetworking-plugins busybox-static

# 2. Configuration: the daemon is restarted only when it changed.
# Why each non-default setting:
#   restrict_oom_score_adj: without CAP_SYS_RESOURCE (not in this machine's bounding set) runc cannot
#     lower oom_score_adj and fails with "can't get final child's PID from pipe".
#   SystemdCgroup = false: there is no systemd; cgroups are v1 and driven through cgroupfs.
#   runc Root under the state dir: Docker's runc state (/run/docker/runtime-runc) stays separate.
#   sandbox_image: a local image; registry.k8s.io cannot be reached.
#   disable_apparmor: the kernel has no AppArmor (no securityfs), yet apparmor_parser may be installed.
#   tcp/metrics/debug listeners stay off; the streaming server (attach/exec -it) stays on loopback.
cri_config <<EOF
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
      conf_dir = "$CRI_NET_DIR"
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
cri_network

# 3. The daemon.
cri_daemon

# 4. The offline images.
cri_images

# 5. Smoke test through CRI: a pod whose container serves httpd and answers wget inside the pod.
cri_smoke '^TestSmoke$'
log "ready: CRI answers on unix://$SOCK (SOCKSCOPE_TEST_CRI_ENDPOINT), images $IMAGE and $PAUSE"
