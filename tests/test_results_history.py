"""Change points over stored runs (``edgedeploy results history``, ruptures PELT) and their marks in the HTML."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgedeploy.errors import MissingExtraError
from edgedeploy.results.cli import main
from edgedeploy.results.history import HistoryOptions, history
from edgedeploy.results.result import BenchResult


def runs(medians: list[float], model: str = "edgeformer_s", seed: int = 0) -> list[BenchResult]:
    rng = np.random.default_rng(seed)
    return [
        BenchResult(
            model=model,
            format="mnn",
            runtime="mnn",
            device="rk3288",
            threads=4,
            iterations=100,
            warmup=10,
            samples_ms=(m * np.exp(rng.normal(0, 0.02, 100))).tolist(),
            git_commit=f"c{i:02d}abcdef",
            timestamp=f"2026-12-{1 + i // 20:02d}T{i % 20:02d}:00:00+00:00",
        )
        for i, m in enumerate(medians)
    ]


def noisy(level: float, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return (level * np.exp(rng.normal(0, 0.01, n))).tolist()


def test_a_10_percent_step_is_found_at_its_commit() -> None:
    rs = runs(noisy(20.0, 8, 1) + noisy(22.0, 8, 2))
    (h,) = history(rs)
    assert [cp.index for cp in h.change_points] == [8]
    cp = h.change_points[0]
    assert cp.commit == "c08abcdef" and 8 < cp.change_pct < 12
    assert cp.before_ms == pytest.approx(20.0, rel=0.03) and cp.after_ms == pytest.approx(22.0, rel=0.03)


def test_a_flat_history_has_no_change_point_and_keys_filter() -> None:
    rs = runs(noisy(20.0, 16, 3)) + runs(noisy(30.0, 6, 4) + noisy(24.0, 6, 5), model="mobilevit_s")
    hist = {h.key[0]: h for h in history(rs)}
    assert hist["edgeformer_s"].change_points == []
    assert [round(cp.change_pct) for cp in hist["mobilevit_s"].change_points] == [-20]
    only = history(rs, HistoryOptions(keys=("mobilevit*",)))
    assert [h.key[0] for h in only] == ["mobilevit_s"]


def test_cli_history_and_html_marks(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    for i, r in enumerate(runs(noisy(20.0, 6, 6) + noisy(23.0, 6, 7))):
        (store / f"run{i:02d}.json").write_text(json.dumps([json.loads(r.to_json())]))
    html, md = tmp_path / "h.html", tmp_path / "h.md"
    res = CliRunner().invoke(main, ["results", "history", "--store", str(store), "--html", str(html),
                                    "--markdown", str(md)], catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "c06abcde" in res.output and "1 change point" in res.output
    assert "class='change-point'" in html.read_text() and "c06abcdef" in html.read_text()
    assert "| 6 | c06abcdef |" in md.read_text() and " % |" in md.read_text()
    res = CliRunner().invoke(main, ["results", "history", "--store", str(store), "--key", "nothing*"])
    assert res.exit_code == 2 and "no stored key matches" in res.output


def test_without_ruptures_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ruptures", None)  # what an environment without the package gives
    with pytest.raises(MissingExtraError, match=r"edgedeploy\[report\]"):
        history(runs(noisy(20.0, 8, 1)))
