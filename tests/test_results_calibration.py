"""The calibration benchmark's scoring (benchmarks/regression_calibration.py) on synthetic runs, and a smoke run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "regression_calibration.py"


@pytest.fixture(scope="module")
def cal() -> Any:
    spec = importlib.util.spec_from_file_location("regression_calibration", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["regression_calibration"] = mod
    spec.loader.exec_module(mod)
    return mod


def synthetic(rounds: int = 12, slow_factor: float = 1.0) -> dict[str, Any]:
    """Stationary runs: A/A identical in distribution, S20 truly 20 % slower; optional load drift after half."""
    rng = np.random.default_rng(0)
    runs = []
    for rnd in range(rounds):
        drift = slow_factor if rnd >= rounds // 2 else 1.0
        for cond, scale in (("A", 1.0), ("A", 1.0), ("S20", 1.2)):
            runs.append(
                {
                    "condition": cond,
                    "round": rnd,
                    "t_s": float(rnd),
                    "samples_ms": (5.0 * scale * drift * np.exp(rng.normal(0, 0.03, 100))).tolist(),
                }
            )
    return {"runs": runs}


def _cell(ev: dict[str, Any], strategy: str, alpha: float, thr: float) -> dict[str, Any]:
    return next(
        g for g in ev["grid"] if g["strategy"] == strategy and g["alpha"] == alpha and g["threshold_pct"] == thr
    )


def test_scoring_on_stationary_runs(cal: Any) -> None:
    ev = cal.evaluate(synthetic())
    for st in cal.STRATEGIES:
        cell = _cell(ev, st, 0.01, 5.0)
        assert cell["A"]["pairs"] > 0 and cell["A"]["rate"] <= 0.05, st
        assert cell["S20"]["rate"] >= 0.95, st
    assert _cell(ev, "single", 0.01, 30.0)["S20"]["rate"] == 0.0  # a 20 % slowdown is below a 30 % threshold
    assert ev["chosen"]["single"]["target_met"]


def test_scoring_sees_load_drift_and_interleaving_absorbs_it(cal: Any) -> None:
    ev = cal.evaluate(synthetic(slow_factor=1.5))
    assert _cell(ev, "single", 0.01, 5.0)["A"]["rate"] > 0.3  # later runs 1.5x slower: stored baseline cries wolf
    assert _cell(ev, "interleaved+confirm", 0.01, 5.0)["A"]["rate"] == 0.0


def test_interleaved_pairs_stay_within_a_round(cal: Any) -> None:
    data = synthetic(rounds=4)
    for base, cur, nxt in cal._pairs(data["runs"], "A", "interleaved+confirm"):
        assert data["runs"][base[0]]["round"] == data["runs"][cur[0]]["round"]
        assert nxt is not None and nxt < 0


@pytest.mark.slow
def test_smoke_run_measures_for_real(cal: Any, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "cal"
    assert (
        cal.main(
            ["--rounds", "2", "--iterations", "20", "--warmup", "2", "--gap", "0", "--size", "96", "--out", str(out)]
        )
        == 0
    )
    md = Path(f"{out}.md").read_text()
    assert "A/A false alarms" in md and "S20" in md
    runs = __import__("json").loads(Path(f"{out}_runs.json").read_text())["runs"]
    assert len(runs) == 2 * 5 and all(len(r["samples_ms"]) == 20 for r in runs)
