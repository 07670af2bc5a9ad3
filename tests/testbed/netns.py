"""A private network namespace with only ``lo`` (up), held by a ``sleep`` process the tests start and end.

``NetNS().start()``; ``ns.cmd(argv)`` prefixes ``nsenter --net=...``; ``ns.call(fn)`` runs ``fn`` in a thread that
joined the namespace (``setns``), so Python clients (adbutils, paramiko) open their sockets inside it. Traffic in
the namespace can reach nothing but its own loopback. Needs root.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


class NetNS:
    def __init__(self, lifetime_s: int = 1800) -> None:
        self.lifetime_s = lifetime_s
        self.holder: subprocess.Popen[bytes] | None = None

    def start(self) -> NetNS:
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", str(self.lifetime_s)], start_new_session=True)
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            if time.monotonic() > deadline or self.holder.poll() is not None:
                raise RuntimeError("could not create a network namespace")
            time.sleep(0.02)
        subprocess.run(self.cmd(["ip", "link", "set", "lo", "up"]), check=True)
        return self

    @property
    def path(self) -> str:
        assert self.holder is not None
        return f"/proc/{self.holder.pid}/ns/net"

    def cmd(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", *argv]

    def call(self, fn: Callable[[], T], timeout: float = 600) -> T:
        """Run ``fn()`` in a thread inside the namespace; re-raises its exception."""
        box: dict[str, Any] = {}

        def target() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(self.path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            try:
                box["value"] = fn()
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                box["error"] = e

        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError(f"call in network namespace did not finish within {timeout} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def stop(self) -> None:
        if self.holder is not None and self.holder.poll() is None:
            os.killpg(self.holder.pid, signal.SIGKILL)
            self.holder.wait(timeout=10)
        self.holder = None
