"""int8 exports say whether int8 is faster than fp32 here: measured at export, recorded in the manifest.

A small conv classifier (64×64 input) is exported to int8 ONNX and MNN through the public API; its manifest gets
``int8_speed`` measured with the real runtime (onnxruntime, MNN) against the fp32 artifact of the same module, and
the summary line's wording follows the measured ratio. ``int8_speed_check=False`` gives no field. The budget and
the "too slow to time" skip are checked on the same artifacts; the CLI prints the line.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import edgedeploy
from edgedeploy import api
from edgedeploy.bench.int8_speed import Int8SpeedCheck, measure_int8_speed
from edgedeploy.errors import ConfigError
from edgedeploy.export.manifest import Int8Speed, int8_speed_line, read_manifest
from tests.conftest import run_cli

SHAPE = (1, 3, 64, 64)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def int8_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("int8speed")
    return {
        fmt: edgedeploy.export(_net(), fmt, input_shape=SHAPE, out=out, precision="int8", name="tiny")
        for fmt in ("onnx", "mnn")
    }


def test_line_follows_the_ratio() -> None:
    slow = Int8Speed(measured=True, runtime="mnn", ratio=0.696, blocks=5, clock="cpu")
    assert int8_speed_line(slow) == (
        "int8 is slower than fp32 on mnn here (measured 0.70× fp32 speed, 5 blocks, CPU time, this host)"
    )
    fast = Int8Speed(measured=True, runtime="onnxruntime", ratio=1.476, blocks=6, clock="cpu")
    assert int8_speed_line(fast).startswith("int8 is 1.48× faster than fp32 on onnxruntime here (measured, 6 blocks")
    skipped = Int8Speed(measured=False, runtime="coreml", reason="coreml runs on macOS only")
    assert int8_speed_line(skipped) == "int8 speed vs fp32 not measured on coreml: coreml runs on macOS only"


def test_budget_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="int8-speed-seconds"):
        edgedeploy.export(_net(), "onnx", input_shape=SHAPE, precision="int8", int8_speed_seconds=0.0)
    with pytest.raises(ConfigError, match="int8_speed_seconds"):
        Int8SpeedCheck(max_seconds=-1)


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "runtime"), [("onnx", "onnxruntime"), ("mnn", "mnn")])
def test_int8_export_records_measured_speed(int8_exports: dict[str, Any], fmt: str, runtime: str) -> None:
    outcome = int8_exports[fmt]
    assert outcome.parity.passed is True
    speed = outcome.manifest.int8_speed
    assert speed is not None and speed.measured, speed
    assert speed.runtime == runtime and speed.clock == "cpu" and speed.threads == 1
    assert speed.ratio is not None and speed.ratio > 0 and speed.blocks >= 3 and len(speed.block_ratios) == speed.blocks
    assert speed.fp32_ms > 0 and speed.int8_ms > 0 and speed.elapsed_s <= 5.0 + 2.0  # budget + one block's overrun
    fp32 = read_manifest(speed.fp32_artifact, verify=True)
    assert fp32 is not None and fp32.precision == "fp32" and fp32.format == fmt
    # the record is in the manifest on disk, which still matches the artifact
    on_disk = read_manifest(outcome.artifact, verify=True)
    assert on_disk is not None and on_disk.int8_speed == speed
    word = "slower than" if speed.ratio < 1 else f"{speed.ratio:.2f}× faster than"
    assert f"int8 is {word} fp32 on {runtime} here" in outcome.summary()
    assert outcome.to_json_dict()["int8_speed"]["ratio"] == speed.ratio


@pytest.mark.slow
def test_option_off_gives_no_field(tmp_path: Path) -> None:
    outcome = edgedeploy.export(
        _net(), "onnx", input_shape=SHAPE, out=tmp_path, precision="int8", name="tiny", int8_speed_check=False
    )
    assert outcome.manifest.int8_speed is None
    assert json.loads(outcome.manifest_path.read_text())["int8_speed"] is None
    assert "int8 is" not in outcome.summary() and "not measured" not in outcome.summary()


@pytest.mark.slow
def test_an_inference_too_slow_for_the_budget_is_not_timed(int8_exports: dict[str, Any]) -> None:
    outcome = int8_exports["onnx"]
    fp32 = outcome.manifest.int8_speed.fp32_artifact
    speed = measure_int8_speed(outcome.artifact, fp32, "onnx", Int8SpeedCheck(max_seconds=1e-7))
    assert not speed.measured and speed.ratio is None and "of the 1e-07 s budget" in speed.reason
    assert "not measured on onnxruntime: one inference takes" in int8_speed_line(speed)


@pytest.mark.slow
def test_cli_prints_the_line(tmp_path: Path) -> None:
    spec = tmp_path / "tiny_net.py"
    spec.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build():
                torch.manual_seed(0)
                return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                     nn.Flatten(), nn.Linear(16, 10)).eval()
            """
        )
    )
    args = ("export", f"{spec}:build", "--to", "mnn", "--precision", "int8", "--input-shape", "1,3,64,64")
    proc = run_cli(*args, "--out", str(tmp_path / "a"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout)
    ratio = res["int8_speed"]["ratio"]
    assert ratio > 0 and res["int8_speed"]["runtime"] == "mnn"
    assert ("slower than fp32 on mnn" if ratio < 1 else "faster than fp32 on mnn") in res["summary"]
    proc = run_cli(*args, "--out", str(tmp_path / "b"), env={"COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "int8 speed" in proc.stdout and ("slower than fp32 on mnn" in proc.stdout) == (ratio < 1), proc.stdout
    proc = run_cli(*args, "--out", str(tmp_path / "c"), "--no-int8-speed-check", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["int8_speed"] is None


@pytest.mark.slow
def test_export_all_int8_rows_carry_the_measurement(tmp_path: Path) -> None:
    done = api.export_all(_net(), ["onnx", "mnn"], input_shape=SHAPE, out=tmp_path, precision="int8",
                                 name="tiny")  # fmt: skip
    for r in done.results:
        assert r.status == "parity passed", r
        speed = Int8Speed.model_validate(r.int8_speed)
        assert speed.measured and speed.ratio > 0 and speed.runtime == {"onnx": "onnxruntime", "mnn": "mnn"}[r.format]
        on_disk = read_manifest(r.artifact, verify=True)
        assert on_disk is not None and on_disk.int8_speed == speed
    from edgedeploy.commands.tables import export_all_table

    caption = str(export_all_table(done.model, done.results).caption)
    assert "than fp32 on onnxruntime here" in caption and "than fp32 on mnn here" in caption
    off = api.export_all(_net(), ["onnx"], input_shape=SHAPE, out=tmp_path / "off", precision="int8",
                                name="tiny", int8_speed_check=False)  # fmt: skip
    assert off.results[0].int8_speed is None


def test_cli_refuses_a_zero_budget(tmp_path: Path) -> None:
    proc = run_cli("export", "edgeformer_s", "--to", "onnx", "--precision", "int8", "--int8-speed-seconds", "0",
                   "--out", str(tmp_path))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--int8-speed-seconds must be in (0, 600]" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_ctrl_c_during_the_speed_check_keeps_the_record_and_exits_130(tmp_path: Path) -> None:
    """A real SIGINT to a real ``edgedeploy export --precision int8`` while it times int8 against fp32: exit 130,
    one line, and the artifact with its manifest complete, the manifest holding the blocks timed so far."""
    from tests.test_faults import CLI, _env, read_until, signal_and_collect, spawn_on_pty

    spec = tmp_path / "heavy_net.py"  # ~0.2 s per fp32 inference at 1 thread: the timing lasts several seconds
    spec.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build():
                torch.manual_seed(0)
                return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
                                     *[m for _ in range(8) for m in (nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())],
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()
            """
        )
    )
    out = tmp_path / "out"
    argv = [*CLI, "export", f"{spec}:build", "--to", "onnx", "--precision", "int8", "--input-shape", "1,3,256,256",
            "--int8-speed-seconds", "120", "--name", "heavy_net", "--out", str(out)]  # fmt: skip
    proc, master = spawn_on_pty(argv, _env(tmp_path))
    try:
        seen, m = read_until(master, r"timing int8 against fp32", timeout=600)
        assert m, f"the export never reached the int8 speed check:\n{seen[-2000:]}"
        time.sleep(2.0)  # past the sessions' load and warm-up: inside the timed blocks
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        raise
    _stdout, tail = signal_and_collect(proc, master, signal.SIGINT)
    assert proc.returncode == 130, tail[-2000:]
    assert "interrupted (SIGINT)" in tail and "Traceback" not in tail
    artifact = out / "heavy_net.int8.onnx"
    manifest = read_manifest(artifact, verify=True)  # complete: the hash matches the file
    assert manifest is not None and manifest.precision == "int8"
    speed = manifest.int8_speed
    assert speed is not None and speed.reason is not None and "interrupted" in speed.reason, speed
    assert speed.blocks < 7 and len(speed.block_ratios) == speed.blocks
    assert not list(out.glob(".edgedeploy-staging-*"))
