"""ADB transport and remote bench: the real ``adb`` client and adbutils against the test ADB daemon.

Everything runs inside a private network namespace with only ``lo`` (root), so the adb server's device discovery
cannot leave the machine; the daemon listens on 127.0.0.1:15555 there and the adb server on port 15037.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgedeploy.devices.adb import ADBTransport
from edgedeploy.devices.profile import DeviceProfile
from edgedeploy.devices.remote import bench_on_device
from edgedeploy.devices.request import RemoteBench
from edgedeploy.devices.state import read_device_state
from edgedeploy.errors import DeviceUnreachableError, RemoteCommandError
from tests.testbed.models import tiny_convnet_onnx
from tests.testbed.netns import NetNS

REPO = Path(__file__).resolve().parent.parent
SERIAL = "127.0.0.1:15555"
SERVER_PORT = 15037


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespace for the adb server and the test daemon)"
    if not shutil.which("adb"):
        return "needs the adb client (apt-get install adb)"
    if not shutil.which("nsenter") or not shutil.which("ip"):
        return "needs util-linux nsenter and iproute2"
    try:
        import adbutils  # noqa: F401
    except ImportError:
        return "needs adbutils (pip install 'edgedeploy[remote]')"
    return None


pytestmark = [pytest.mark.root, pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]


class ADBBed:
    def __init__(self, ns: NetNS) -> None:
        self.ns = ns
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> ADBBed:
        d = subprocess.Popen(
            self.ns.cmd([sys.executable, "-m", "tests.testbed.adbd", "--port", "15555", "--drop-on-signal"]),
            stdout=subprocess.PIPE, cwd=REPO, start_new_session=True,
        )  # fmt: skip
        self.procs.append(d)
        assert d.stdout is not None and d.stdout.readline().strip() == b"READY"
        self.daemon = d
        s = subprocess.Popen(
            self.ns.cmd(["adb", "-P", str(SERVER_PORT), "server", "nodaemon"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.procs.append(s)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.adb("connect", SERIAL).stdout.startswith("connected"):
                return self
            time.sleep(0.2)
        raise RuntimeError("adb server did not connect to the test daemon")

    def adb(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ns.cmd(["adb", "-P", str(SERVER_PORT), *args]),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


@pytest.fixture(scope="module")
def bed() -> Iterator[ADBBed]:
    ns = NetNS().start()
    b = ADBBed(ns)
    try:
        yield b.start()
    finally:
        b.stop()
        ns.stop()


def _profile(tmp: Path, **kw: object) -> DeviceProfile:
    data: dict[str, object] = {
        "name": "adbboard",
        "transport": "adb",
        "serial": SERIAL,
        "adb_port": SERVER_PORT,
        "workdir": str(tmp / "data local tmp $(touch /tmp/PWNED-adb) 'x'"),
        "python": sys.executable,
        "connect_timeout_s": 5,
        "retry_backoff_s": 0.2,
    }
    data.update(kw)
    return DeviceProfile(**data)  # type: ignore[arg-type]


def test_real_adb_client(bed: ADBBed, tmp_path: Path) -> None:
    r = bed.adb("devices", "-l")
    assert SERIAL in r.stdout and "device product:edgedeploy_test" in r.stdout
    r = bed.adb("-s", SERIAL, "shell", "echo hi; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "hi\n", "err\n")  # shell v2: exit status and stderr kept
    src = tmp_path / "a b.txt"
    src.write_text("payload")
    assert bed.adb("-s", SERIAL, "push", str(src), str(tmp_path / "pushed.txt")).returncode == 0
    assert (tmp_path / "pushed.txt").read_text() == "payload"
    assert bed.adb("-s", SERIAL, "pull", str(tmp_path / "pushed.txt"), str(tmp_path / "back.txt")).returncode == 0
    assert (tmp_path / "back.txt").read_text() == "payload"


def test_adb_transport(bed: ADBBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prof = _profile(tmp_path)

    def body() -> None:
        with ADBTransport(prof) as t:
            r = t.run(["sh", "-c", "echo out; echo err >&2; exit 5"], check=False)
            assert (r.exit_status, r.stdout, r.stderr) == (5, "out\n", "err\n")
            with pytest.raises(RemoteCommandError, match="nope"):
                t.sh("echo nope >&2; false")
            t.makedirs(prof.workdir or "")
            f = tmp_path / "model.bin"
            f.write_bytes(os.urandom(300_000))  # several sync DATA chunks
            t.push(f, f"{prof.workdir}/model.bin")
            assert t.remote_sha256(f"{prof.workdir}/model.bin") is not None
            back = tmp_path / "back.bin"
            t.pull(f"{prof.workdir}/model.bin", back)
            assert back.read_bytes() == f.read_bytes()
            assert read_device_state(t)["nproc"] >= 1

    bed.ns.call(body)
    assert not Path("/tmp/PWNED-adb").exists()


def test_adb_unreachable(bed: ADBBed, tmp_path: Path) -> None:
    prof = _profile(tmp_path, serial="127.0.0.1:15599", connect_timeout_s=3)
    with pytest.raises(DeviceUnreachableError):
        bed.ns.call(lambda: ADBTransport(prof))


@pytest.mark.slow
def test_bench_over_adb(bed: ADBBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEDEPLOY_LOCK_DIR", str(tmp_path / "locks"))
    onnx = tiny_convnet_onnx(tmp_path / "tiny.onnx")
    prof = _profile(tmp_path)

    def body():
        req = RemoteBench(onnx, "onnxruntime", "tiny", "onnx", "fp32", [1, 3, 32, 32], 10, 1, 1)
        return bench_on_device(prof, req)

    res = bed.ns.call(body)
    assert res.status == "complete" and len(res.samples_ms) == 10
    assert res.env["transport"] == "adb" and res.env["os"] == "android"
    assert Path(res.artifact["remote_path"]).read_bytes() == onnx.read_bytes()
    assert res.env["artifact_pushed"] is True
    assert bed.ns.call(body).env["artifact_pushed"] is False


@pytest.mark.slow
def test_board_parity_over_adb_and_native_only_profile(bed: ADBBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from edgedeploy.devices.parity_io import prepare
    from edgedeploy.errors import ConfigError
    from edgedeploy.export.pipeline import cached_export

    monkeypatch.setenv("EDGEDEPLOY_LOCK_DIR", str(tmp_path / "locks"))
    art = cached_export("mobilevit_xxs", "onnx").artifact
    request = prepare(art)
    prof = _profile(tmp_path)

    def body():
        req = RemoteBench(
            art, "onnxruntime", "mobilevit_xxs", "onnx", "fp32", [1, 3, 256, 256], 2, 0, 1, parity=request
        )
        return bench_on_device(prof, req)

    res = bed.ns.call(body)
    bp = res.board_parity  # type: ignore[attr-defined]
    assert bp["passed"] is True and bp["max_abs_error"] < 1e-4 and len(bp["inputs"]) == 5
    # the parity outputs were pulled over ADB sync and removed from the device afterwards
    assert not list(Path(prof.workdir or "").glob("runs/*/out-0.npy"))
    # an Android profile without Python (devices/rk3288.yaml): Python runtimes are refused before connecting
    native_only = _profile(tmp_path, python=None, native_tools={"mnn-benchmark": "/data/local/tmp/benchmark.out"})
    with pytest.raises(ConfigError, match=r"has no Python.*native:mnn-benchmark"):
        bench_on_device(native_only, RemoteBench(art, "onnxruntime", "m", "onnx", "fp32", [1, 3, 256, 256], 1, 0, 1))
