"""A board farm on the real labgrid: coordinator and exporters on loopback, two real sshd boards, places with tags.

The suite (3 small zoo models × ONNX / MNN on onnxruntime / mnn = 6 cases) is exported once per session before any
timing. Root (sshd in a private mount namespace) and labgrid (extra ``farm``) are needed; skipped otherwise.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from edgedeploy.bench.suite_run import run_suite
from edgedeploy.suite import Suite
from tests.testbed import labgrid as lg
from tests.testbed.sshd import SSHServer
from tests.testbed.sshd import skip_reason as sshd_skip

_why = sshd_skip() or lg.skip_reason()
pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(_why is not None, reason=_why or ""),
    pytest.mark.usefixtures("private_locks"),
]

MODELS = ["mobilevit_xxs", "emo_1m", "edgevit_xxs"]
SUITE = {"name": "farm-test", "models": MODELS, "formats": ["onnx", "mnn"], "runtimes": ["onnxruntime", "mnn"],
         "iterations": 30, "warmup": 3, "threads": 1}  # fmt: skip


@dataclass
class Farm:
    lab: lg.LabgridLab
    boards: dict[str, SSHServer]  # place name -> its sshd
    tmp: Path

    def profile(self, path: Path, **extra: object) -> Path:
        first = next(iter(self.boards.values()))
        data = {
            "name": "testfarm", "transport": "labgrid", "coordinator": self.lab.address,
            "tags": {"device": "testboard"},
            "key_file": str(first.client_key), "known_hosts": str(self.tmp / "known_hosts"),
            "workdir": str(self.tmp / "work" / "{board}"), "python": sys.executable,
            "runtimes": ["onnxruntime", "mnn"],
            "retries": 1, "retry_backoff_s": 0.2, "connect_timeout_s": 5, "reserve_timeout_s": 30, **extra,
        }  # fmt: skip
        path.write_text(yaml.safe_dump(data))
        return path


@pytest.fixture(scope="module")
def artifacts() -> None:
    """Export every artifact of the suite once (the cache), before anything is timed."""
    from edgedeploy.export.pipeline import cached_export

    for m in MODELS:
        for f in ("onnx", "mnn"):
            assert cached_export(m, f).parity.status == "passed"


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory, artifacts: None) -> Iterator[Farm]:
    tmp = tmp_path_factory.mktemp("farm")
    boards: dict[str, SSHServer] = {}
    try:
        for name in ("board-a", "board-b"):
            (tmp / name).mkdir()
            boards[name] = SSHServer(tmp / name).start()
        first = boards["board-a"]
        for s in boards.values():  # one client key for the farm; every board's own host key in one known_hosts
            (s.tmp / "authorized_keys").write_text((first.tmp / "authorized_keys").read_text())
        (tmp / "known_hosts").write_text("".join(s.known_hosts.read_text() for s in boards.values()))
        with lg.LabgridLab(tmp / "lab") as lab:
            for i, (name, s) in enumerate(boards.items()):  # an exporter per host, one board hanging off each
                lab.add_exporter(f"host-{i}", {name: {"address": "127.0.0.1", "port": s.port, "username": "root"}})
                lab.add_place(name, f"host-{i}/{name}/NetworkService", device="testboard", soc="emulated")
            lab.add_place("other-board", "host-9/x/NetworkService", device="otherboard")  # must not be reserved
            yield Farm(lab, boards, tmp)
    finally:
        for s in boards.values():
            s.stop()


def _released(farm: Farm) -> None:
    for place in (*farm.boards, "other-board"):
        assert farm.lab.place_acquired_by(place) is None, place
    assert "Reservation" not in farm.lab.reservations()


def _no_overlap(results: list) -> None:
    by_board: dict[str, list] = {}
    for r in results:
        by_board.setdefault(r.board, []).append(r)
    for board, rs in by_board.items():
        rs.sort(key=lambda r: r.started_at)
        for a, b in itertools.pairwise(rs):
            assert a.finished_at <= b.started_at, f"two cases overlap on {board}: {a.model} and {b.model}"


def test_farm_suite_in_parallel_faster_than_one_board(farm: Farm, tmp_path: Path) -> None:
    """Six cases on two boards in parallel: every case benchmarked, each result names its board, no two cases
    overlap on one board, and the wall time is at most 0.75x that of the same suite on one board (measured
    interleaved in this process: one board, then two boards; a second pair only if the first misses; paired
    ratios, printed with the load average)."""
    suite = Suite(**SUITE)
    one = farm.profile(tmp_path / "one.yaml", max_boards=1)
    two = farm.profile(tmp_path / "two.yaml")
    walls: dict[str, list[float]] = {"one": [], "two": []}
    last = None
    for rep in range(2):
        for label, prof in (("one", one), ("two", two)):
            t0 = time.monotonic()
            report = run_suite(suite, [str(prof)], tmp_path / f"store-{label}-{rep}")
            walls[label].append(time.monotonic() - t0)
            assert report.ok, [(c.case.key, c.status, c.reason) for c in report.cases]
            assert len(report.cases) == 6 and all(c.status == "benchmarked" for c in report.cases)
            stored = json.loads(report.record.read_text())
            results = [r for r in report.cases for r in r.results]
            assert len(stored["results"]) == 6 == len(results)
            assert {r["board"] for r in stored["results"]} <= set(farm.boards)
            assert all(r.device == "testfarm" and r.started_at and r.finished_at for r in results)
            _no_overlap(results)
            if label == "two":
                assert {r.board for r in results} == set(farm.boards), "both boards must have run cases"
                last = report
            else:
                assert len({r.board for r in results}) == 1
            _released(farm)
        if walls["two"][-1] <= 0.75 * walls["one"][-1]:
            break  # the first pair already shows it; a second pair only when load noise hid it
    ratios = [t / o for t, o in zip(walls["two"], walls["one"], strict=True)]
    load = os.getloadavg()
    print(f"farm wall times (s): one board {walls['one']}, two boards {walls['two']}; paired ratios {ratios}; "
          f"load average {load}")  # fmt: skip
    assert last is not None
    assert min(ratios) <= 0.75, f"two boards took {ratios} x the one-board wall time (load {load})"


def test_cli_farm_json_one_model_and_ctrl_c_releases(farm: Farm, tmp_path: Path) -> None:
    """The real CLI: `bench --suite FILE --device FARM --json`; `bench MODEL --device FARM`; and Ctrl-C mid-suite
    exits 130 with what was measured stored and every place released."""
    from tests.conftest import run_cli

    prof = farm.profile(tmp_path / "farm.yaml")
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        yaml.safe_dump({**SUITE, "models": ["emo_1m"], "iterations": 10, "devices": ["not-this-one"]})
    )
    env = {"EDGEDEPLOY_LOCK_DIR": str(tmp_path / "locks")}
    p = run_cli("bench", "--suite", str(suite_file), "--device", str(prof), "--json", "--out", str(tmp_path / "s1"),
                env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    cases = json.loads(p.stdout)["cases"]
    assert len(cases) == 2 and {c["status"] for c in cases} == {"benchmarked"}
    assert {c["board"] for c in cases} <= set(farm.boards) and all(c["median_ms"] > 0 for c in cases)
    assert all(c["peak_rss_mb"] > c["rss_delta_mb"] > 0 and c["artifact_bytes"] > 0 for c in cases)  # board runner's
    assert set(cases[0]) >= {"model", "format", "precision", "runtime", "device", "board", "status", "reason",
                             "median_ms"}  # fmt: skip
    _released(farm)
    # what `compare --confirm` re-runs: one model on the farm, --out a .json file (a list of BenchResults)
    p = run_cli("bench", "emo_1m", "--device", str(prof), "--runtime", "onnxruntime", "--iterations", "5", "--json",
                "--out", str(tmp_path / "r.json"), env={**env, "EDGEDEPLOY_RESULTS": str(tmp_path / "s2")})  # fmt: skip
    assert p.returncode == 0, p.stderr
    (case,) = json.loads(p.stdout)["cases"]
    assert case["status"] == "benchmarked" and case["board"] in farm.boards
    from edgedeploy.results.sources import load_source

    (res,) = load_source(tmp_path / "r.json")
    assert res.board == case["board"] and len(res.samples_ms) == 5 and res.device == "testfarm"
    _released(farm)
    # Ctrl-C mid-suite
    store = tmp_path / "s3"
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump({**SUITE, "models": ["emo_1m", "mobilevit_xxs"], "iterations": 200}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgedeploy.cli", "bench", "--suite", str(slow), "--device", str(prof), "--out",
         str(store)], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(store.glob("*.json")):
        time.sleep(0.1)
    assert list(store.glob("*.json")), "no result stored within 240 s"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (record,) = store.glob("*.json")
    assert len(json.loads(record.read_text())["results"]) >= 1
    _released(farm)
    for board in farm.boards:  # no board is left locked by the interrupted run
        assert not (farm.tmp / "work" / board / ".lock").exists(), board


def test_busy_place_is_left_to_its_holder(farm: Farm, tmp_path: Path) -> None:
    """A place someone else holds (acquired with labgrid-client) is not used and not released by the suite; the
    free board runs every case, and the suite starts without waiting for the busy one."""
    farm.lab.client("-p", "board-a", "acquire")
    try:
        t0 = time.monotonic()
        report = run_suite(Suite(**{**SUITE, "models": ["emo_1m"], "iterations": 5}), [str(farm.profile(
            tmp_path / "two.yaml"))], tmp_path / "store")  # fmt: skip
        assert report.ok and {r.board for c in report.cases for r in c.results} == {"board-b"}
        assert list(report.boards) == ["board-b"]
        assert time.monotonic() - t0 < 120
        assert farm.lab.place_acquired_by("board-a") is not None  # still the other holder's
        assert farm.lab.place_acquired_by("board-b") is None
    finally:
        farm.lab.client("-p", "board-a", "release")
    _released(farm)


def _kill_board(s: SSHServer) -> None:
    """What a board dying does: its sshd and every open session go away (new connections are refused)."""
    sessions = s.session_pids()
    s.stop()
    for pid in sessions:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_killed_board_hands_its_cases_to_the_other(farm: Farm, tmp_path: Path) -> None:
    """board-b dies in the middle of its second case (after one result stored, while its runner is timing): every
    case is still benchmarked, the rest on board-a, and what board-b measured before it died is kept in the store.
    Runs last in this module: board-b stays dead."""
    suite = Suite(**{**SUITE, "iterations": 80})
    prof = farm.profile(tmp_path / "two.yaml")
    store = tmp_path / "store"
    runs_b = farm.tmp / "work" / "board-b" / "runs"
    killed: list[str] = []
    stale = set(runs_b.glob("*.samples")) if runs_b.is_dir() else set()  # left by the interrupted run above

    def killer() -> None:  # bounded: 300 s
        deadline = time.monotonic() + 300
        stored_b = False
        while time.monotonic() < deadline:
            for f in store.glob("*.json") if store.is_dir() and not stored_b else []:
                with contextlib.suppress(ValueError, KeyError, OSError):
                    stored_b = any(r["board"] == "board-b" for r in json.loads(f.read_text())["results"])
            if stored_b:
                for f in set(runs_b.glob("*.samples")) - stale if runs_b.is_dir() else []:
                    with contextlib.suppress(OSError):
                        if len(f.read_text().splitlines()) >= 5:  # board-b's runner is timing its second case
                            _kill_board(farm.boards["board-b"])
                            killed.append(f.name)
                            return
            time.sleep(0.02)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    report = run_suite(suite, [str(prof)], store)
    th.join(timeout=5)
    assert killed, "board-b was never caught timing its second case"
    assert report.ok and all(c.status == "benchmarked" for c in report.cases), [c.reason for c in report.cases]
    assert report.boards["board-b"], "board-b must be reported as dropped out"
    stored = json.loads(report.record.read_text())["results"]
    on_b = [r for r in stored if r["board"] == "board-b"]
    assert any(r["status"] == "complete" for r in on_b)  # what it measured before it died is kept
    partial = [r for r in on_b if len(r["samples_ms"]) < r["iterations"]]
    assert all(r["status"] == "partial" for r in partial)
    for c in report.cases:  # every case has a complete run
        assert c.complete, c.case.key
    complete_b = [r for c in report.cases for r in c.complete if r.board == "board-b"]
    complete_a = [r for c in report.cases for r in c.complete if r.board == "board-a"]
    assert len(complete_a) + len(complete_b) == 6 and len(complete_a) >= 4
    _no_overlap([r for c in report.cases for r in c.complete])
    _released(farm)
    print(f"killed board-b mid-case: {len(complete_b)} complete and {len(partial)} partial result(s) kept from it "
          f"({[len(r['samples_ms']) for r in partial]} samples), {len(complete_a)} cases on board-a; "
          f"board-b dropped: {report.boards['board-b']}")  # fmt: skip
