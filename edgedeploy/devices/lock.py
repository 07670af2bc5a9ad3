"""Per-device lock: two benches never share a board.

Two layers, both taken without waiting (a busy device raises :class:`~edgedeploy.errors.DeviceBusyError` at once):

* a local ``flock`` on ``~/.cache/edgedeploy/locks/<address>.lock`` (``$EDGEDEPLOY_LOCK_DIR`` overrides the folder),
  keyed by the device's address, so two profiles naming one board share the lock; the kernel releases it when the
  process dies;
* a lock folder ``<workdir>/.lock`` made with ``mkdir`` on the device (atomic), holding an ``owner`` file
  (host, pid, time), for benches started from different machines. One older than ``stale_after_s`` (default 6 h)
  is taken to be left over from a crashed run and replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import socket
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from edgedeploy.errors import ConfigError, DeviceBusyError

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile
    from edgedeploy.devices.transport import Transport


def lock_dir() -> Path:
    """Folder of the local lock files."""
    return Path(os.environ.get("EDGEDEPLOY_LOCK_DIR", "~/.cache/edgedeploy/locks")).expanduser()


class LocalDeviceLock:
    """An exclusive, non-blocking ``flock`` for one device address. Raises :class:`DeviceBusyError` when held,
    :class:`~edgedeploy.errors.ConfigError` when the lock folder cannot be written (read-only, a file in the way)."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        key = re.sub(r"[^A-Za-z0-9_.-]+", "_", profile.address)
        self.path = lock_dir() / f"{key}.lock"
        self._f: IO[str] | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = self.path.open("a+")
        except OSError as e:
            raise ConfigError(
                f"cannot create the device lock {self.path}: {e.strerror or e} "
                "(set EDGEDEPLOY_LOCK_DIR to a writable folder)"
            ) from e
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise DeviceBusyError(
                f"device {self.profile.name} ({self.profile.address}) is busy: another bench holds {self.path} "
                f"({holder})"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        self._f = f

    def release(self) -> None:
        if self._f is not None:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            self._f.close()
            self._f = None

    def __enter__(self) -> LocalDeviceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RemoteDeviceLock:
    """``mkdir <workdir>/.lock`` on the device. Raises :class:`DeviceBusyError` naming the holder when held."""

    def __init__(self, transport: Transport, workdir: str, stale_after_s: float = 6 * 3600) -> None:
        self.transport = transport
        self.dir = workdir.rstrip("/") + "/.lock"
        self.stale_after_s = stale_after_s
        self.held = False

    def acquire(self) -> None:
        d = shlex.quote(self.dir)
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        script = f"mkdir {d} 2>/dev/null && printf %s {shlex.quote(owner)} > {d}/owner"
        if self.transport.sh(script, check=False, timeout=60).ok:
            self.held = True
            return
        text = self.transport.read_text(self.dir + "/owner") or ""
        try:
            info = json.loads(text)
            age = time.time() - float(info.get("time", 0))
        except (ValueError, TypeError):
            info, age = {}, float("inf") if not text else 0.0
        if age > self.stale_after_s:
            self.transport.sh(f"rm -rf {d}", check=False, timeout=60)
            if self.transport.sh(script, check=False, timeout=60).ok:
                self.held = True
                return
        who = f"pid {info.get('pid')} on {info.get('host')}" if info else "an unknown holder"
        raise DeviceBusyError(
            f"device {self.transport.profile.name} is busy: {self.dir} is held by {who}"
            f" ({age:.0f} s old; remove it if that bench is gone)"
        )

    def release(self) -> None:
        if self.held:
            self.transport.sh(f"rm -rf {shlex.quote(self.dir)}", check=False, timeout=60)
            self.held = False
