"""Emulated ARM boards for tests: a Debian bookworm rootfs under qemu-user, reached over a real sshd.

``EmulatedBoard(arch, base).start()`` unpacks ``CACHE/rootfs-bookworm-ARCH.tar.zst`` (built by
``tests/testbed/build_rootfs.sh ARCH CACHE``) under ``base``, installs the runtime wheels of ``CACHE/wheels-ARCH/``
into its ``/usr/local/lib/python3.11/dist-packages`` with ``pip install --no-deps --target`` (run on the host for
the board's platform: the rootfs has no pip), and starts :class:`~tests.testbed.sshd.SSHServer` chrooted into it
with ``QEMU_CPU`` set for the board (cortex-a15 on armhf, cortex-a72 on arm64). The host's ``/sys`` is never
bind-mounted (onnxruntime's cpuinfo segfaults on the x86 topology): only ``/proc`` and a tmpfs ``/tmp``.

Boards: ``armhf`` (RK3288-class, armv7l: tflite-runtime 2.14 and ncnn) and ``arm64`` (Raspberry Pi 4-class, aarch64:
onnxruntime 1.32, MNN 3.6.1, ai-edge-litert 2.3, tflite-runtime 2.14, ncnn). CACHE is
``$EDGEDEPLOY_TESTBED_CACHE`` (default /var/cache/edgedeploy-testbed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.testbed.sshd import SSHServer
from tests.testbed.sshd import skip_reason as sshd_skip

CACHE = Path(os.environ.get("EDGEDEPLOY_TESTBED_CACHE", "/var/cache/edgedeploy-testbed"))
QEMU = {"armhf": "/usr/bin/qemu-arm-static", "arm64": "/usr/bin/qemu-aarch64-static"}
MACHINE = {"armhf": "armv7l", "arm64": "aarch64"}
PLATFORM_TAG = {"armhf": "armv7l", "arm64": "aarch64"}


def tarball(arch: str) -> Path:
    return CACHE / f"rootfs-bookworm-{arch}.tar.zst"


def wheels(arch: str) -> list[Path]:
    return sorted((CACHE / f"wheels-{arch}").glob("*.whl"))


def skip_reason(arch: str, need: tuple[str, ...] = ()) -> str | None:
    """Why the ``arch`` board cannot run here (``need``: wheel name prefixes that must be cached), or ``None``."""
    if sshd_skip():
        return sshd_skip()
    if not Path(QEMU[arch]).exists():
        return "needs qemu-user-static"
    if not tarball(arch).is_file():
        return f"no {arch} rootfs cached: run tests/testbed/build_rootfs.sh {arch} {CACHE}"
    names = [w.name.lower() for w in wheels(arch)]
    for n in need:
        if not any(x.startswith(n.lower()) for x in names):
            return f"no {n} wheel in {CACHE}/wheels-{arch}: run tests/testbed/build_rootfs.sh {arch} {CACHE}"
    return None


class EmulatedBoard:
    """See the module docstring; ``server`` is the running :class:`SSHServer` once started."""

    def __init__(self, arch: str, base: Path) -> None:
        self.arch = arch
        self.base = base
        self.root = base / "rootfs"
        self.server: SSHServer | None = None

    def start(self) -> EmulatedBoard:
        self.root.mkdir(parents=True)
        subprocess.run(
            ["tar", "--zstd", "--numeric-owner", "-xpf", str(tarball(self.arch)), "-C", str(self.root)], check=True
        )
        site = self.root / "usr/local/lib/python3.11/dist-packages"
        site.mkdir(parents=True, exist_ok=True)
        tag = PLATFORM_TAG[self.arch]
        plats = [a for v in (17, 24, 27, 28, 31, 34, 35, 36) for a in ("--platform", f"manylinux_2_{v}_{tag}")]
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--only-binary=:all:",
             "--disable-pip-version-check", "--root-user-action=ignore", "--target", str(site), *plats,
             "--platform", f"linux_{tag}",
             "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
             *(str(w) for w in wheels(self.arch))],
            check=True, timeout=600,
        )  # fmt: skip
        (self.base / "ssh").mkdir()
        self.server = SSHServer(self.base / "ssh", rootfs=self.root, arch=self.arch).start(timeout=30)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        shutil.rmtree(self.root, ignore_errors=True)

    def profile(self, path: Path, workdir: str = "/tmp/edgedeploy", **extra: object) -> Path:
        """A device profile YAML for this board (python3 of the rootfs, arch from the board)."""
        assert self.server is not None
        extra.setdefault("arch", MACHINE[self.arch])
        extra.setdefault("os", "linux")
        return self.server.profile_yaml(path, workdir, "python3", **extra)
