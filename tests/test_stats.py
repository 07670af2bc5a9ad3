"""Statistics are computed from raw samples, never trusted from a file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgedeploy.bench.harness import measure
from edgedeploy.errors import ConfigError
from edgedeploy.results.result import BenchResult
from edgedeploy.results.stats import summarize


def test_summarize_matches_definitions() -> None:
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 100.0]
    s = summarize(samples)
    assert s["median_ms"] == 3.5
    assert s["mean_ms"] == pytest.approx(115.0 / 6)
    assert s["min_ms"] == 1.0 and s["max_ms"] == 100.0
    assert s["std_ms"] == pytest.approx(np.std(samples, ddof=1))
    # linear interpolation between order statistics: p90 of 6 samples lies between 5 and 100
    assert s["p90_ms"] == pytest.approx(5.0 + 0.5 * 95.0)
    assert s["p99_ms"] == pytest.approx(5.0 + 0.95 * 95.0)


def test_summarize_rejects_empty() -> None:
    with pytest.raises(ValueError):
        summarize([])


def test_result_recomputes_stats_from_samples(tmp_path) -> None:
    r = BenchResult(
        model="m", format="onnx", runtime="onnxruntime", device="local", threads=1, iterations=3, warmup=0,
        samples_ms=[1.0, 2.0, 9.0],
    )  # fmt: skip
    data = json.loads(r.to_json())
    data["median_ms"] = 123.0  # a tampered summary must not survive a load
    data["p99_ms"] = 0.0
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    loaded = BenchResult.load(path)
    assert loaded.median_ms == 2.0
    assert loaded.p99_ms == pytest.approx(np.percentile([1.0, 2.0, 9.0], 99))
    assert loaded.samples_ms == [1.0, 2.0, 9.0]


def test_measure_keeps_every_sample_and_first_inference_apart() -> None:
    calls = []
    timing = measure(lambda: calls.append(1), iterations=7, warmup=3)
    assert len(timing.samples_ms) == 7
    assert len(timing.warmup_ms) == 3
    assert len(calls) == 1 + 3 + 7
    assert all(s >= 0 for s in timing.samples_ms)


def test_measure_keeps_samples_when_interrupted() -> None:
    n = {"i": 0}

    def infer() -> None:
        n["i"] += 1
        if n["i"] == 1 + 2 + 5:  # first + 2 warm-up + 4 timed runs succeed, the 5th timed run raises
            raise RuntimeError("device went away")

    timing = measure(infer, iterations=10, warmup=2)
    assert len(timing.samples_ms) == 4
    assert isinstance(timing.interrupted, RuntimeError)


def test_measure_rejects_zero_iterations() -> None:
    with pytest.raises(ConfigError, match="between 1 and 100000"):
        measure(lambda: None, iterations=0)
