"""Latency statistics computed from raw samples (ms). Nothing here is ever stored instead of the samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(samples_ms: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``samples_ms`` with linear interpolation (numpy's default), in ms."""
    if len(samples_ms) == 0:
        raise ValueError("no samples")
    return float(np.percentile(np.asarray(samples_ms, dtype=np.float64), q))


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """``median_ms, mean_ms, p90_ms, p99_ms, std_ms (sample, ddof=1), min_ms, max_ms`` of the samples.

    Raises ``ValueError`` for an empty sequence.
    """
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    return {
        "median_ms": float(np.median(a)),
        "mean_ms": float(a.mean()),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "std_ms": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
    }
