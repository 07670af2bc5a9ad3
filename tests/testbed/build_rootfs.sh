#!/usr/bin/env bash
# Build (or reuse) a minimal Debian bookworm ARM root filesystem for the emulated-board tests.
#
# Usage: tests/testbed/build_rootfs.sh ARCH CACHE_DIR     (ARCH: armhf | arm64)
#
# Produces CACHE_DIR/rootfs-bookworm-ARCH.tar.zst (python3 + python3-numpy, about 65 MB) and
# CACHE_DIR/wheels-ARCH/ (runtime wheels for the board: ncnn and tflite-runtime on armhf, onnxruntime on arm64,
# downloaded on the host with `pip download --platform ... --only-binary=:all:`). Both are reused when present,
# so a second call costs nothing. Needs root, debootstrap, qemu-user-static, zstd and the Debian mirror.
#
# Emulation is set up without touching global state (tests/testbed/armns.sh): binfmt_misc is mounted inside a
# private user namespace (kernel >= 6.7 gives each one its own binfmt_misc) and the qemu handler registered there.
set -euo pipefail

ARCH=${1:?usage: build_rootfs.sh ARCH CACHE_DIR}
CACHE=${2:?usage: build_rootfs.sh ARCH CACHE_DIR}
SUITE=bookworm
# The Debian mirror this machine's apt already uses (deb822 sources or the classic sources.list), unless overridden.
apt_mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v -- '-security' | head -n1)
  [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v -- '-security' | head -n1)
  echo "$uri"
}
MIRROR=${EDGEDEPLOY_DEBIAN_MIRROR:-$(apt_mirror)}
[ -n "$MIRROR" ] || { echo "no Debian mirror found in /etc/apt; set EDGEDEPLOY_DEBIAN_MIRROR" >&2; exit 2; }

case "$ARCH" in
  armhf) QEMU=/usr/bin/qemu-arm-static; PLAT=(--platform manylinux_2_17_armv7l --platform manylinux2014_armv7l --platform linux_armv7l --platform manylinux_2_34_armv7l --platform manylinux_2_28_armv7l --platform manylinux_2_31_armv7l --platform manylinux_2_35_armv7l); WHEELS=(ncnn tflite-runtime==2.14.0) ;;
  arm64) QEMU=/usr/bin/qemu-aarch64-static; PLAT=(--platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_34_aarch64); WHEELS=(onnxruntime==1.31.1) ;;
  *) echo "unsupported ARCH '$ARCH' (armhf or arm64)" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { echo "build_rootfs.sh needs root (debootstrap, chroot)" >&2; exit 2; }
for t in debootstrap "$QEMU" zstd unshare; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }; done

mkdir -p "$CACHE"
TARBALL="$CACHE/rootfs-$SUITE-$ARCH.tar.zst"
WHEELDIR="$CACHE/wheels-$ARCH"

# 1. runtime wheels, downloaded on the host for the board's platform (Debian bookworm: CPython 3.11, numpy 1.24)
if [ ! -f "$WHEELDIR/.complete" ]; then
  rm -rf "$WHEELDIR"; mkdir -p "$WHEELDIR"
  for w in "${WHEELS[@]}"; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: "${PLAT[@]}" --python-version 3.11 \
      --implementation cp --abi cp311 -d "$WHEELDIR" "$w"
  done
  touch "$WHEELDIR/.complete"
fi

if [ -f "$TARBALL" ]; then
  echo "reusing $TARBALL"; exit 0
fi

WORK=$(mktemp -d "$CACHE/build-$ARCH.XXXXXX")
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
t0=$(date +%s)
debootstrap --foreign --variant=minbase --arch="$ARCH" "$SUITE" "$ROOT" "$MIRROR"
echo "first stage: $(( $(date +%s) - t0 )) s"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

# 2. second stage + packages, under qemu-user in private namespaces (see armns.sh)
HERE=$(cd "$(dirname "$0")" && pwd)
"$HERE/armns.sh" "$ARCH" env ROOT="$ROOT" bash -euo pipefail -c '
  chroot "$ROOT" env container=lxc /debootstrap/debootstrap --second-stage
  mount -t proc proc "$ROOT/proc"
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-numpy
  chroot "$ROOT" apt-get clean
  umount "$ROOT/proc" 2>/dev/null || true
'
echo "second stage + packages: $(( $(date +%s) - t0 )) s"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
tar -C "$ROOT" --numeric-owner -cf - . | zstd -q -T2 -10 -o "$TARBALL.tmp"
mv "$TARBALL.tmp" "$TARBALL"
echo "built $TARBALL ($(du -h "$TARBALL" | cut -f1)) in $(( $(date +%s) - t0 )) s"
