"""Markdown and HTML reports: contents, self-containment, and the page rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgedeploy.results.compare import compare_results
from edgedeploy.results.report import comparison_markdown, render_html, results_markdown
from edgedeploy.results.result import BenchResult

PLOT_IDS = ("plot-distributions", "plot-history", "plot-formats")


def result(model: str, fmt: str, scale: float, seed: int, commit: str, ts: str) -> BenchResult:
    rng = np.random.default_rng(seed)
    return BenchResult(
        model=model,
        format=fmt,
        runtime={"onnx": "onnxruntime", "mnn": "mnn", "tflite": "litert"}[fmt],
        device="rk3288",
        threads=4,
        iterations=120,
        warmup=10,
        samples_ms=(20.0 * scale * np.exp(rng.normal(0, 0.05, 120))).tolist(),
        git_commit=commit,
        timestamp=ts,
    )


@pytest.fixture
def history() -> list[BenchResult]:
    out = []
    for i, commit in enumerate(["aaa1111", "bbb2222", "ccc3333"]):
        ts = f"2026-11-2{i}T06:00:00+00:00"
        for j, (model, fmt, scale) in enumerate(
            [("edgeformer_s", "onnx", 1.0), ("edgeformer_s", "mnn", 1.25), ("mobilevit_s", "tflite", 1.5)]
        ):
            slow = 1.3 if (i == 2 and model == "mobilevit_s") else 1.0
            out.append(result(model, fmt, scale * slow, seed=10 * i + j, commit=commit, ts=ts))
    return out


def test_markdown_names_models_regressions_first(history: list[BenchResult]) -> None:
    base = [r for r in history if r.git_commit == "aaa1111"]
    cur = [r for r in history if r.git_commit == "ccc3333"]
    md = comparison_markdown(compare_results(base, cur, baseline_label="main", current_label="pr-42"))
    rows = [line for line in md.splitlines() if line.startswith("| ") and "verdict" not in line]
    assert len(rows) == 3
    assert "mobilevit_s" in rows[0] and "regression" in rows[0]
    assert all("edgeformer_s" in r for r in rows[1:])
    assert "**1 regression**" in md and "`main` → `pr-42`" in md
    assert "Mann–Whitney" in md and "Hodges–Lehmann" in md


def test_markdown_without_regression_says_so(history: list[BenchResult]) -> None:
    base = [r for r in history if r.git_commit == "aaa1111"]
    md = comparison_markdown(compare_results(base, base))
    assert "No latency regression" in md
    summary = results_markdown(history)
    assert "edgeformer_s" in summary and "mobilevit_s" in summary and "ccc3333" in summary


def test_html_is_self_contained_with_three_plots(history: list[BenchResult]) -> None:
    page = render_html(history)
    for pid in PLOT_IDS:
        m = re.search(rf"<figure class='plot' id='{pid}'>(.*?)</figure>", page, re.S)
        assert m is not None, pid
        assert "<svg" in m.group(1) and m.group(1).count("<path") > 10
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "ccc3333" in page and "mobilevit_s" in page


def test_html_with_comparison_has_table_and_rerun_free_plots(history: list[BenchResult]) -> None:
    base = [r for r in history if r.git_commit == "aaa1111"]
    cur = [r for r in history if r.git_commit == "ccc3333"]
    page = render_html(cur, compare_results(base, cur))
    assert "id='comparison-table'" in page and "<tr class='regression'>" in page
    with pytest.raises(ValueError):
        render_html([])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(history: list[BenchResult], tmp_path: Path) -> None:
    from PIL import Image

    page = tmp_path / "report.html"
    page.write_text(render_html(history))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = page.as_uri()
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for pid in PLOT_IDS:
        m = re.search(rf'<figure class="plot" id="{pid}">(.*?)</figure>', dom.stdout, re.S)
        assert m is not None, f"{pid} not in the rendered DOM"
        assert "<svg" in m.group(1) and m.group(1).count("<path") > 10
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,3000", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    # plots drawn: a good share of the page is non-white and there are many distinct grey levels (lines, text, fills)
    assert (img < 245).mean() > 0.03
    assert len(np.unique(img.astype(np.uint8))) > 50
