#!/usr/bin/env bash
# Build (or reuse) a minimal Debian bookworm ARM root filesystem for the emulated-board tests.
#
# Usage: tests/testbed/build_rootfs.sh ARCH CACHE_DIR     (ARCH: armhf | arm64)
#
# Produces CACHE_DIR/rootfs-bookworm-ARCH.tar.zst (python3 + python3-numpy 1.24, about 45 MB) and
# CACHE_DIR/wheels-ARCH/ (runtime wheels for the board, downloaded on the host with
# `pip download --platform ... --only-binary=:all:`): ncnn and tflite-runtime 2.14 on armhf (PyPI has no armv7l
# wheel of onnxruntime, MNN or ai-edge-litert); onnxruntime 1.32, MNN 3.6.1, ai-edge-litert 2.3, tflite-runtime 2.14
# and ncnn on arm64. The tests install the wheels into their copy of the rootfs with `pip install --no-deps
# --target` (tests/testbed/board.py). Both are reused when present, so a second call costs nothing.
# Needs root, debootstrap, qemu-user-static, zstd and the Debian mirror.
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

# Wheels are looked up with every manylinux tag up to 2_36 (bookworm has glibc 2.36): `manylinux2014_armv7l` alone
# finds nothing for armv7l. Versions as in TOOLCHAIN_NOTES ("ARM boards"); all run with numpy 1.24 / CPython 3.11.
tags() { local a=$1 v; for v in 17 24 27 28 31 34 35 36; do printf -- '--platform manylinux_2_%s_%s ' "$v" "$a"; done
         printf -- '--platform manylinux2014_%s --platform linux_%s' "$a" "$a"; }
case "$ARCH" in
  armhf) QEMU=/usr/bin/qemu-arm-static; read -r -a PLAT <<< "$(tags armv7l)"
         WHEELS=(ncnn==1.0.20261020 tflite-runtime==2.14.0) ;;
  arm64) QEMU=/usr/bin/qemu-aarch64-static; read -r -a PLAT <<< "$(tags aarch64)"
         WHEELS=(onnxruntime==1.32.0 MNN==3.6.1 ai-edge-litert==2.3.0 tflite-runtime==2.14.0 ncnn==1.0.20261020) ;;
  *) echo "unsupported ARCH '$ARCH' (armhf or arm64)" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { echo "build_rootfs.sh needs root (debootstrap, chroot)" >&2; exit 2; }
for t in debootstrap "$QEMU" zstd unshare; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }; done

mkdir -p "$CACHE"
TARBALL="$CACHE/rootfs-$SUITE-$ARCH.tar.zst"
WHEELDIR="$CACHE/wheels-$ARCH"

# 1. runtime wheels, downloaded on the host for the board's platform (Debian bookworm: CPython 3.11, numpy 1.24)
# (.complete records the wheel list: a changed list downloads again)
if [ "$(cat "$WHEELDIR/.complete" 2>/dev/null)" != "${WHEELS[*]}" ]; then
  rm -rf "$WHEELDIR"; mkdir -p "$WHEELDIR"
  for w in "${WHEELS[@]}"; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: "${PLAT[@]}" --python-version 3.11 \
      --implementation cp --abi cp311 -d "$WHEELDIR" "$w"
  done
  echo "${WHEELS[*]}" > "$WHEELDIR/.complete"
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
