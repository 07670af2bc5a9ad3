"""The ADB transport (adbutils, through the user's adb server): shell v2 with exit codes and stderr, sync for files.

``profile.serial`` is a USB serial from ``adb devices`` or ``host:port`` (then ``adb connect`` is done first). The adb
server is the one at ``profile.adb_host:profile.adb_port`` (default 127.0.0.1:5037); set ``ADBUTILS_ADB_PATH`` to
choose the ``adb`` binary adbutils starts when no server is running.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgedeploy.devices.transport import CommandResult, Transport
from edgedeploy.errors import ConnectionDroppedError, DeviceUnreachableError, MissingExtraError

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile

try:
    import adbutils
except ImportError:  # pragma: no cover - exercised only without the extra
    adbutils = None  # type: ignore[assignment]


class ADBTransport(Transport):
    """A device behind the adb server; checked on construction.

    Raises :class:`DeviceUnreachableError` when the server or the device does not answer (``connect_timeout_s``),
    or the device is not in the ``device`` state (offline, unauthorized).
    """

    kind = "adb"

    def __init__(self, profile: DeviceProfile) -> None:
        if adbutils is None:
            raise MissingExtraError("adbutils", "remote", "ADB devices")
        super().__init__(profile)
        self._dev: Any = None
        self._open()

    def _open(self) -> None:
        p = self.profile
        t = p.connect_timeout_s
        where = f"{p.name} (adb {p.serial} via server {p.adb_host}:{p.adb_port})"
        client = adbutils.AdbClient(host=p.adb_host, port=p.adb_port, socket_timeout=t)
        try:
            if ":" in (p.serial or ""):
                msg = client.connect(p.serial, timeout=t)
                if "connected" not in msg or "cannot" in msg or "failed" in msg:
                    raise DeviceUnreachableError(f"{where}: adb connect failed: {msg.strip()}")
            dev = client.device(serial=p.serial)
            # the device may take a moment to come online after `adb connect` (bounded: connect_timeout_s)
            deadline = time.monotonic() + t
            state = ""
            while time.monotonic() < deadline:
                try:
                    state = dev.get_state()
                except adbutils.AdbError as e:
                    state = str(e)
                if state == "device":
                    break
                time.sleep(0.1)
            if state != "device":
                raise DeviceUnreachableError(f"{where}: device not ready within {t:g} s (state: {state or 'none'})")
        except (adbutils.AdbTimeout, TimeoutError) as e:
            raise DeviceUnreachableError(f"{where}: no answer within {t:g} s") from e
        except (adbutils.AdbError, OSError) as e:
            raise DeviceUnreachableError(f"{where}: {e}") from e
        self._dev = dev

    def reconnect(self) -> None:
        self._dev = None
        self._open()

    def sh(self, script: str, *, timeout: float | None = 600.0, check: bool = True) -> CommandResult:
        """Run ``script`` with the device's ``sh`` over shell v2 (exit status and stderr kept); timeout in s."""
        if self._dev is None:
            raise ConnectionDroppedError(f"{self.profile.name}: not connected")
        try:
            r = self._dev.shell2(self.with_env(script), timeout=timeout, v2=True)
        except adbutils.AdbTimeout as e:
            raise ConnectionDroppedError(f"{self.profile.name}: command timed out after {timeout} s: {script}") from e
        except (adbutils.AdbError, OSError, EOFError) as e:
            raise ConnectionDroppedError(f"{self.profile.name}: connection dropped while running: {script}: {e}") from e
        res = CommandResult(script, int(r.returncode), r.stdout, r.stderr)
        return self.check_result(res, check)

    def push(self, local: Path, remote: str) -> None:
        try:
            self._dev.sync.push(str(local), remote, mode=0o644, check=True)
        except (adbutils.AdbError, OSError, EOFError) as e:
            raise ConnectionDroppedError(f"{self.profile.name}: push of {local} to {remote} failed: {e}") from e

    def pull(self, remote: str, local: Path) -> None:
        try:
            self._dev.sync.pull(remote, str(local))
        except (adbutils.AdbError, OSError, EOFError) as e:
            raise ConnectionDroppedError(f"{self.profile.name}: pull of {remote} failed: {e}") from e
