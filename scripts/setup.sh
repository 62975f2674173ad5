#!/bin/bash
# Installs everything a fresh Debian 12 machine needs to build vmm, run its tests,
# run the KVM sandbox and build the default guest. Idempotent: safe to run again.
set -euo pipefail

PKGS=(
	build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
	linux-libc-dev liburing-dev libcap-ng-dev libcmocka-dev libcpuid-dev
	libjson-c-dev libseccomp-dev libsystemd-dev
	qemu-system-x86 linux-image-amd64 busybox-static cpio kmod iproute2 iputils-ping
	util-linux procps e2fsprogs bc python3 systemd
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all packages present"
