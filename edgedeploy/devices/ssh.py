"""The SSH transport (paramiko): exec channels with exit codes, SFTP for files, host keys always verified.

Host keys are checked against the profile's ``known_hosts`` (default ``~/.ssh/known_hosts``). An unknown key is
refused unless the profile sets ``trust_on_first_use: true``, which records it in that file; a *changed* key is
always refused. Authentication uses the profile's ``key_file``, else the SSH agent and ``~/.ssh/id_*``.
"""

from __future__ import annotations

import select
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgedeploy.bench.interrupt import StopRequested, check_interruptible
from edgedeploy.devices.transport import CommandResult, Transport
from edgedeploy.errors import (
    ConnectionDroppedError,
    DeviceAuthError,
    DeviceUnreachableError,
    MissingExtraError,
)

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile

try:
    import paramiko
except ImportError:  # pragma: no cover - exercised only without the extra
    paramiko = None  # type: ignore[assignment]


def _known_hosts_path(profile: DeviceProfile) -> Path:
    return Path(profile.known_hosts or "~/.ssh/known_hosts").expanduser()


class SSHTransport(Transport):
    """One paramiko connection to ``profile.host:profile.port``; opened on construction.

    Raises :class:`DeviceUnreachableError` (refused / timed out after ``connect_timeout_s``),
    :class:`DeviceAuthError` (unknown or changed host key, rejected credentials).
    """

    kind = "ssh"

    def __init__(self, profile: DeviceProfile) -> None:
        if paramiko is None:
            raise MissingExtraError("paramiko", "remote", "SSH devices")
        super().__init__(profile)
        self._client: Any = None
        self._sftp: Any = None
        self._open()

    # -- connection ---------------------------------------------------------------------------------------------
    def _open(self) -> None:
        p = self.profile
        where = f"{p.name} ({p.address})"
        client = paramiko.SSHClient()
        kh = _known_hosts_path(p)
        if kh.is_file():
            try:
                client.load_host_keys(str(kh))
            except (OSError, paramiko.SSHException) as e:
                raise DeviceAuthError(f"{where}: cannot read known_hosts file {kh}: {e}") from e
        elif not p.trust_on_first_use:
            raise DeviceAuthError(
                f"{where}: known_hosts file {kh} does not exist; add the board's host key to it "
                "(ssh-keyscan, then check the fingerprint) or set trust_on_first_use: true in the profile"
            )
        if p.trust_on_first_use:
            kh.parent.mkdir(parents=True, exist_ok=True)
            kh.touch(exist_ok=True)
            client.load_host_keys(str(kh))  # so that new keys are saved here
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key_file = str(Path(p.key_file).expanduser()) if p.key_file else None
        t = p.connect_timeout_s
        try:
            client.connect(
                p.host,
                port=p.port,
                username=p.user,
                key_filename=key_file,
                look_for_keys=key_file is None,
                allow_agent=key_file is None,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
                channel_timeout=t,
            )
        except paramiko.BadHostKeyException as e:
            client.close()
            raise DeviceAuthError(
                f"{where}: host key verification failed: the server's {e.key.get_name()} key "
                f"(SHA256 {e.key.fingerprint}) does not match the one in {kh}; refusing to connect"
            ) from e
        except paramiko.AuthenticationException as e:
            client.close()
            raise DeviceAuthError(f"{where}: authentication failed for user {p.user!r}: {e}") from e
        except TimeoutError as e:
            client.close()
            raise DeviceUnreachableError(f"{where}: no answer within {t:g} s (connect timeout)") from e
        except paramiko.SSHException as e:
            client.close()
            if "not found in known_hosts" in str(e):
                raise DeviceAuthError(
                    f"{where}: the server's host key is not in {kh}; refusing to connect "
                    "(add it after checking its fingerprint, or set trust_on_first_use: true)"
                ) from e
            raise DeviceUnreachableError(f"{where}: SSH handshake failed: {e}") from e
        except OSError as e:
            client.close()
            raise DeviceUnreachableError(f"{where}: cannot connect: {e.strerror or e}") from e
        tr = client.get_transport()
        if tr is not None:
            tr.set_keepalive(5)
        self._client = client
        self._sftp = None

    def reconnect(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        for obj in (self._sftp, self._client):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - closing a dead connection may fail in many ways
                    pass
        self._sftp = None
        self._client = None

    def _alive(self) -> Any:
        tr = self._client.get_transport() if self._client is not None else None
        if tr is None or not tr.is_active():
            raise ConnectionDroppedError(f"{self.profile.name}: the SSH connection is closed")
        return tr

    # -- commands -----------------------------------------------------------------------------------------------
    def sh(self, script: str, *, timeout: float | None = 600.0, check: bool = True) -> CommandResult:
        """Run ``script`` through the login user's shell (``sh -c`` on the server side); ``timeout`` in s."""
        cmd = "sh -c " + shlex.quote(self.with_env(script))
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        try:
            chan = self._alive().open_session(timeout=self.profile.connect_timeout_s)
            chan.exec_command(cmd)
            chan.shutdown_write()
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                    continue
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    continue
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed and chan.eof_received:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    chan.close()
                    raise ConnectionDroppedError(f"{self.profile.name}: command timed out after {timeout} s: {script}")
                if not self._client.get_transport().is_active():
                    raise _dropped(f"{self.profile.name}: connection dropped while running: {script}", out)
                try:
                    check_interruptible()  # a suite's SIGINT / SIGTERM or case timeout (edgedeploy.bench.interrupt)
                except StopRequested:
                    chan.close()
                    raise
                select.select([chan], [], [], 0.2)
            status = chan.recv_exit_status() if chan.exit_status_ready() else -1
            chan.close()
        except ConnectionDroppedError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise _dropped(f"{self.profile.name}: connection dropped while running: {script}: {e}", out) from e
        if status == -1:
            raise _dropped(f"{self.profile.name}: no exit status (connection dropped?): {script}", out)
        res = CommandResult(script, status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        return self.check_result(res, check)

    # -- files --------------------------------------------------------------------------------------------------
    def _sftp_client(self) -> Any:
        if self._sftp is None:
            try:
                self._sftp = self._client.open_sftp()
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise ConnectionDroppedError(f"{self.profile.name}: cannot open SFTP: {e}") from e
        return self._sftp

    def push(self, local: Path, remote: str) -> None:
        """SFTP put; raises :class:`ConnectionDroppedError` when the connection fails mid-copy."""
        try:
            self._sftp_client().put(str(local), remote)
        except FileNotFoundError as e:
            raise ConnectionDroppedError(f"{self.profile.name}: cannot write {remote}: no such folder") from e
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise ConnectionDroppedError(f"{self.profile.name}: push of {local} to {remote} failed: {e}") from e

    def pull(self, remote: str, local: Path) -> None:
        try:
            self._sftp_client().get(remote, str(local))
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise ConnectionDroppedError(f"{self.profile.name}: pull of {remote} failed: {e}") from e


def _dropped(msg: str, out: bytearray) -> ConnectionDroppedError:
    """A :class:`ConnectionDroppedError` carrying what the command printed before the drop (``partial_stdout``)."""
    e = ConnectionDroppedError(msg)
    e.partial_stdout = out.decode("utf-8", "replace")  # type: ignore[attr-defined]
    return e
