"""Memory per case (issue 20): peak_rss_mb / rss_delta_mb measured in a fresh child process that holds only the
runtime, artifact_bytes, and load_ms / first_ms / peak_rss_mb carried into suite tables, reports and ``compare``.

Real runtimes (onnxruntime, MNN), real exports of the zoo models; nothing mocked.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

import edgedeploy
from edgedeploy.bench.memory import MemoryRequest, child_command, measure_host_memory
from edgedeploy.results.figures import memory_verdict
from edgedeploy.results.result import BenchResult
from tests.conftest import run_cli

RUNTIMES = ("onnxruntime", "mnn")


@cache
def _bench(model: str, runtime: str, precision: str = "fp32") -> BenchResult:
    return edgedeploy.bench(model, runtime=runtime, precision=precision, iterations=3, warmup=1)


def _weight_bytes(model: str) -> int:
    """Bytes of the fp32 weights: the initializers of the model's fp32 ONNX export."""
    import onnx
    from onnx import numpy_helper

    path = Path(_bench(model, "onnxruntime").artifact["path"])
    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_edgeformer_s_rss_delta_covers_its_weights_and_int8_is_smaller(runtime: str) -> None:
    fp32 = _bench("edgeformer_s", runtime, "fp32")
    int8 = _bench("edgeformer_s", runtime, "int8")
    weights = _weight_bytes("edgeformer_s")
    print(
        f"\nedgeformer_s {runtime}: weights {weights / 2**20:.1f} MB; fp32 peak {fp32.peak_rss_mb:.1f} MB, delta "
        f"{fp32.rss_delta_mb:.1f} MB; int8 peak {int8.peak_rss_mb:.1f} MB, delta {int8.rss_delta_mb:.1f}"
    )
    assert weights > 15 * 2**20  # ~5.6 M parameters
    assert fp32.rss_delta_mb * 2**20 >= 0.8 * weights
    assert int8.rss_delta_mb < fp32.rss_delta_mb
    assert int8.peak_rss_mb < fp32.peak_rss_mb
    for r in (fp32, int8):
        assert r.not_measured == {}
        assert r.memory["torch_imported"] is False  # the child held only the runtime
        assert r.memory["hwm_reset"] is True
        assert r.peak_rss_mb > r.rss_delta_mb > 0
        assert r.artifact_bytes == Path(r.artifact["path"]).stat().st_size
        assert r.load_ms is not None and r.first_ms is not None
    assert int8.artifact_bytes < fp32.artifact_bytes / 2


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_bigger_model_has_a_bigger_peak(runtime: str) -> None:
    small, big = _bench("mobilevit_xxs", runtime), _bench("edgeformer_s", runtime)
    assert big.artifact_bytes > 2 * small.artifact_bytes
    assert big.peak_rss_mb > small.peak_rss_mb
    assert big.rss_delta_mb > small.rss_delta_mb


def test_the_child_holds_only_the_runtime() -> None:
    req = MemoryRequest(Path("x.onnx"), "onnxruntime", 1, (1, 3, 8, 8))
    argv = child_command(req)
    assert argv[1] == "-I" and argv[2].endswith("runner.py")  # isolated: edgedeploy and torch not importable


def test_torch_runtime_memory_is_null_with_a_reason_not_zero() -> None:
    r = edgedeploy.bench("mobilevit_xxs", runtime="torch", iterations=2, warmup=0)
    assert r.peak_rss_mb is None and r.rss_delta_mb is None and r.artifact_bytes is None
    assert "torch" in r.not_measured["peak_rss_mb"] and r.not_measured["artifact_bytes"]
    doc = json.loads(r.to_json())
    assert doc["peak_rss_mb"] is None and doc["not_measured"]["rss_delta_mb"]


def test_a_failing_child_gives_null_and_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    reading = measure_host_memory(MemoryRequest(bad, "onnxruntime", 1, (1, 3, 8, 8)))
    assert reading.peak_rss_mb is None and "memory child failed" in reading.not_measured["peak_rss_mb"]


def test_memory_rule() -> None:
    assert memory_verdict(100.0, 115.0) == "regression"
    assert memory_verdict(100.0, 105.0) == "unchanged"
    assert memory_verdict(10.0, 11.5) == "unchanged"  # +15 % but only 1.5 MB: below the 2 MB floor
    assert memory_verdict(100.0, 80.0) == "improvement"
    assert memory_verdict(None, 80.0) == "unmeasured"


@pytest.mark.slow
def test_reports_and_compare_show_load_first_and_peak(tmp_path: Path) -> None:
    from edgedeploy.results.report import comparison_markdown, render_html, results_markdown

    base = _bench("mobilevit_xxs", "onnxruntime")
    md = results_markdown([base])
    for col in ("load ms", "first ms", "peak RSS MB"):
        assert col in md
    assert f"{base.peak_rss_mb:.1f}" in md and f"{base.load_ms:.1f}" in md and f"{base.first_ms:.1f}" in md
    page = render_html([base])
    assert "peak RSS MB" in page and f"{base.peak_rss_mb:.1f}" in page
    # a current run whose process holds 30 % more memory: same samples (no latency change), a memory regression
    cur = base.model_copy(update={"peak_rss_mb": base.peak_rss_mb * 1.3, "timestamp": "2099-01-01T00:00:00+00:00"})
    report = edgedeploy.compare([base], [cur])
    (row,) = report.rows
    assert row.verdict != "regression" and row.memory_verdict == "regression"
    assert report.regressions == [row] and report.exit_code == 1
    cmp_md = comparison_markdown(report)
    assert "peak RSS MB" in cmp_md and f"{base.peak_rss_mb:.1f} → {cur.peak_rss_mb:.1f}" in cmp_md
    assert f"{base.load_ms:.1f} → {base.load_ms:.1f}" in cmp_md
    assert "peak RSS MB" in render_html([base, cur], report)
    same = edgedeploy.compare([base], [base.model_copy(update={"timestamp": "2099-01-01T00:00:00+00:00"})])
    assert same.rows[0].memory_verdict == "unchanged" and same.regressions == []  # 3 samples: latency insufficient
    # the CLI: the compare table and its exit code
    (tmp_path / "b.json").write_text(base.to_json())
    (tmp_path / "c.json").write_text(cur.to_json())
    p = run_cli("compare", str(tmp_path / "b.json"), str(tmp_path / "c.json"), "--json", str(tmp_path / "r.json"))
    assert p.returncode == 1, p.stderr
    # the table's memory column says regression (the note column wraps: the latency verdict is "insufficient")
    assert "peak RSS MB" in p.stdout and "│ regression │" in p.stdout and "memory" in p.stdout
    (doc,) = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert doc["memory_verdict"] == "regression"
    assert doc["figures"]["current"]["peak_rss_mb"] == pytest.approx(cur.peak_rss_mb)
    assert doc["figures"]["baseline"]["load_ms"] == pytest.approx(base.load_ms)


@pytest.mark.slow
def test_suite_table_and_markdown_show_the_figures(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: mem\nmodels: [mobilevit_xxs]\nformats: [onnx]\nruntimes: [onnxruntime]\ndevices: [local]\n"
        "iterations: 3\nwarmup: 1\nruns: 1\n"
    )
    md = tmp_path / "t.md"
    p = run_cli("bench", "--suite", str(suite), "--markdown", str(md), "--out", str(tmp_path / "store"), timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    text = md.read_text()
    header, _, row = (line for line in text.splitlines() if line.startswith("|"))
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")], strict=True))
    for col in ("artifact MB", "load ms", "first ms", "peak RSS MB"):
        assert cells[col] not in ("", "n/a", "–") and float(cells[col]) > 0, (col, cells)
    assert "peak RSS MB" in p.stdout
