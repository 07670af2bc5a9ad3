"""A real labgrid farm on loopback for tests: ``labgrid-coordinator``, one ``labgrid-exporter`` per "host" publishing
a ``NetworkService`` per board (the testbed's sshd boards), and places made with the real ``labgrid-client``.

Each :class:`LabgridLab` starts its own coordinator on a free 127.0.0.1 port, with its own working folder (the
coordinator keeps ``places.yaml`` / ``resources.yaml`` in its cwd). Exporters publish ``--hostname 127.0.0.1``.
Needs the ``labgrid`` package (extra ``farm``); :func:`skip_reason` says why not when it is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

from tests.testbed.sshd import free_port


def skip_reason() -> str | None:
    for tool in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client"):
        if not shutil.which(tool):
            return f"needs labgrid ({tool} not found; pip install 'edgedeploy[farm]')"
    return None


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class LabgridLab:
    """A coordinator plus exporters; ``address`` is ``127.0.0.1:PORT``. Use as a context manager."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.exporters: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "LG_COORDINATOR": self.address}
        self.env.pop("LG_PLACE", None)
        self.env.pop("LG_TOKEN", None)

    def start(self, timeout: float = 30.0) -> LabgridLab:
        work = self.tmp / "coordinator"
        work.mkdir(parents=True, exist_ok=True)
        log = (self.tmp / "coordinator.log").open("wb")
        self.coordinator = subprocess.Popen(
            ["labgrid-coordinator", "-l", self.address], cwd=work, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # bounded: the client answers once the coordinator listens
            if self.coordinator.poll() is not None:
                raise RuntimeError(f"labgrid-coordinator exited: {(self.tmp / 'coordinator.log').read_text()}")
            if self.client("places", check=False).returncode == 0:
                return self
            time.sleep(0.3)
        raise RuntimeError(f"labgrid-coordinator did not answer on {self.address} within {timeout} s")

    def client(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real ``labgrid-client`` against this coordinator."""
        p = subprocess.run(["labgrid-client", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"labgrid-client {' '.join(args)} failed: {p.stderr or p.stdout}")
        return p

    def add_exporter(self, host: str, boards: dict[str, dict[str, object]], timeout: float = 30.0) -> None:
        """Start an exporter called ``host`` publishing ``{group: NetworkService params}``; waits until the
        coordinator lists every resource."""
        cfg = self.tmp / f"exporter-{host}.yaml"
        cfg.write_text(yaml.safe_dump({g: {"NetworkService": params} for g, params in boards.items()}))
        log = (self.tmp / f"exporter-{host}.log").open("wb")
        self.exporters[host] = subprocess.Popen(
            ["labgrid-exporter", "-c", self.address, "--name", host, "--hostname", "127.0.0.1", str(cfg)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.client("resources", check=False).stdout
            if all(f"{host}/{g}/NetworkService" in out for g in boards):
                return
            if self.exporters[host].poll() is not None:
                raise RuntimeError(f"labgrid-exporter {host} exited: {(self.tmp / f'exporter-{host}.log').read_text()}")
            time.sleep(0.3)
        raise RuntimeError(f"exporter {host} did not publish {list(boards)} within {timeout} s")

    def add_place(self, name: str, match: str, **tags: str) -> None:
        """``labgrid-client -p NAME create``, ``add-match MATCH``, ``set-tags k=v ...``."""
        self.client("-p", name, "create")
        self.client("-p", name, "add-match", match)
        if tags:
            self.client("-p", name, "set-tags", *(f"{k}={v}" for k, v in tags.items()))

    def place_acquired_by(self, name: str) -> str | None:
        """Who holds place ``name`` (``host/user``), or ``None``."""
        out = self.client("-p", name, "show").stdout
        for line in out.splitlines():
            if line.strip().startswith("acquired:"):
                v = line.split(":", 1)[1].strip()
                return None if v in ("", "None") else v
        return None

    def reservations(self) -> str:
        return self.client("reservations").stdout

    def stop_exporter(self, host: str) -> None:
        _stop(self.exporters.pop(host, None))

    def stop(self) -> None:
        for host in list(self.exporters):
            self.stop_exporter(host)
        _stop(self.coordinator)
        self.coordinator = None

    def __enter__(self) -> LabgridLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
