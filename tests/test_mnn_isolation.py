"""MNN conversion must not change the user's environment or phone home.

``MNN.tools`` (behind the ``mnnconvert`` console script) pip-installs ``aliyun-log-python-sdk`` and sends a usage
log when imported; edgedeploy calls the compiled converter directly. These tests run a real MNN export and check,
at two levels, that nothing of the sort happens: Python audit events (sockets, subprocesses) and, when strace is
installed, the system calls of the whole process tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MODEL = "mobilevit_xxs"  # the smallest real model: the conversion path is the same for every model


def pip_freeze() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.splitlines())


AUDITED_EXPORT = """
import json, sys
events = []
def hook(event, args):
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo", "subprocess.Popen",
                 "os.system", "os.exec", "os.posix_spawn", "urllib.Request"):
        events.append([event, repr(args)[:200]])
sys.addaudithook(hook)
from edgedeploy.cli import main
try:
    main(["export", %(model)r, "--to", "mnn", "--out", %(out)r, "--json"], standalone_mode=False)
finally:
    with open(%(log)r, "w") as fh:
        json.dump({"events": events, "modules": sorted(sys.modules)}, fh)
"""


@pytest.mark.slow
def test_mnn_export_opens_no_socket_runs_no_subprocess_installs_nothing(tmp_path: Path) -> None:
    before = pip_freeze()
    log = tmp_path / "audit.json"
    script = AUDITED_EXPORT % {"model": MODEL, "out": str(tmp_path / "out"), "log": str(log)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["parity"]["passed"] is True
    record = json.loads(log.read_text())
    network = [e for e in record["events"] if e[0].startswith(("socket", "urllib"))]
    spawned = [e for e in record["events"] if not e[0].startswith(("socket", "urllib"))]
    # git rev-parse is the only subprocess the toolkit itself may start (commit of the checkout)
    spawned = [e for e in spawned if "'git'" not in e[1]]
    assert network == [], network
    assert spawned == [], spawned
    assert "MNN.tools" not in record["modules"] and "MNN.tools.utils.log" not in record["modules"]
    assert "aliyun" not in " ".join(record["modules"])
    assert pip_freeze() == before


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (apt-get install strace)")
def test_mnn_export_makes_no_network_syscalls(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    cmd = ["strace", "-f", "-qq", "-e", "trace=socket,connect,execve", "-o", str(trace)]
    cmd += [sys.executable, "-m", "edgedeploy.cli", "export", MODEL, "--to", "mnn", "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    lines = trace.read_text().splitlines()
    assert any("execve(" in ln for ln in lines), "strace recorded nothing: the check would be vacuous"
    inet = [ln for ln in lines if "socket(AF_INET" in ln or ("connect(" in ln and "AF_INET" in ln)]
    assert inet == [], inet
    pip_runs = [ln for ln in lines if "execve(" in ln and ("pip" in ln.split("[")[0] or '-m", "pip' in ln)]
    assert pip_runs == [], pip_runs
