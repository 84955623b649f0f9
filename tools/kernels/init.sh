#!/bin/sh
# PID 1 of a kernel-matrix guest (tools/kernels). The console (ttyS0) gets the kernel's messages
# and these progress lines; the second serial port (ttyS1) gets what the host parses: the kernel,
# `sockscope version`, the tests' -v output and their exit status. Then the guest powers off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
echo "sockscope-kernels: init"

out=/dev/ttyS1
say() { echo "sockscope-kernels: $*" >"$out"; }

kver=$(uname -r)
say "kernel $kver"
mods=/lib/modules/$kver
if [ -f "$mods/load" ]; then
	for m in $(cat "$mods/load"); do
		insmod "$mods/$m.ko" || say "insmod $m failed"
	done
fi
ip link set lo up

say version
/opt/sockscope/sockscope version >"$out" 2>&1
say "tests $(cat /opt/sockscope/run)"
cd /opt/sockscope
SOCKSCOPE_TEST_BIN_DIR=/opt/sockscope CI=true ./sockscope.test -test.v -test.count=1 \
	-test.timeout "$(cat timeout)" -test.run "$(cat run)" >"$out" 2>&1
say "exit $?"
sync
poweroff -f
