"""The environment fingerprint stored with every local result: versions, CPU, governor, threads, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgedeploy._version import __version__


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    """``model name`` from /proc/cpuinfo (x86) or ``Hardware``/``CPU part`` (ARM); else platform.processor()."""
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Processor"):
        for line in text.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_commit(start: Path | None = None) -> str | None:
    """HEAD of the git checkout holding ``start`` (default: the current directory), or None outside one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=start or Path.cwd(), capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def local_fingerprint(runtime_versions: dict[str, str] | None = None) -> dict[str, Any]:
    """Versions (python, edgedeploy, runtimes), CPU model, logical cores, governor and max frequency (cpu0).

    sysfs readings are best effort: ``None`` where the kernel does not expose them (VMs often do not).
    """
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    return {
        "edgedeploy": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "max_freq_mhz": int(max_khz) / 1000 if max_khz and max_khz.isdigit() else None,
        "runtime_versions": runtime_versions or {},
        "git_commit": git_commit(),
        "package_commit": git_commit(Path(__file__).resolve().parent),
    }
