"""``bench --matrix`` and ``bench --sustained`` on the host (issue 20): real exports, real runtimes, real CLI."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from edgedeploy.bench.matrix import MatrixCase, MatrixReport, plan, thread_counts
from edgedeploy.bench.sustained import summarize, windows
from edgedeploy.errors import ConfigError
from tests.conftest import run_cli


def test_thread_counts_and_plan() -> None:
    assert thread_counts(4, None) == ((1, 2, 3, 4), [])
    assert thread_counts(None, None)[0] == (1,) and "unknown" in thread_counts(None, None)[1][0]
    assert thread_counts(2, (2, 1, 2)) == ((2, 1), [])
    with pytest.raises(ConfigError, match="outside"):
        thread_counts(2, (3,))
    cases = plan(["onnxruntime", "mnn", "torch"], (1, 2))
    keys = {(c.format, c.precision, c.runtime, c.threads) for c in cases if c.status == "pending"}
    assert ("onnx", "int8", "onnxruntime", 2) in keys and ("mnn", "fp16", "mnn", 1) in keys
    assert len(keys) == 2 * 3 * 2  # two formats x fp32 / fp16 / int8 x two thread counts
    (torch_case,) = [c for c in cases if c.runtime == "torch"]
    assert torch_case.status == "skipped" and "reference" in torch_case.reason


def test_best_needs_parity() -> None:
    report = MatrixReport("m", "local", [MatrixCase("onnx", "fp32", "onnxruntime", 1, "export failed", "boom")])
    assert report.fastest() is None and report.best()["reason"]
    assert "no case passed" in report.best_line()


def test_sustained_windows() -> None:
    assert windows(600)[0] == 60.0
    w, note = windows(30)
    assert w == 10.0 and "third" in note
    trace = [{"t_s": 0, "temp_c": None, "freq_khz": None}]
    s = summarize({"samples_ms": [1.0, 1.0, 2.0, 2.0, 3.0, 3.0], "t_s": [1, 2, 13, 16, 25, 29], "duration_s": 30,
                   "thermal": trace, "temperature_reason": "none here"})  # fmt: skip
    assert s["first_window_p50_ms"] == 1.0 and s["last_window_p50_ms"] == 3.0 and s["throttle_ratio"] == 3.0
    assert s["temperature_c_max"] is None and s["not_measured"]["temperature"] == "none here"
    hot = summarize({"samples_ms": [1.0, 1.0], "t_s": [1, 2], "duration_s": 3,
                     "thermal": [{"t_s": 0, "temp_c": {"cpu": 40.0, "gpu": 45.5}, "freq_khz": {"0": 1800000}},
                                 {"t_s": 2, "temp_c": {"cpu": 61.0}, "freq_khz": {"0": 1200000}}]})  # fmt: skip
    assert (hot["temperature_c_first"], hot["temperature_c_max"]) == (45.5, 61.0)
    assert (hot["freq_mhz_first"], hot["freq_mhz_last"]) == (1800.0, 1200.0) and hot["not_measured"] == {}


def test_bad_matrix_and_sustained_input_is_exit_2() -> None:
    p = run_cli("bench", "mobilevit_xxs", "--matrix", "--threads-sweep", "1,x")
    assert p.returncode == 2 and "threads-sweep" in p.stderr
    p = run_cli("bench", "mobilevit_xxs", "--threads-sweep", "1")
    assert p.returncode == 2 and "belong to --matrix" in p.stderr
    p = run_cli("bench", "mobilevit_xxs", "--matrix", "--sustained", "5")
    assert p.returncode == 2 and "--sustained" in p.stderr
    p = run_cli("bench", "mobilevit_xxs", "--sustained", "0")
    assert p.returncode == 2 and "--sustained" in p.stderr


@pytest.mark.slow
def test_matrix_mobilevit_xxs_local_ends_with_a_best_case_that_passed_parity(tmp_path: Path) -> None:
    p = run_cli("bench", "mobilevit_xxs", "--matrix", "--threads-sweep", "1", "--iterations", "3", "--warmup", "1",
                "--max-minutes", "8", "--json", "--out", str(tmp_path / "store"), timeout=1800)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    best = doc["best"]["fastest"]
    assert best is not None and best["parity"] == "passed" and best["status"] == "benchmarked"
    assert best["median_ms"] == min(c["median_ms"] for c in doc["cases"] if c["parity"] == "passed")
    small = doc["best"]["smallest_memory"]
    assert small["parity"] == "passed" and small["peak_rss_mb"] == min(
        c["peak_rss_mb"] for c in doc["cases"] if c["parity"] == "passed" and c["peak_rss_mb"] is not None
    )
    done = [c for c in doc["cases"] if c["status"] == "benchmarked"]
    assert {("onnx", "onnxruntime"), ("mnn", "mnn")} <= {(c["format"], c["runtime"]) for c in done}
    assert all(c["reason"] for c in doc["cases"] if c["status"] not in ("benchmarked",))  # skipped cases say why
    for c in done:
        assert c["threads"] == 1 and c["load_ms"] and c["first_ms"] and c["peak_rss_mb"] and c["artifact_bytes"]
    assert doc["run_id"] and Path(doc["record"]).is_file()  # the suite schema: one stored run
    # the ranked table and the one best line (stderr with --json)
    assert "fastest passing parity" in p.stderr and "smallest memory passing parity" in p.stderr


@pytest.mark.slow
def test_max_minutes_skips_the_rest_with_the_reason(tmp_path: Path) -> None:
    p = run_cli("bench", "mobilevit_xxs", "--matrix", "--threads-sweep", "1", "--iterations", "2", "--warmup", "0",
                "--max-minutes", "0.01", "--json", "--out", str(tmp_path / "store"), timeout=900)  # fmt: skip
    doc = json.loads(p.stdout)
    skipped = [c for c in doc["cases"] if c["status"] == "skipped" and c["runtime"] != "torch"]
    assert skipped and all("--max-minutes 0.01 reached" in c["reason"] for c in skipped)
    assert sum(c["status"] == "benchmarked" for c in doc["cases"]) <= 1  # only the case started before the bound


@pytest.mark.slow
def test_sustained_30s_on_the_host_gives_throttle_ratio_and_temperature_null_with_reason(tmp_path: Path) -> None:
    out = tmp_path / "sustained.json"
    p = run_cli("bench", "mobilevit_xxs", "--runtime", "onnxruntime", "--sustained", "30", "--threads", "1",
                "--out", str(out), timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert "throttle_ratio" in p.stdout
    r = json.loads(out.read_text())
    s = r["sustained"]
    assert 29.5 <= s["duration_s"] <= 40 and s["iterations"] == len(r["samples_ms"]) == len(s["t_s"]) > 30
    assert s["t_s"] == sorted(s["t_s"]) and s["t_s"][-1] <= s["duration_s"] + 1
    assert s["throttle_ratio"] == pytest.approx(s["last_window_p50_ms"] / s["first_window_p50_ms"])
    assert s["window_s"] == pytest.approx(s["duration_s"] / 3) and "third" in s["window_note"]
    assert len(s["thermal_trace"]) >= 25  # about one reading a second
    if not Path("/sys/class/thermal/thermal_zone0/temp").exists():  # this VM: none
        assert s["temperature_c_max"] is None
        assert r["not_measured"]["temperature"] and s["not_measured"]["temperature"]
    assert r["peak_rss_mb"] > 0 and r["memory"]["torch_imported"] is False
    html = tmp_path / "r.html"
    p = run_cli("report", str(out), "--html", str(html))
    assert p.returncode == 0, p.stderr
    page = html.read_text()
    assert "plot-sustained" in page and "throttle_ratio" in page
    if s["temperature_c_max"] is None:
        assert "temperature not measured" in page


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_sustained_keeps_the_samples(tmp_path: Path, sig: signal.Signals) -> None:
    """A real signal to a real `bench --sustained` process mid-phase: the runner child stops its phase and reports,
    the samples measured are printed and stored as `partial`, exit 130 / 143."""
    from tests.robust_util import tiny_onnx
    from tests.test_faults import CLI, _env, read_until, signal_and_collect, spawn_on_pty

    onnx = tiny_onnx(tmp_path / "tiny.onnx")
    out = tmp_path / "r.json"
    argv = [*CLI, "bench", str(onnx), "--sustained", "120", "--threads", "1", "--json", "--out", str(out)]
    proc, master = spawn_on_pty(argv, _env(tmp_path))
    seen, m = read_until(master, r"sustained run", timeout=240)
    assert m, seen[-2000:]
    time.sleep(5)  # well inside the 120 s phase
    stdout, tail = signal_and_collect(proc, master, sig)
    assert proc.returncode == 128 + sig, tail[-2000:]
    doc = json.loads(stdout)
    assert doc["status"] == "partial" and len(doc["samples_ms"]) > 10
    assert doc["sustained"]["duration_s"] < 60 and doc["sustained"]["iterations"] == len(doc["samples_ms"])
    assert any(f"interrupted ({sig.name})" in w for w in doc["warnings"]), doc["warnings"]
    assert json.loads(out.read_text())["samples_ms"] == doc["samples_ms"]  # stored too
