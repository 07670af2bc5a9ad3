"""A small ADB daemon for tests: the device side of the ADB wire protocol over TCP (no auth).

Speaks CNXN / OPEN / OKAY / WRTE / CLSE (protocol version 0x01000001, with flow control: one WRTE in flight per
stream) and serves:

* ``shell,v2[,...]:CMD`` — shell protocol v2 (stdout / stderr packets, exit-code packet, stdin and close-stdin);
* ``shell[,...]:CMD`` (v1: stdout and stderr merged, no exit code) and ``exec:CMD`` (stdout only);
* ``sync:`` — STAT / LIST / SEND / RECV / QUIT.

Commands run with ``/bin/sh -c`` on this machine (optionally chrooted into ``root``); sync paths are taken inside
``root`` too. The banner has no trailing NUL (with one, adb falls back to shell v1 and exit codes read 0).
Run it as ``python -m tests.testbed.adbd --port 15555 [--root DIR]``; it prints ``READY`` once listening.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

A_CNXN, A_OPEN, A_OKAY, A_WRTE, A_CLSE, A_AUTH = (
    0x4E584E43,
    0x4E45504F,
    0x59414B4F,
    0x45545257,
    0x45534C43,
    0x48545541,
)
VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
BANNER = (
    b"device::ro.product.name=edgedeploy_test;ro.product.model=RK3288 test board;"
    b"ro.product.device=rk3288;features=shell_v2,cmd"
)
# shell protocol v2 packet ids
SH_STDIN, SH_STDOUT, SH_STDERR, SH_EXIT, SH_CLOSE_STDIN, SH_WINSIZE = 0, 1, 2, 3, 4, 5


def _msg(cmd: int, a0: int, a1: int, data: bytes = b"") -> bytes:
    return struct.pack("<6I", cmd, a0, a1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF) + data


class _StreamEnded(Exception):
    """A sync session's stream ended before the request or chunk it was reading was complete."""


class Stream:
    """One OPENed service on a connection: inbound data queue, outbound flow control."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int) -> None:
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.okay = threading.Semaphore(0)
        self.closed = False

    def write(self, data: bytes) -> None:
        for i in range(0, len(data), self.conn.max_payload):
            if self.closed:
                return
            self.conn.send(_msg(A_WRTE, self.local_id, self.remote_id, data[i : i + self.conn.max_payload]))
            # wait for the host's OKAY (bounded so that a vanished host cannot hang the daemon)
            if not self.okay.acquire(timeout=60):
                self.closed = True
                return

    def read(self, timeout: float = 600) -> bytes | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.send(_msg(A_CLSE, self.local_id, self.remote_id))


class Connection:
    def __init__(self, sock: socket.socket, root: Path) -> None:
        self.sock, self.root = sock, root
        self.lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.max_payload = 4096

    def send(self, data: bytes) -> None:
        with self.lock, contextlib.suppress(OSError):
            self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def serve(self) -> None:
        try:
            while True:
                cmd, a0, a1, length, _crc, magic = struct.unpack("<6I", self.recv_exact(24))
                data = self.recv_exact(length) if length else b""
                if magic != cmd ^ 0xFFFFFFFF:
                    return
                if cmd == A_CNXN:
                    self.max_payload = min(a1 or 4096, MAX_PAYLOAD)
                    self.send(_msg(A_CNXN, VERSION, MAX_PAYLOAD, BANNER))
                elif cmd == A_OPEN:
                    sid = self.next_id
                    self.next_id += 1
                    st = Stream(self, sid, a0)
                    self.streams[sid] = st
                    self.send(_msg(A_OKAY, sid, a0))
                    service = data.rstrip(b"\0").decode("utf-8", "replace")
                    threading.Thread(target=self._run_service, args=(st, service), daemon=True).start()
                elif cmd == A_OKAY:
                    st = self.streams.get(a1)
                    if st is not None:
                        st.okay.release()
                elif cmd == A_WRTE:
                    st = self.streams.get(a1)
                    if st is not None:
                        self.send(_msg(A_OKAY, a1, a0))
                        st.inbox.put(data)
                elif cmd == A_CLSE:
                    st = self.streams.pop(a1, None)
                    if st is not None:
                        st.closed = True
                        st.inbox.put(None)
                        st.okay.release()
        except (EOFError, OSError):
            pass
        finally:
            for st in self.streams.values():
                st.closed = True
                st.inbox.put(None)
                st.okay.release()
            with contextlib.suppress(OSError):
                self.sock.close()

    # -- services -----------------------------------------------------------------------------------------------
    def _run_service(self, st: Stream, service: str) -> None:
        try:
            if service.startswith("shell"):
                head, _, cmd = service.partition(":")
                opts = head.split(",")[1:]
                self._shell(st, cmd, v2="v2" in opts)
            elif service.startswith("exec:"):
                self._shell(st, service[5:], v2=False, merge=False)
            elif service.startswith("sync:"):
                self._sync(st)
            else:
                st.write(f"FAILunknown service {service}".encode())
        finally:
            st.close()
            self.streams.pop(st.local_id, None)

    def _argv(self, cmd: str) -> list[str]:
        if str(self.root) != "/":
            return ["chroot", str(self.root), "/bin/sh", "-c", cmd or "sh"]
        return ["/bin/sh", "-c", cmd or "sh"]

    def _shell(self, st: Stream, cmd: str, v2: bool, merge: bool = True) -> None:
        p = subprocess.Popen(
            self._argv(cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if (v2 or not merge) else subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
        )
        send_lock = threading.Lock()

        def packet(kind: int, data: bytes) -> None:
            with send_lock:
                st.write(struct.pack("<BI", kind, len(data)) + data if v2 else data)

        def pump(f: object, kind: int) -> None:
            while chunk := os.read(f.fileno(), 65536):  # type: ignore[attr-defined]
                if kind == SH_STDERR and not v2:
                    continue  # exec: stdout only
                packet(kind, chunk)

        threads = [threading.Thread(target=pump, args=(p.stdout, SH_STDOUT), daemon=True)]
        if p.stderr is not None:
            threads.append(threading.Thread(target=pump, args=(p.stderr, SH_STDERR), daemon=True))
        for t in threads:
            t.start()

        def feed() -> None:  # host -> process stdin (v2 packets or raw bytes)
            buf = b""
            while True:
                data = st.read()
                if data is None:
                    # host closed the stream (a dropped client): end the command like a hang-up would
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, 9)
                    return
                if not v2:
                    with contextlib.suppress(OSError):
                        p.stdin.write(data)  # type: ignore[union-attr]
                        p.stdin.flush()  # type: ignore[union-attr]
                    continue
                buf += data
                while len(buf) >= 5:
                    kind, n = struct.unpack("<BI", buf[:5])
                    if len(buf) < 5 + n:
                        break
                    payload, buf = buf[5 : 5 + n], buf[5 + n :]
                    with contextlib.suppress(OSError):
                        if kind == SH_STDIN:
                            p.stdin.write(payload)  # type: ignore[union-attr]
                            p.stdin.flush()  # type: ignore[union-attr]
                        elif kind == SH_CLOSE_STDIN:
                            p.stdin.close()  # type: ignore[union-attr]

        threading.Thread(target=feed, daemon=True).start()
        for t in threads:
            t.join()
        code = p.wait()
        if v2:
            packet(SH_EXIT, bytes([code & 0xFF]))

    def _path(self, p: str) -> Path:
        return self.root / p.lstrip("/") if str(self.root) != "/" else Path(p)

    def _sync(self, st: Stream) -> None:
        buf = b""

        def need(n: int) -> bytes:
            nonlocal buf
            while len(buf) < n:
                data = st.read()
                if data is None:
                    raise _StreamEnded
                buf += data
            out, buf = buf[:n], buf[n:]
            return out

        def header() -> tuple[bytes, int]:
            """A sync request's or chunk's 4-byte id and its little-endian u32 (a length, or DONE's mtime)."""
            head = need(8)
            return head[:4], struct.unpack("<I", head[4:])[0]

        with contextlib.suppress(_StreamEnded):  # the client went away mid-request: end the sync session
            self._sync_requests(st, need, header)

    def _sync_requests(self, st: Stream, need: Callable[[int], bytes], header: Callable[[], tuple[bytes, int]]) -> None:
        while True:
            rid, n = header()
            if rid == b"QUIT":
                return
            path = need(n).decode("utf-8", "replace")
            if rid == b"STAT":
                try:
                    s = os.stat(self._path(path))
                    st.write(b"STAT" + struct.pack("<III", s.st_mode, s.st_size & 0xFFFFFFFF, int(s.st_mtime)))
                except OSError:
                    st.write(b"STAT" + struct.pack("<III", 0, 0, 0))
            elif rid == b"LIST":
                d = self._path(path)
                with contextlib.suppress(OSError):
                    for name in [".", "..", *sorted(os.listdir(d))]:
                        s = os.lstat(d / name)
                        nb = name.encode()
                        st.write(
                            b"DENT"
                            + struct.pack("<IIII", s.st_mode, s.st_size & 0xFFFFFFFF, int(s.st_mtime), len(nb))
                            + nb
                        )
                st.write(b"DONE" + b"\0" * 16)
            elif rid == b"SEND":
                dest, _, mode = path.rpartition(",")
                target = self._path(dest)
                chunks, err = [], None
                while True:
                    kind, size = header()
                    if kind == b"DATA":
                        chunks.append(need(size))
                    elif kind == b"DONE":
                        break
                    else:
                        return
                try:
                    target.write_bytes(b"".join(chunks))
                    os.chmod(target, stat.S_IMODE(int(mode or "420")))
                except OSError as e:
                    err = f"couldn't create file: {e.strerror}"
                if err:
                    st.write(b"FAIL" + struct.pack("<I", len(err)) + err.encode())
                else:
                    st.write(b"OKAY" + struct.pack("<I", 0))
            elif rid == b"RECV":
                try:
                    data = self._path(path).read_bytes()
                except OSError as e:
                    msg = f"remote object '{path}' does not exist: {e.strerror}".encode()
                    st.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                for i in range(0, len(data), 64 * 1024):
                    part = data[i : i + 64 * 1024]
                    st.write(b"DATA" + struct.pack("<I", len(part)) + part)
                st.write(b"DONE" + struct.pack("<I", 0))
            else:
                msg = b"unknown sync request"
                st.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                return

    def drop(self) -> None:
        """Cut this connection (what a pulled USB cable or a lost Wi-Fi link does)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class ADBDaemon(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, root: Path) -> None:
        self.root = root
        self.connections: list[Connection] = []
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn = Connection(self.request, self.server.root)  # type: ignore[attr-defined]
        self.server.connections.append(conn)  # type: ignore[attr-defined]
        conn.serve()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="test ADB daemon (device side of the ADB protocol over TCP)")
    ap.add_argument("--port", type=int, default=15555)
    ap.add_argument("--root", default="/")
    ap.add_argument("--drop-on-signal", action="store_true", help="SIGUSR1 cuts every connection")
    a = ap.parse_args(argv)
    srv = ADBDaemon(a.port, Path(a.root))
    if a.drop_on_signal:
        import signal

        def _drop(*_: object) -> None:
            for c in list(srv.connections):
                c.drop()
            srv.connections.clear()

        signal.signal(signal.SIGUSR1, _drop)
    print("READY", flush=True)
    srv.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
