#!/bin/sh
# Debian packages Hoist needs beyond Python: PostgreSQL server binaries (tests and the demo
# start a private server), headers and libxml2 to build ovirt-engine-sdk-python's C
# extension, venv support, and qemu-utils (qemu-img, qemu-nbd) for the oVirt simulator's disk
# images and the imageio client, and for the OpenStack populator's qcow2 conversion. The real
# guests (tools/guestimage.py) and their boot check (tools/bootcheck.py) need debootstrap,
# fdisk (sfdisk), dosfstools and mtools (the EFI partition), qemu-system-x86 and ovmf.
# ConvertGuest's conversion pods run virt-v2v-in-place (virt-v2v, with nbdkit and
# libguestfs-tools) as the simulated kubelet runs them on this machine; libguestfs boots its
# appliance with a kernel from /boot, which supermin only recommends: the cloud kernel. The
# web console's browser tests (tests/console) drive Debian's chromium through Playwright.
# The Hoist image (make image, tools/containerimage.py) is built with buildah, on a base
# debootstrap makes where no registry is reachable.
# Installs only what is missing; needs root (or sudo) for that.
set -eu

packages="postgresql libxml2-dev gcc python3-dev python3-venv qemu-utils qemu-system-x86 ovmf debootstrap fdisk dosfstools mtools e2fsprogs virt-v2v nbdkit libguestfs-tools linux-image-cloud-amd64 chromium buildah"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# A Python from elsewhere (pyenv) brings its own headers and venv: no Debian package needed.
if python3 -c 'import sys; sys.exit(0 if sys.prefix.startswith("/usr") else 1)' 2>/dev/null; then :; else
    missing=$(echo "$missing" | sed 's/python3-dev//; s/python3-venv//')
fi
missing=$(echo "$missing" | xargs)
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: not a Debian-like system; install the equivalents of: $missing" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system-deps: installing $missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
