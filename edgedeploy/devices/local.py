"""The local transport: "the device" is this machine; commands run with ``/bin/sh``, files are copied."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from edgedeploy.devices.transport import CommandResult, Transport
from edgedeploy.errors import ConnectionDroppedError

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile


class LocalTransport(Transport):
    """Runs commands on this machine (``/bin/sh -c``) with the profile's extra ``env``."""

    kind = "local"

    def __init__(self, profile: DeviceProfile | None = None) -> None:
        if profile is None:
            from edgedeploy.devices.profile import DeviceProfile

            profile = DeviceProfile(name="local", transport="local")
        super().__init__(profile)

    def sh(self, script: str, *, timeout: float | None = 600.0, check: bool = True) -> CommandResult:
        """Run ``script`` with ``/bin/sh -c``; a timeout raises :class:`ConnectionDroppedError` (s)."""
        env = {**os.environ, **self.profile.env}
        try:
            p = subprocess.run(
                ["/bin/sh", "-c", script], capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as e:
            raise ConnectionDroppedError(f"local command timed out after {timeout} s: {script}") from e
        res = CommandResult(
            script, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        )
        return self.check_result(res, check)

    def push(self, local: Path, remote: str) -> None:
        dst = Path(remote).expanduser()
        if Path(local).resolve() != dst.resolve():
            shutil.copyfile(local, dst)

    def pull(self, remote: str, local: Path) -> None:
        src = Path(remote).expanduser()
        if src.resolve() != Path(local).resolve():
            shutil.copyfile(src, local)
