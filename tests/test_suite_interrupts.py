"""Real SIGINT / SIGTERM to a real ``edgedeploy bench --suite`` child process at several points (issue 24).

The suite is small and quick: tiny real ONNX models timed by onnxruntime (a 0.03 ms one, a ~1 ms one), and a user
model card whose callable never returns (it writes a marker file first, so the test knows the export is under way).
Each case checks: the exit code (130 / 143), no ``std::terminate`` (exit 134) and no traceback, the table printed,
the run file complete (every case with its status; the finished cases' samples all there; the case in progress
``partial`` with the samples measured), and no export staging folder left behind.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from tests.robust_util import tiny_onnx
from tests.test_faults import CLI, _env, read_until, signal_and_collect, spawn_on_pty

SLOW_PY = """
import os, time
from pathlib import Path

def build():
    Path(os.environ["SLOW_MARKER"]).write_text("in build")
    while True:  # user code that never returns: only a signal or the case timeout ends it
        time.sleep(0.05)
"""


def _suite(tmp: Path, models: list[str], **fields: object) -> Path:
    """A suite file in ``tmp/suites`` (model paths relative to it) over the models in ``tmp/models``."""
    models_dir = tmp / "models"
    models_dir.mkdir(exist_ok=True)
    tiny_onnx(models_dir / "quick.onnx", size=32)
    tiny_onnx(models_dir / "heavy.onnx", size=192, classes=64)
    tiny_onnx(models_dir / "third.onnx", size=16)
    (models_dir / "slow.py").write_text(SLOW_PY)
    (models_dir / "slow.yaml").write_text("entry: slow.py:build\ninput_shape: [1, 3, 32, 32]\n")
    folder = tmp / "suites"
    folder.mkdir(exist_ok=True)
    lines = ["name: interrupts", f"models: [{', '.join('../models/' + m for m in models)}]", "runtimes: [onnxruntime]",
             "formats: [onnx]", "threads: 1"] + [f"{k}: {v}" for k, v in fields.items()]  # fmt: skip
    path = folder / "suite.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(tmp: Path, suite: Path) -> tuple[object, int, Path, dict[str, str]]:
    env = _env(tmp, SLOW_MARKER=str(tmp / "slow.marker"), COLUMNS="250")
    store = tmp / "store"
    proc, master = spawn_on_pty([*CLI, "bench", "--suite", str(suite), "--out", str(store)], env)
    return proc, master, store, env


def _record(store: Path) -> dict:
    files = list(store.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def _common(proc, stdout: str, tail: str, sig: signal.Signals, tmp: Path) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 128 + sig, (proc.returncode, tail[-3000:])  # not 134 (std::terminate)
    assert "terminate called" not in tail and "Traceback" not in tail, tail[-3000:]
    assert "suite interrupts:" in stdout  # the table
    assert f"interrupted ({sig.name})" in tail
    assert not list((tmp / "cache").rglob(".edgedeploy-staging-*")), "an export staging folder was left"


def _stop_mid_heavy(proc, master: int, sig: signal.Signals, tmp: Path, store: Path, at_least: int) -> tuple:  # type: ignore[no-untyped-def]
    """Signal the suite while heavy.onnx times; the run file's record, heavy's (partial) result and the stdout,
    after the checks every such stop shares: quick.onnx complete, heavy partial with at least ``at_least`` samples."""
    stdout, tail = signal_and_collect(proc, master, sig)
    _common(proc, stdout, tail, sig, tmp)
    rec = _record(store)
    by_model = {r["model"]: r for r in rec["results"]}
    assert by_model["quick"]["status"] == "complete" and len(by_model["quick"]["samples_ms"]) == 100000
    heavy = by_model["heavy"]
    assert heavy["status"] == "partial" and at_least <= len(heavy["samples_ms"]) < 100000
    return rec, heavy, stdout


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_timing_keeps_the_partial_case_and_the_finished_ones(tmp_path: Path, sig: signal.Signals) -> None:
    # heavy.onnx at 100000 iterations takes minutes: interrupted while timing; third.onnx is never started
    suite = _suite(tmp_path, ["quick.onnx", "heavy.onnx", "third.onnx"], iterations=100000, warmup=0)
    proc, master, store, _ = _start(tmp_path, suite)
    seen, m = read_until(master, r"timing \S*heavy\.onnx (\d+)/100000", timeout=240)
    assert m, seen[-3000:]
    seen2, m2 = read_until(master, r"timing \S*heavy\.onnx ([1-9]\d{3,})/100000", timeout=120)
    assert m2, seen2[-3000:]
    rec, heavy, stdout = _stop_mid_heavy(proc, master, sig, tmp_path, store, 1000)
    assert any(f"interrupted after {len(heavy['samples_ms'])} of 100000" in w for w in heavy["warnings"])
    cases = {c["model"]: c for c in rec["cases"]}
    assert cases["../models/quick.onnx"]["status"] == "benchmarked"
    assert cases["../models/heavy.onnx"]["status"] == "partial"
    assert cases["../models/third.onnx"]["status"] == "interrupted"
    assert cases["../models/third.onnx"]["reason"] == f"not run: interrupted ({sig.name})"
    assert (
        f"interrupted ({sig.name}) while timing; {len(heavy['samples_ms'])} of 100000"
        in (cases["../models/heavy.onnx"]["reason"])
    )
    assert "partial" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_warm_up(tmp_path: Path, sig: signal.Signals) -> None:
    # 10000 warm-up runs (the most allowed): 0.3 s for quick.onnx, several seconds for heavy.onnx
    suite = _suite(tmp_path, ["quick.onnx", "heavy.onnx"], iterations=2000, warmup=10000)
    proc, master, store, _ = _start(tmp_path, suite)
    seen, m = read_until(master, r"heavy\.onnx onnx fp32 onnxruntime \(run 1/1\): loading, warm-up", timeout=300)
    assert m, seen[-3000:]
    time.sleep(1.0)  # load of a tiny file: ms; 10000 warm-up runs of heavy.onnx: seconds
    stdout, tail = signal_and_collect(proc, master, sig)
    _common(proc, stdout, tail, sig, tmp_path)
    rec = _record(store)
    assert [r["model"] for r in rec["results"]] == ["quick"]  # nothing of heavy was timed
    assert len(rec["results"][0]["samples_ms"]) == 2000
    cases = {c["model"]: c for c in rec["cases"]}
    assert cases["../models/quick.onnx"]["status"] == "benchmarked"
    heavy = cases["../models/heavy.onnx"]
    assert heavy["status"] == "interrupted" and "before timing started" in heavy["reason"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_between_cases(tmp_path: Path, sig: signal.Signals) -> None:
    """The signal is sent as soon as the first case's result is in the run file (the board is taking the next)."""
    suite = _suite(tmp_path, ["quick.onnx", "heavy.onnx"], iterations=3000, warmup=10000)
    proc, master, store, _ = _start(tmp_path, suite)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(store.glob("*.json")):
        read_until(master, r"$^", timeout=0.05)  # keep the terminal drained
    assert list(store.glob("*.json")), "the first case never finished"
    stdout, tail = signal_and_collect(proc, master, sig)
    _common(proc, stdout, tail, sig, tmp_path)
    rec = _record(store)
    assert [r["model"] for r in rec["results"]] == ["quick"]
    assert rec["results"][0]["status"] == "complete" and len(rec["results"][0]["samples_ms"]) == 3000
    statuses = {c["model"]: c["status"] for c in rec["cases"]}
    assert statuses == {"../models/quick.onnx": "benchmarked", "../models/heavy.onnx": "interrupted"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "timeout"),
    [(signal.SIGINT, None), (signal.SIGTERM, None), (signal.SIGTERM, 300)],
    ids=["SIGINT", "SIGTERM", "SIGTERM-child-process"],
)
def test_signal_during_export(tmp_path: Path, sig: signal.Signals, timeout: int | None) -> None:
    """The user's callable never returns; the signal stops it (in this process, or in the child process that
    runs exports under a case timeout: that child must be gone too)."""
    import psutil

    extra = {"case_timeout": timeout} if timeout else {}
    suite = _suite(tmp_path, ["quick.onnx", "slow.yaml"], iterations=50, warmup=0, **extra)
    proc, master, store, _ = _start(tmp_path, suite)
    marker = tmp_path / "slow.marker"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not marker.exists():
        read_until(master, r"$^", timeout=0.1)
    assert marker.exists(), "the export of the user's model never started"
    children = psutil.Process(proc.pid).children(recursive=True)
    stdout, tail = signal_and_collect(proc, master, sig)
    _common(proc, stdout, tail, sig, tmp_path)
    assert not store.exists() or not list(store.glob("*.json"))  # nothing was measured: no empty run record
    assert re.search(r"slow\.yaml.*interrupted", stdout), stdout
    assert "during the export" in stdout
    _gone, alive = psutil.wait_procs(children, timeout=15)  # the export's child process (case timeout) ends too
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
    if timeout:
        assert children, "the export under a case timeout did not run in a child process"


# ------------------------------------------------------------------------------------------------ case timeout
@pytest.mark.slow
def test_case_timeout_marks_a_never_ending_export_and_a_long_bench_timed_out(tmp_path: Path) -> None:
    """--case-timeout 6: the user's callable that loops forever is killed in its child process at 6 s; heavy.onnx's
    20000 timed runs (~13 s) stop at 6 s with their samples kept; quick.onnx (0.6 s) is benchmarked; exit 1."""
    import subprocess
    import sys

    suite = _suite(tmp_path, ["quick.onnx", "slow.yaml", "heavy.onnx"], iterations=20000, warmup=0)
    env = _env(tmp_path, SLOW_MARKER=str(tmp_path / "slow.marker"), COLUMNS="250")
    store = tmp_path / "store"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "edgedeploy.cli", "bench", "--suite", str(suite), "--out", str(store),
         "--case-timeout", "6", "--json"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    wall = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (tmp_path / "slow.marker").exists()  # the callable did run (and was stopped)
    doc = json.loads(proc.stdout)
    cases = {c["model"]: c for c in doc["cases"]}
    assert cases["../models/quick.onnx"]["status"] == "benchmarked"
    slow = cases["../models/slow.yaml"]
    assert slow["status"] == "timed out"
    assert "the export of ../models/slow.yaml to onnx (fp32) timed out after 6 s (case timeout)" == slow["reason"]
    heavy = cases["../models/heavy.onnx"]
    assert heavy["status"] == "timed out" and "timed out after 6 s" in heavy["reason"], heavy
    rec = _record(store)
    by_model = {r["model"]: r for r in rec["results"]}
    assert len(by_model["quick"]["samples_ms"]) == 20000
    kept = len(by_model["heavy"]["samples_ms"])
    assert by_model["heavy"]["status"] == "partial" and 0 < kept < 20000
    assert f"{kept} of 20000 samples kept" in heavy["reason"]
    assert not list((tmp_path / "cache").rglob(".edgedeploy-staging-*"))
    print(f"\ncase-timeout suite: {wall:.1f} s wall, heavy kept {kept} samples")


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--case-timeout", "0"], "--case-timeout must be between"),
        (["--case-timeout", "-5"], "--case-timeout must be between"),
        (["--case-timeout", "nan"], "--case-timeout must be between"),
    ],
)
def test_case_timeout_out_of_range_is_refused(tmp_path: Path, args: list[str], expect: str) -> None:
    from click.testing import CliRunner

    from edgedeploy.cli import main
    from tests.robust_util import one_line

    suite = _suite(tmp_path, ["quick.onnx"], iterations=5)
    res = CliRunner().invoke(main, ["bench", "--suite", str(suite), *args])
    assert res.exit_code == 2 and expect in one_line(res.stderr)
    suite.write_text(suite.read_text() + "case_timeout: 0\n")
    res = CliRunner().invoke(main, ["bench", "--suite", str(suite)])
    assert res.exit_code == 2 and "case_timeout" in one_line(res.stderr)


# ------------------------------------------------------------------------------------------------ an SSH board
@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_timing_on_an_ssh_board(tmp_path: Path, sig: signal.Signals) -> None:
    """The suite's device is a real sshd board (the path farm boards take too): the runner on the board is
    stopped, its samples so far (from its progress file) are stored as the partial case, exit 130 / 143."""
    import sys

    from tests.testbed.sshd import SSHServer
    from tests.testbed.sshd import skip_reason as sshd_skip

    why = sshd_skip()
    if why:
        pytest.skip(why)
    server = SSHServer(tmp_path).start()
    try:
        work = tmp_path / "boardwork"
        board = server.profile_yaml(tmp_path / "board.yaml", str(work), sys.executable, runtimes=["onnxruntime"])
        suite = _suite(tmp_path, ["quick.onnx", "heavy.onnx"], iterations=100000, warmup=0)
        suite.write_text(suite.read_text() + f"devices: [{board}]\n")
        proc, master, store, _ = _start(tmp_path, suite)
        deadline = time.monotonic() + 300
        progress_lines = 0
        while time.monotonic() < deadline:
            read_until(master, r"$^", timeout=0.2)
            if list(store.glob("*.json")):  # quick.onnx is done: heavy.onnx is timing on the board
                files = list((work / "runs").glob("*.samples")) if (work / "runs").is_dir() else []
                progress_lines = max([len(f.read_text().splitlines()) for f in files] or [0])
                if progress_lines >= 200:
                    break
        assert progress_lines >= 200, "heavy.onnx never reached 200 timed runs on the board"
        rec, heavy, _ = _stop_mid_heavy(proc, master, sig, tmp_path, store, 200)
        assert heavy["device"] == "board"
        cases = {c["model"]: c["status"] for c in rec["cases"]}
        assert cases == {"../models/quick.onnx": "benchmarked", "../models/heavy.onnx": "partial"}
        time.sleep(1.0)
        left = [ln for ln in subprocess_ps() if "runner" in ln and str(work) in ln]
        assert not left, left  # the runner on the board was stopped, not left timing
        assert not (work / ".lock").exists()  # the board's lock was released
    finally:
        server.stop()


def subprocess_ps() -> list[str]:
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        out.append(" ".join(p.info["cmdline"] or []))
    return out


@pytest.mark.slow
@pytest.mark.root
def test_sigterm_mid_timing_on_a_labgrid_farm_board(tmp_path: Path) -> None:
    """A real labgrid farm (coordinator, exporter, one sshd board): SIGTERM while heavy.onnx is timing on the farm
    board: its samples are kept (partial, naming the board), exit 143, and the place is released."""
    import sys

    import yaml

    from tests.testbed import labgrid as lg
    from tests.testbed.sshd import SSHServer
    from tests.testbed.sshd import skip_reason as sshd_skip

    why = sshd_skip() or lg.skip_reason()
    if why:
        pytest.skip(why)
    (tmp_path / "board").mkdir()
    server = SSHServer(tmp_path / "board").start()
    try:
        with lg.LabgridLab(tmp_path / "lab") as lab:
            lab.add_exporter("host-0", {"board-a": {"address": "127.0.0.1", "port": server.port, "username": "root"}})
            lab.add_place("board-a", "host-0/board-a/NetworkService", device="testboard")
            work = tmp_path / "work"
            prof = tmp_path / "farm.yaml"
            prof.write_text(yaml.safe_dump({
                "name": "testfarm", "transport": "labgrid", "coordinator": lab.address, "tags": {"device": "testboard"},
                "key_file": str(server.client_key), "known_hosts": str(server.known_hosts),
                "workdir": str(work / "{board}"), "python": sys.executable, "runtimes": ["onnxruntime"],
                "retries": 1, "retry_backoff_s": 0.2, "connect_timeout_s": 5, "reserve_timeout_s": 30,
            }))  # fmt: skip
            suite = _suite(tmp_path, ["quick.onnx", "heavy.onnx"], iterations=100000, warmup=0)
            suite.write_text(suite.read_text() + f"devices: [{prof}]\n")
            proc, master, store, _ = _start(tmp_path, suite)
            deadline = time.monotonic() + 400
            lines = 0
            while time.monotonic() < deadline and lines < 200:
                read_until(master, r"$^", timeout=0.2)
                if list(store.glob("*.json")):
                    files = list(work.glob("*/runs/*.samples"))
                    lines = max([len(f.read_text().splitlines()) for f in files] or [0])
            assert lines >= 200, "heavy.onnx never reached 200 timed runs on the farm board"
            stdout, tail = signal_and_collect(proc, master, signal.SIGTERM)
            _common(proc, stdout, tail, signal.SIGTERM, tmp_path)
            rec = _record(store)
            by_model = {r["model"]: r for r in rec["results"]}
            assert len(by_model["quick"]["samples_ms"]) == 100000
            heavy = by_model["heavy"]
            assert heavy["status"] == "partial" and 200 <= len(heavy["samples_ms"]) < 100000
            assert heavy["board"] == "board-a" and heavy["device"] == "testfarm"
            assert {c["model"]: c["status"] for c in rec["cases"]}["../models/heavy.onnx"] == "partial"
            assert lab.place_acquired_by("board-a") is None  # released
    finally:
        server.stop()
