"""Issue 20 on the emulated boards: memory, ``--sustained`` and ``--matrix`` through the board runner.

SSH: the aarch64 board of tests/testbed/board.py (sshd chrooted into a Debian rootfs under qemu-user; onnxruntime
and MNN run board-side). ADB: the test ADB daemon of tests/test_devices_adb.py (the host's Python as the device's).
Root-only and slow, like the other board tests; skipped with the reason where the testbed is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgedeploy.bench import sustained
from edgedeploy.devices.remote import bench_on_device
from edgedeploy.devices.request import RemoteBench
from tests.conftest import run_cli
from tests.test_devices_adb import _profile as adb_profile
from tests.test_devices_adb import _skip_reason as adb_skip_reason
from tests.test_devices_adb import bed  # noqa: F401 - the ADB test bed fixture
from tests.test_devices_board import MODEL, arm64, needs_arm64  # noqa: F401 - the aarch64 board fixture
from tests.testbed.models import tiny_convnet_onnx

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.usefixtures("private_locks")]
needs_adb = pytest.mark.skipif(adb_skip_reason() is not None, reason=adb_skip_reason() or "")


@needs_arm64
@pytest.mark.parametrize("runtime", ["onnxruntime", "mnn"])
def test_board_reports_its_own_memory(arm64, tmp_path: Path, runtime: str) -> None:  # noqa: F811
    prof = arm64.profile(tmp_path / "rpi4-emu.yaml")
    p = run_cli("bench", MODEL, "--device", str(prof), "--runtime", runtime, "--json", "--iterations", "2",
                "--warmup", "1", "--threads", "1", timeout=1800)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    print(f"\n{MODEL} {runtime} on the aarch64 board: peak {r['peak_rss_mb']:.1f} MB, delta {r['rss_delta_mb']:.1f} MB")
    assert r["env"]["arch"] == "aarch64" and r["source"] == "python-runner"
    assert r["memory"]["method"].startswith("/proc/self/status") and r["memory"]["where"] == "rpi4-emu"
    assert r["peak_rss_mb"] > r["rss_delta_mb"] > 0 and r["not_measured"] == {}
    assert r["artifact_bytes"] == Path(r["artifact"]["path"]).stat().st_size
    assert r["load_ms"] > 0 and r["first_ms"] > 0


@needs_arm64
def test_board_sustained_through_the_runner(arm64, tmp_path: Path) -> None:  # noqa: F811
    prof = arm64.profile(tmp_path / "rpi4-emu.yaml")
    p = run_cli("bench", MODEL, "--device", str(prof), "--runtime", "onnxruntime", "--json", "--sustained", "20",
                "--warmup", "1", "--threads", "1", timeout=1800)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    s = r["sustained"]
    assert s["duration_s"] >= 20 and s["iterations"] == len(r["samples_ms"]) == len(s["t_s"]) >= 3
    assert s["throttle_ratio"] == pytest.approx(s["last_window_p50_ms"] / s["first_window_p50_ms"])
    assert s["thermal_trace"] and r["env"]["arch"] == "aarch64"
    if s["temperature_c_max"] is None:  # the chroot has no thermal zone: null + the board's own reason
        assert "thermal" in r["not_measured"]["temperature"]


@needs_arm64
def test_board_matrix_runs_board_side(arm64, tmp_path: Path) -> None:  # noqa: F811
    prof = arm64.profile(tmp_path / "rpi4-emu.yaml", runtimes=["onnxruntime"])
    p = run_cli("bench", MODEL, "--device", str(prof), "--matrix", "--threads-sweep", "1", "--iterations", "2",
                "--warmup", "0", "--json", "--out", str(tmp_path / "store"), timeout=3600)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert {(c["format"], c["precision"]) for c in doc["cases"]} == {
        ("onnx", "fp32"),
        ("onnx", "fp16"),
        ("onnx", "int8"),
    }
    best = doc["best"]["fastest"]
    assert best["parity"] == "passed" and "aarch64" in best["parity_detail"]["runtime"]  # compared board-side
    assert doc["best"]["smallest_memory"]["peak_rss_mb"] > 0
    record = json.loads(Path(doc["record"]).read_text())
    assert {r["env"]["arch"] for r in record["results"]} == {"aarch64"}


@needs_adb
def test_memory_and_sustained_over_adb(bed, tmp_path: Path) -> None:  # noqa: F811
    onnx = tiny_convnet_onnx(tmp_path / "tiny.onnx")
    prof = adb_profile(tmp_path)

    def body():
        req = RemoteBench(
            onnx, "onnxruntime", "tiny", "onnx", "fp32", [1, 3, 32, 32], iterations=1, warmup=1, threads=1,
            sustained_s=4,
        )  # fmt: skip
        return bench_on_device(prof, req)

    res = bed.ns.call(body)
    assert res.env["transport"] == "adb"
    assert res.peak_rss_mb > res.rss_delta_mb > 0 and res.memory["where"] == "adbboard"
    assert res.artifact_bytes == onnx.stat().st_size
    out = sustained.apply(res, res.sustained)
    s = out.sustained
    assert s["duration_s"] >= 4 and s["iterations"] == len(out.samples_ms) > 10
    assert s["throttle_ratio"] is not None and len(s["thermal_trace"]) >= 3


@needs_adb
def test_matrix_over_adb_runs_board_side(bed, tmp_path: Path) -> None:  # noqa: F811
    import yaml

    from edgedeploy.bench.matrix import MatrixOptions, run_matrix

    prof = adb_profile(tmp_path, runtimes=["onnxruntime"])
    path = tmp_path / "adbboard.yaml"
    path.write_text(yaml.safe_dump(json.loads(prof.model_dump_json(exclude_none=True))))
    opts = MatrixOptions(device=str(path), threads=(1,), iterations=3, warmup=0, store=str(tmp_path / "store"))
    report = bed.ns.call(lambda: run_matrix("mobilevit_xxs", opts))
    doc = report.to_json_dict()
    assert {(c["format"], c["precision"]) for c in doc["cases"]} == {
        ("onnx", "fp32"),
        ("onnx", "fp16"),
        ("onnx", "int8"),
    }
    fast = doc["best"]["fastest"]
    assert fast is not None and fast["parity"] == "passed" and fast["peak_rss_mb"] > 0
    assert all(
        r.env["transport"] == "adb" and r.memory["where"] == "adbboard" for c in report.cases for r in [c.result]
    )
