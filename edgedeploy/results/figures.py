"""A case's figures beside its latency: size, load time, first inference, memory; and the memory regression rule.

Every figure comes from the results (:class:`~edgedeploy.results.result.BenchResult`): ``artifact_bytes`` (bytes),
``load_ms`` (file to ready session, ms), ``first_ms`` (first inference after load, ms), ``peak_rss_mb`` and
``rss_delta_mb`` (MB = 2**20 bytes; see :mod:`edgedeploy.bench.memory` for what they include). A figure that was
not measured is ``None`` and shown as ``n/a`` (never 0).

Several runs of a key on one side: the memory figure is the lowest ``peak_rss_mb`` of the runs (allocator and
page-cache noise only ever adds resident pages), load and first-inference times are the median of the runs.

**Memory regression** (:func:`memory_verdict`): both sides measured and the current ``peak_rss_mb`` exceeds the
baseline's by more than ``memory_threshold_pct`` % (default 10 %) **and** by more than ``min_abs_mb`` (default
2 MB). The peak is one reading per run (no sample distribution), so the rule is a threshold, not a test: on this
machine repeated runs of one case differ by < 1 MB (EdgeFormer-S on onnxruntime: 134.7 / 134.9 MB at 1 / 2 threads),
so 10 % and 2 MB are far outside the noise while a model that keeps a second copy of its weights (+20 MB for
EdgeFormer-S) is caught. An improvement is the mirror image; anything else is ``unchanged``; ``unmeasured`` when a
side has no reading.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgedeploy.results.result import BenchResult

DEFAULT_MEMORY_THRESHOLD_PCT = 10.0
DEFAULT_MIN_ABS_MB = 2.0
FIGURES = ("artifact_bytes", "load_ms", "first_ms", "peak_rss_mb", "rss_delta_mb")
MemoryVerdict = Literal["regression", "improvement", "unchanged", "unmeasured"]


def fmt(value: float | int | None, spec: str = "{:.1f}") -> str:
    """A figure for a table cell: ``n/a`` for ``None`` (not measured), else ``spec``."""
    return "n/a" if value is None else spec.format(value)


def fmt_mb_bytes(n: int | None) -> str:
    """Bytes as MB (2**20) with 2 decimals, ``n/a`` for ``None``."""
    return "n/a" if n is None else f"{n / 2**20:.2f}"


@dataclass(frozen=True)
class SideFigures:
    """One side's figures of one key (``None``: no run measured it)."""

    artifact_bytes: int | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    peak_rss_mb: float | None = None
    rss_delta_mb: float | None = None

    @classmethod
    def of(cls, runs: Sequence[BenchResult]) -> SideFigures:
        """Median load / first times, lowest peak (and its run's delta) of ``runs``."""

        def med(name: str) -> float | None:
            vals = [getattr(r, name) for r in runs if getattr(r, name, None) is not None]
            return float(statistics.median(vals)) if vals else None

        with_mem = [r for r in runs if getattr(r, "peak_rss_mb", None) is not None]
        low = min(with_mem, key=lambda r: r.peak_rss_mb) if with_mem else None
        sizes = [r.artifact_bytes for r in runs if getattr(r, "artifact_bytes", None) is not None]
        return cls(
            artifact_bytes=sizes[-1] if sizes else None,
            load_ms=med("load_ms"),
            first_ms=med("first_ms"),
            peak_rss_mb=low.peak_rss_mb if low else None,
            rss_delta_mb=low.rss_delta_mb if low else None,
        )


@dataclass(frozen=True)
class FigureComparison:
    """Baseline and current figures of one key and the memory verdict (``peak_change_pct``: % of the baseline)."""

    baseline: SideFigures
    current: SideFigures
    memory_verdict: MemoryVerdict
    peak_change_pct: float | None = None
    peak_diff_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"baseline": asdict(self.baseline), "current": asdict(self.current),
                "memory_verdict": self.memory_verdict, "peak_change_pct": self.peak_change_pct,
                "peak_diff_mb": self.peak_diff_mb}  # fmt: skip

    def note(self) -> str:
        """One phrase for a flagged memory change, else ``""``."""
        if self.memory_verdict not in ("regression", "improvement") or self.peak_change_pct is None:
            return ""
        return (
            f"memory {self.memory_verdict}: peak RSS {self.baseline.peak_rss_mb:.1f} → "
            f"{self.current.peak_rss_mb:.1f} MB ({self.peak_change_pct:+.1f} %)"
        )


def memory_verdict(
    baseline_mb: float | None,
    current_mb: float | None,
    threshold_pct: float = DEFAULT_MEMORY_THRESHOLD_PCT,
    min_abs_mb: float = DEFAULT_MIN_ABS_MB,
) -> MemoryVerdict:
    """The memory rule on two ``peak_rss_mb`` readings (MB); see the module docstring."""
    if baseline_mb is None or current_mb is None or baseline_mb <= 0:
        return "unmeasured"
    diff = current_mb - baseline_mb
    pct = 100.0 * diff / baseline_mb
    if pct > threshold_pct and diff > min_abs_mb:
        return "regression"
    if pct < -threshold_pct and diff < -min_abs_mb:
        return "improvement"
    return "unchanged"


def compare_figures(
    baseline: Sequence[BenchResult],
    current: Sequence[BenchResult],
    threshold_pct: float = DEFAULT_MEMORY_THRESHOLD_PCT,
    min_abs_mb: float = DEFAULT_MIN_ABS_MB,
) -> FigureComparison:
    """The figures of one key's baseline and current runs (either may be empty) and the memory verdict."""
    b, c = SideFigures.of(baseline), SideFigures.of(current)
    verdict = memory_verdict(b.peak_rss_mb, c.peak_rss_mb, threshold_pct, min_abs_mb)
    if verdict == "unmeasured" or b.peak_rss_mb is None or c.peak_rss_mb is None:
        return FigureComparison(b, c, verdict)
    diff = c.peak_rss_mb - b.peak_rss_mb
    return FigureComparison(b, c, verdict, 100.0 * diff / b.peak_rss_mb, diff)


def result_row(r: BenchResult) -> list[str]:
    """``artifact MB, load ms, first ms, peak RSS MB, RSS Δ MB`` cells of one result."""
    return [
        fmt_mb_bytes(getattr(r, "artifact_bytes", None)),
        fmt(r.load_ms),
        fmt(r.first_ms),
        fmt(getattr(r, "peak_rss_mb", None)),
        fmt(getattr(r, "rss_delta_mb", None)),
    ]


RESULT_COLUMNS = ("artifact MB", "load ms", "first ms", "peak RSS MB", "RSS Δ MB")
