"""A real OpenSSH server for tests, on loopback, in a private mount namespace (the host's /run is untouched).

``SSHServer(tmp).start()`` writes an ed25519 host key, a client key and an ``sshd_config`` (own port on 127.0.0.1,
key-only root login, ``StrictModes no``, internal-sftp) and runs ``/usr/sbin/sshd -D`` under
``unshare -m`` with a tmpfs on /run. With ``rootfs=`` and ``arch=`` the server runs inside
``tests/testbed/armns.sh`` (qemu-user via a private binfmt_misc) and chroots sessions into that ARM root filesystem,
bind-mounted at a root-owned path (sshd refuses a ChrootDirectory under /tmp): an emulated board.
Needs root and openssh-server; :func:`skip_reason` says why not when they are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SSHD = "/usr/sbin/sshd"
# qemu-user CPU model per emulated board: Cortex-A15 is the closest to the RK3288's A17 (qemu has no A17);
# Cortex-A72 is the Raspberry Pi 4's core
QEMU_CPU = {"armhf": "cortex-a15", "arm64": "cortex-a72"}


def skip_reason() -> str | None:
    """Why an sshd test cannot run here, or ``None``."""
    if os.geteuid() != 0:
        return "needs root (sshd in a private mount namespace)"
    if not Path(SSHD).exists() or not shutil.which("ssh-keygen"):
        return "needs openssh-server and openssh-client (apt-get install openssh-server openssh-client)"
    if not shutil.which("unshare"):
        return "needs util-linux unshare"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> str:
    """Make an ed25519 key pair at ``path``; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (path.with_suffix(".pub") if path.suffix else Path(str(path) + ".pub")).read_text().strip()


class SSHServer:
    """See the module docstring. ``known_hosts`` holds the right host key; ``wrong_known_hosts`` another one."""

    def __init__(self, tmp: Path, rootfs: Path | None = None, arch: str | None = None) -> None:
        self.tmp = tmp
        self.rootfs = rootfs
        self.arch = arch
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.host_key = tmp / "ssh_host_ed25519_key"
        self.client_key = tmp / "id_ed25519"
        self.known_hosts = tmp / "known_hosts"
        self.wrong_known_hosts = tmp / "known_hosts.wrong"
        self.log = tmp / "sshd.log"

    def start(self, timeout: float = 15.0) -> SSHServer:
        host_pub = keygen(self.host_key)
        client_pub = keygen(self.client_key)
        (self.tmp / "authorized_keys").write_text(client_pub + "\n")
        keytype, key = host_pub.split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {keytype} {key}\n")
        other = keygen(self.tmp / "other_host_key")
        self.wrong_known_hosts.write_text(f"[127.0.0.1]:{self.port} {' '.join(other.split()[:2])}\n")
        cfg = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.tmp / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.tmp / 'authorized_keys'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "Subsystem sftp internal-sftp",
            "MaxSessions 50",
            "MaxStartups 50",
            "ClientAliveInterval 0",
        ]
        board = "/mnt/edgedeploy-board"
        if self.rootfs is not None:
            cfg.append(f"ChrootDirectory {board}")
            # sshd gives its sessions a clean environment: pass qemu-user the board's CPU model (armns.sh's default)
            cfg.append(f"SetEnv QEMU_CPU={QEMU_CPU.get(self.arch or 'armhf', 'max')}")
        config = self.tmp / "sshd_config"
        config.write_text("\n".join(cfg) + "\n")
        inner = "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd"
        if self.rootfs is not None:
            inner += (
                f" && mount -t tmpfs -o mode=755 tmpfs /mnt && mkdir -m 755 {board}"
                f" && mount --bind {self.rootfs} {board} && mount -t proc proc {board}/proc"
                f" && mount -t tmpfs -o mode=1777 tmpfs {board}/tmp"
            )
        inner += f" && exec {SSHD} -D -E {self.log} -f {config}"
        if self.rootfs is not None:
            cmd = [str(HERE / "armns.sh"), self.arch or "armhf", "sh", "-c", inner]
        else:
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", inner]
        self.proc = subprocess.Popen(cmd, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not answer on port {self.port} within {timeout} s: {self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else "(no log)"

    def session_pids(self) -> list[int]:
        """PIDs of the per-connection sshd processes (children of the listening sshd), as seen from here."""
        if self.proc is None:
            return []
        pids, todo = [], [self.proc.pid]
        for _ in range(10):  # bounded walk down the process tree
            nxt = []
            for p in todo:
                try:
                    kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
                except OSError:
                    kids = []
                nxt += [int(k) for k in kids]
            if not nxt:
                break
            pids += nxt
            todo = nxt
        master = [p for p in pids if _cmdline(p).startswith(f"{SSHD} -D")]
        return [p for p in pids if p not in master and _cmdline(p).startswith("sshd")]

    def drop_connections(self) -> int:
        """Kill the per-connection sshd processes (what a dropped network link does); the server keeps listening."""
        n = 0
        for p in self.session_pids():
            try:
                os.kill(p, signal.SIGKILL)
                n += 1
            except ProcessLookupError:
                pass
        return n

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def profile_yaml(
        self, path: Path, workdir: str, python: str, known_hosts: Path | None = None, **extra: object
    ) -> Path:
        """Write a device profile for this server at ``path``."""
        import yaml

        data = {
            "name": path.stem,
            "transport": "ssh",
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "key_file": str(self.client_key),
            "known_hosts": str(known_hosts or self.known_hosts),
            "workdir": workdir,
            "python": python,
            "connect_timeout_s": 10,
            "retry_backoff_s": 0.2,
            **extra,
        }
        path.write_text(yaml.safe_dump(data))
        return path


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
