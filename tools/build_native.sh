#!/usr/bin/env bash
# Cross-build MNN's benchmark.out and edgedeploy's own static MNN runner for ARM boards, from YOUR MNN checkout.
#
# Usage: tools/build_native.sh [--dry-run] MNN_SRC OUT_DIR [TARGET ...]
#   MNN_SRC  a checkout of https://github.com/alibaba/MNN (e.g. `git clone --branch 3.6.1 …`); nothing of MNN is
#            shipped with edgedeploy, and this script downloads nothing
#   OUT_DIR  gets OUT_DIR/TARGET/{benchmark.out, edgedeploy-mnn-runner, BUILD_INFO}
#   TARGET   armhf   (armv7l Linux, glibc, hard-float: crossbuild-essential-armhf; the RK3288 under Linux)
#            arm64   (aarch64 Linux: crossbuild-essential-arm64; Raspberry Pi 4/5)
#            android-armv7 / android-arm64 (needs ANDROID_NDK=/path/to/ndk; the RK3288 under Android)
#            default: armhf arm64
#   --dry-run  print the commands, run nothing
# Environment: JOBS (parallel compile jobs, default 2), ANDROID_NDK, ANDROID_API (default 21).
#
# Linux targets are linked fully static (-static, glibc), so the binaries run on any board of that architecture
# and under qemu-user; armhf is built with -march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard (Cortex-A7/A15/A17).
# MNN options: MNN_BUILD_BENCHMARK=ON, static library (MNN_BUILD_SHARED_LIBS=OFF, MNN_SEP_BUILD=OFF) and the
# ARMv8.2 / KleidiAI / SME2 kernels off (MNN_ARM82, MNN_KLEIDIAI, MNN_SME2 — they need newer cores or toolchains).
# The runner (tools/native/mnn_runner.cpp) links libMNN.a whole (MNN registers its operators from static
# initialisers). A full MNN build takes about 19 min per target at -j2.
#
# Use the binaries from edgedeploy with the profile's native_tools, e.g. devices/rk3288-linux.yaml:
#   native_tools: {mnn-benchmark: /opt/edgedeploy/benchmark.out, mnn-runner: /opt/edgedeploy/edgedeploy-mnn-runner}
# then `edgedeploy bench MODEL --device rk3288-linux --runtime native:mnn-runner --parity` (raw samples and
# board-side parity) or `--runtime native:mnn-benchmark` (MNN's own statistics). Tests run them on the emulated
# boards when EDGEDEPLOY_NATIVE_TOOLS=OUT_DIR is set (tests/test_devices_native_board.py).
# Exit status: 0 built, 2 bad arguments or missing tools.
set -euo pipefail

DRY=
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
usage() { sed -n '3,13p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
SRC=$1; OUT=$2; shift 2
TARGETS=("$@"); [ ${#TARGETS[@]} -gt 0 ] || TARGETS=(armhf arm64)
JOBS=${JOBS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
RUNNER_SRC=$HERE/native/mnn_runner.cpp

[ -f "$SRC/CMakeLists.txt" ] && grep -q "project(MNN" "$SRC/CMakeLists.txt" \
  || { echo "build_native.sh: $SRC is not an MNN source checkout (no CMakeLists.txt with project(MNN))" >&2; exit 2; }
SRC=$(cd "$SRC" && pwd)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)

run() { if [ -n "$DRY" ]; then printf '%q ' "$@"; echo; else "$@"; fi; }
need() { command -v "$1" >/dev/null || [ -n "$DRY" ] || { echo "build_native.sh: missing $1 ($2)" >&2; exit 2; }; }
need cmake "apt-get install cmake"
need ninja "apt-get install ninja-build"

MNN_OPTS=(-DCMAKE_BUILD_TYPE=Release -DMNN_BUILD_BENCHMARK=ON -DMNN_BUILD_SHARED_LIBS=OFF -DMNN_SEP_BUILD=OFF
          -DMNN_ARM82=OFF -DMNN_KLEIDIAI=OFF -DMNN_SME2=OFF -DMNN_BUILD_TOOLS=OFF -DMNN_BUILD_CONVERTER=OFF
          -DMNN_BUILD_TEST=OFF -DMNN_USE_THREAD_POOL=ON)

for T in "${TARGETS[@]}"; do
  BUILD=$OUT/build-$T
  DEST=$OUT/$T
  case "$T" in
    armhf)
      CC=arm-linux-gnueabihf-gcc; CXX=arm-linux-gnueabihf-g++
      FLAGS="-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard"
      need "$CXX" "apt-get install crossbuild-essential-armhf"
      CONF=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=armv7l -DCMAKE_C_COMPILER=$CC
            -DCMAKE_CXX_COMPILER=$CXX "-DCMAKE_C_FLAGS=$FLAGS" "-DCMAKE_CXX_FLAGS=$FLAGS"
            -DCMAKE_EXE_LINKER_FLAGS=-static)
      LINK=(-static -Wl,--whole-archive "$BUILD/libMNN.a" -Wl,--no-whole-archive -lpthread) ;;
    arm64)
      CC=aarch64-linux-gnu-gcc; CXX=aarch64-linux-gnu-g++; FLAGS="-march=armv8-a"
      need "$CXX" "apt-get install crossbuild-essential-arm64"
      CONF=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_C_COMPILER=$CC
            -DCMAKE_CXX_COMPILER=$CXX "-DCMAKE_C_FLAGS=$FLAGS" "-DCMAKE_CXX_FLAGS=$FLAGS"
            -DCMAKE_EXE_LINKER_FLAGS=-static)
      LINK=(-static -Wl,--whole-archive "$BUILD/libMNN.a" -Wl,--no-whole-archive -lpthread) ;;
    android-armv7|android-arm64)
      [ -n "${ANDROID_NDK:-}" ] || { echo "build_native.sh: $T needs ANDROID_NDK=/path/to/android-ndk" >&2; exit 2; }
      ABI=$([ "$T" = android-armv7 ] && echo armeabi-v7a || echo arm64-v8a)
      API=${ANDROID_API:-21}
      TOOLCHAIN=$ANDROID_NDK/toolchains/llvm/prebuilt/linux-x86_64/bin
      TRIPLE=$([ "$T" = android-armv7 ] && echo armv7a-linux-androideabi || echo aarch64-linux-android)
      CXX=$TOOLCHAIN/$TRIPLE$API-clang++; FLAGS=$([ "$T" = android-armv7 ] && echo "-mfpu=neon" || echo "")
      CONF=(-DCMAKE_TOOLCHAIN_FILE=$ANDROID_NDK/build/cmake/android.toolchain.cmake -DANDROID_ABI=$ABI
            -DANDROID_PLATFORM=android-$API -DANDROID_STL=c++_static -DANDROID_ARM_NEON=ON)
      # bionic has no fully static libc for executables of every API level: static libc++, dynamic libc/libm
      LINK=(-static-libstdc++ -Wl,--whole-archive "$BUILD/libMNN.a" -Wl,--no-whole-archive -llog -lm) ;;
    *) echo "build_native.sh: unknown target $T (armhf, arm64, android-armv7, android-arm64)" >&2; exit 2 ;;
  esac
  t0=$(date +%s)
  run cmake -S "$SRC" -B "$BUILD" -G Ninja "${MNN_OPTS[@]}" "${CONF[@]}"
  run cmake --build "$BUILD" -j "$JOBS" --target MNN benchmark.out
  run mkdir -p "$DEST"
  run cp "$BUILD/benchmark.out" "$DEST/benchmark.out"
  # shellcheck disable=SC2086  # FLAGS is a list of compiler flags
  run "$CXX" -std=c++11 -O2 $FLAGS -I "$SRC/include" "$RUNNER_SRC" -o "$DEST/edgedeploy-mnn-runner" "${LINK[@]}"
  if [ -z "$DRY" ]; then
    {
      echo "target: $T"
      echo "mnn: $(git -C "$SRC" describe --tags --always 2>/dev/null || echo unknown)"
      echo "compiler: $("$CXX" --version | head -n1)"
      echo "flags: $FLAGS"
      echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - t0 )) s"
    } > "$DEST/BUILD_INFO"
    echo "built $DEST/benchmark.out and $DEST/edgedeploy-mnn-runner in $(( $(date +%s) - t0 )) s"
  fi
done
