"""The transport protocol every device connection implements, and :func:`connect` to open one from a profile.

A transport runs shell commands on the device and copies files to and from it. Commands are built from argument
lists with :func:`shlex.join`, so every remote argument is quoted (paths with spaces and shell metacharacters work);
:meth:`Transport.sh` takes a ready shell script for the few places that compose one from quoted parts.

Errors (all :class:`~edgedeploy.errors.DeviceError`): :class:`DeviceUnreachableError` when the device does not
answer, :class:`DeviceAuthError` for authentication and host-key failures, :class:`ConnectionDroppedError` when an
open connection goes away, :class:`RemoteCommandError` (with the command's stderr) for a non-zero exit status.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgedeploy.errors import RemoteCommandError

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile


@dataclass
class CommandResult:
    """What a command printed (decoded as UTF-8 with replacement) and its exit status."""

    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def env_prefix(env: Mapping[str, str] | None) -> str:
    """``env K=V ... `` (quoted) to put before a command, or ``""``."""
    if not env:
        return ""
    return "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " "


class Transport(ABC):
    """A connection to one device. Use as a context manager, or call :meth:`close`."""

    #: "local", "ssh" or "adb"
    kind: str = ""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile

    # -- to implement -------------------------------------------------------------------------------------------
    @abstractmethod
    def sh(self, script: str, *, timeout: float | None = 600.0, check: bool = True) -> CommandResult:
        """Run ``script`` with the device's ``sh``; ``timeout`` in s (``None``: no limit).

        Raises :class:`RemoteCommandError` (carrying stderr) for a non-zero exit when ``check``, and the
        transport's connection errors.
        """

    @abstractmethod
    def push(self, local: Path, remote: str) -> None:
        """Copy the local file ``local`` to the device path ``remote`` (the parent folder must exist)."""

    @abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy the device file ``remote`` to ``local``."""

    def close(self) -> None:  # noqa: B027 - optional
        """Close the connection (idempotent)."""

    def reconnect(self) -> None:  # noqa: B027 - optional
        """Open the connection again after a drop; raises the connection errors of :meth:`sh`."""

    # -- built on the above -------------------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = 600.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run one command given as an argument list; every argument is quoted with :func:`shlex.quote`."""
        return self.sh(env_prefix(env) + shlex.join(argv), timeout=timeout, check=check)

    def read_text(self, remote: str) -> str | None:
        """The content of a device text file, or ``None`` when it cannot be read."""
        r = self.sh(f"cat {shlex.quote(remote)} 2>/dev/null", check=False, timeout=60)
        return r.stdout if r.ok else None

    def expand_path(self, remote: str) -> str:
        """``remote`` with a leading ``~`` replaced by the device user's ``$HOME``."""
        if remote == "~" or remote.startswith("~/"):
            home = self.sh('printf %s "$HOME"', timeout=60).stdout.strip() or "/"
            return home.rstrip("/") + remote[1:] if remote != "~" else home
        return remote

    def makedirs(self, remote: str) -> None:
        """``mkdir -p remote``."""
        self.run(["mkdir", "-p", remote], timeout=60)

    def remote_sha256(self, remote: str) -> str | None:
        """sha256 of a device file (``sha256sum``, or ``toybox sha256sum`` on Android), or ``None`` if absent."""
        q = shlex.quote(remote)
        r = self.sh(f"[ -f {q} ] && (sha256sum {q} 2>/dev/null || toybox sha256sum {q})", check=False, timeout=300)
        if not r.ok or not r.stdout.strip():
            return None
        return r.stdout.split()[0].lower()

    def with_env(self, script: str) -> str:
        """``script`` preceded by ``export K=V;`` for the profile's extra ``env`` (quoted)."""
        if not self.profile.env:
            return script
        exports = " ".join(shlex.quote(f"{k}={v}") for k, v in self.profile.env.items())
        return f"export {exports}; {script}"

    def check_result(self, result: CommandResult, check: bool) -> CommandResult:
        if check and not result.ok:
            raise RemoteCommandError(result.command, result.exit_status, result.stderr)
        return result

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
