"""The local transport, state parsing, the runner script itself and a bench through the local transport."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgedeploy.devices import runner
from edgedeploy.devices.local import LocalTransport
from edgedeploy.devices.profile import DeviceProfile
from edgedeploy.devices.remote import bench_on_device
from edgedeploy.devices.request import RemoteBench
from edgedeploy.devices.state import fastest_cores, parse_state, read_device_state, throttling
from edgedeploy.errors import ConfigError, DeviceBusyError, RemoteCommandError, UnknownRuntimeError
from tests.testbed.models import tiny_convnet_onnx

# what the state script prints on a big.LITTLE board (RK3399-like layout: 4x A53 @1.4 GHz + 2x A72 @1.8 GHz)
BIG_LITTLE = "\n".join(
    ["arch=aarch64", "kernel=5.10.110", "online=0-5", "loadavg=0.52 0.40 0.33 1/180 999", "nproc=6"]
    + [f"cpu{i}.scaling_governor=schedutil" for i in range(6)]
    + [f"cpu{i}.cpuinfo_max_freq=1416000" for i in range(4)]
    + [f"cpu{i}.cpuinfo_max_freq=1800000" for i in (4, 5)]
    + [f"cpu{i}.scaling_max_freq=1800000" for i in (4, 5)]
    + [f"cpu{i}.scaling_cur_freq=1800000" for i in (4, 5)]
    + ["thermal_zone0.type=soc-thermal", "thermal_zone0.temp=47222", "thermal_zone1.type=gpu-thermal",
       "thermal_zone1.temp=45000"]
)  # fmt: skip


def test_parse_state_and_fastest_cores() -> None:
    s = parse_state(BIG_LITTLE)
    assert s["arch"] == "aarch64" and s["nproc"] == 6 and s["governor"] == "schedutil"
    assert s["cpus"]["4"]["max_khz"] == 1800000 and s["loadavg"] == [0.52, 0.40, 0.33]
    assert s["thermal"]["thermal_zone0"] == {"type": "soc-thermal", "temp_c": pytest.approx(47.222)}
    assert s["max_temp_c"] == pytest.approx(47.222)
    assert fastest_cores(s) == [4, 5]


def test_throttling_flags() -> None:
    before = parse_state(BIG_LITTLE)
    after = parse_state(BIG_LITTLE.replace("cpu5.scaling_max_freq=1800000", "cpu5.scaling_max_freq=1200000"))
    trace = [{"i": 0, "freq_khz": {"4": 1800000}}, {"i": 10, "freq_khz": {"4": 1416000}}]
    w = throttling(before, after, trace, [4, 5])
    assert any("cpu4" in x and "1416000" in x for x in w) and any("cpu5" in x and "thermal cap" in x for x in w)
    assert throttling(before, before, [{"i": 0, "freq_khz": {"4": 1800000}}], [4, 5]) == []


def test_local_state_reads_this_machine() -> None:
    s = read_device_state(LocalTransport())
    import os
    import platform

    assert s["arch"] == platform.machine() and s["nproc"] == os.cpu_count()


def test_runner_probe_and_bad_args(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, runner.__file__, "--probe"], capture_output=True, text=True, timeout=120)
    info = json.loads(p.stdout.split("RESULT ", 1)[1])
    assert info["arch"] and "onnxruntime" in info["runtimes"]
    p = subprocess.run([sys.executable, runner.__file__, "--artifact", "x.foo"], capture_output=True, text=True)
    assert p.returncode == 2 and "unknown runtime" in p.stderr


def test_runner_is_stdlib_only() -> None:
    import ast

    tree = ast.parse(Path(runner.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top for a in n.names} | {
        n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module
    }
    assert names <= set(sys.stdlib_module_names)


@pytest.mark.slow
def test_bench_local_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEDEPLOY_LOCK_DIR", str(tmp_path / "locks"))
    onnx = tiny_convnet_onnx(tmp_path / "tiny.onnx")
    prof = DeviceProfile(name="here", transport="local", workdir=str(tmp_path / "wd"), python=sys.executable,
                         core_mask="0x1")  # fmt: skip
    req = RemoteBench(onnx, "onnxruntime", "tiny", "onnx", "fp32", [1, 3, 32, 32], iterations=8, warmup=1, threads=1)
    res = bench_on_device(prof, req)
    assert res.status == "complete" and len(res.samples_ms) == 8
    assert res.env["pinned"] and res.env["cpus_allowed"] == [0]  # taskset 0x1 took effect
    # the device-side output on the deterministic input matches onnxruntime in this process
    import numpy as np
    import onnxruntime as ort

    x = np.linspace(-1, 1, 3 * 32 * 32, dtype=np.float32).reshape(1, 3, 32, 32)
    ref = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert res.output_summary["sum"] == pytest.approx(float(ref.sum()), abs=1e-4)  # type: ignore[attr-defined]
    with pytest.raises(UnknownRuntimeError):
        bench_on_device(prof, RemoteBench(onnx, "tensorrt", "tiny", "onnx", "fp32", [1, 3, 32, 32], 1, 0, 1))
    with pytest.raises(ConfigError):
        bench_on_device(
            prof, RemoteBench(tmp_path / "missing.onnx", "onnxruntime", "tiny", "onnx", "fp32", [1], 1, 0, 1)
        )
    with pytest.raises(RemoteCommandError, match="mnn"):
        bench_on_device(prof, RemoteBench(onnx, "mnn", "tiny", "onnx", "fp32", [1, 3, 32, 32], 1, 0, 1))
    from edgedeploy.devices.lock import LocalDeviceLock

    with LocalDeviceLock(prof), pytest.raises(DeviceBusyError):
        bench_on_device(prof, RemoteBench(onnx, "onnxruntime", "tiny", "onnx", "fp32", [1, 3, 32, 32], 1, 0, 1))
