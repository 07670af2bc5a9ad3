"""Native tools on the emulated boards: MNN's benchmark.out and edgedeploy's static MNN runner, cross-built by
``tools/build_native.sh MNN_SRC DIR`` from a user's MNN checkout (nothing of MNN ships with edgedeploy).

Runs when ``EDGEDEPLOY_NATIVE_TOOLS=DIR`` holds ``DIR/ARCH/benchmark.out`` and ``DIR/ARCH/edgedeploy-mnn-runner``
(ARCH: armhf, arm64), skipped with the reason otherwise. The artifacts sit in the board's workdir on its tmpfs
``/tmp`` (under qemu-user a 32-bit ``readdir`` on ext4 can list nothing, and benchmark.out lists its folder).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.testbed.board import EmulatedBoard, skip_reason

TOOLS = os.environ.get("EDGEDEPLOY_NATIVE_TOOLS")
MODEL = os.environ.get("EDGEDEPLOY_BOARD_MODEL", "mobilevit_xxs")
NAMES = ("benchmark.out", "edgedeploy-mnn-runner")


def _why_not(arch: str) -> str | None:
    if not TOOLS:
        return "EDGEDEPLOY_NATIVE_TOOLS is not set (build the tools with tools/build_native.sh MNN_SRC DIR)"
    missing = [n for n in NAMES if not (Path(TOOLS) / arch / n).is_file()]
    if missing:
        return f"{TOOLS}/{arch} lacks {', '.join(missing)} (tools/build_native.sh MNN_SRC {TOOLS} {arch})"
    return skip_reason(arch)


pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module", params=["armhf", "arm64"])
def board(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedBoard]:
    why = _why_not(request.param)
    if why:
        pytest.skip(why)
    b = EmulatedBoard(request.param, tmp_path_factory.mktemp(request.param)).start()
    dest = b.root / "opt/edgedeploy"
    dest.mkdir(parents=True)
    for n in NAMES:
        shutil.copy(Path(TOOLS or "") / request.param / n, dest / n)
        (dest / n).chmod(0o755)
    yield b
    b.stop()


def test_native_mnn_runner_parity_and_benchmark(board: EmulatedBoard, tmp_path: Path) -> None:
    tools = {"mnn-runner": "/opt/edgedeploy/edgedeploy-mnn-runner", "mnn-benchmark": "/opt/edgedeploy/benchmark.out"}
    prof = board.profile(tmp_path / "native-board.yaml", native_tools=tools)
    env = {"EDGEDEPLOY_LOCK_DIR": str(tmp_path / "locks")}
    p = run_cli("bench", MODEL, "--device", str(prof), "--runtime", "native:mnn-runner", "--parity", "--json",
                "--iterations", "2", "--warmup", "1", "--threads", "1", env=env, timeout=1800)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    assert len(res["samples_ms"]) == 2 and res["source"] == "native:mnn-runner"
    assert res["env"]["arch"] == {"armhf": "armv7l", "arm64": "aarch64"}[board.arch]
    assert res["board_parity"]["passed"] is True, res["board_parity"]
    assert not any("different outputs" in w for w in res["warnings"])
    p = run_cli("bench", MODEL, "--device", str(prof), "--runtime", "native:mnn-benchmark", "--json",
                "--iterations", "2", "--warmup", "1", "--threads", "1", env=env, timeout=1800)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    assert res["samples_ms"] == [] and res["mean_ms"] > 0 and res["native"]["tool"] == "mnn-benchmark"
