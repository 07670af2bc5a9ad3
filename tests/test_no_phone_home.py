"""No tool edgedeploy calls may phone home: checked at the system-call level with strace.

onnxruntime >= 1.29 starts a 1DS telemetry uploader on import (first DNS query a few seconds later) unless
``ORT_DISABLE_TELEMETRY=1`` is set before it loads; MNN's Python tools pip-install and send a usage log. The first
test proves the check itself can fail (a bare onnxruntime import is seen resolving the telemetry host), the
second that an edgedeploy ONNX export + benchmark, long enough for the uploader to fire, makes no network call.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (apt-get install strace)"),
]


def network_calls(trace: Path) -> list[str]:
    lines = trace.read_text().splitlines()
    return [ln for ln in lines if "socket(AF_INET" in ln or ("connect(" in ln and "AF_INET" in ln)]


def traced(cmd: list[str], trace: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    full = ["strace", "-f", "-qq", "-e", "trace=socket,connect", "-o", str(trace), *cmd]
    return subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)


def test_the_check_sees_onnxruntime_telemetry_when_not_disabled(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    trace = tmp_path / "trace.txt"
    proc = traced([sys.executable, "-c", "import onnxruntime, time; time.sleep(12)"], trace, env)
    assert proc.returncode == 0, proc.stderr
    if not network_calls(trace):
        pytest.skip("this onnxruntime build starts no telemetry uploader: nothing to disable")
    assert network_calls(trace)


def test_export_and_bench_make_no_network_calls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    trace = tmp_path / "trace.txt"
    script = (
        "from edgedeploy.cli import main\n"
        "import time\n"
        f"main(['export', 'mobilevit_xxs', '--to', 'onnx', '--out', {str(tmp_path)!r}], standalone_mode=False)\n"
        f"main(['bench', {str(tmp_path / 'mobilevit_xxs.onnx')!r}, '--runtime', 'onnxruntime',"
        " '--iterations', '20', '--warmup', '1'], standalone_mode=False)\n"
        "time.sleep(12)\n"
    )
    proc = traced([sys.executable, "-c", script], trace, env)
    assert proc.returncode == 0, proc.stderr
    assert trace.stat().st_size > 0
    assert network_calls(trace) == []
