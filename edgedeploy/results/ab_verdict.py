"""The sequential A/B verdict: paired per-block ratios ``candidate / baseline`` against a ±threshold band.

Method
------
Both sides run in one process in interleaved blocks (:mod:`edgedeploy.bench.ab`). Block ``i`` gives one paired
ratio ``r_i = median(candidate block i) / median(baseline block i)``. The estimate is the geometric mean
``exp(mean(log r))`` and the interval a Student-t interval on the log ratios,
``exp(mean ± t_{n-1, (1+c)/2} · sd / sqrt(n))``, at confidence ``c``.

Why this: the block median makes each block robust to the single slow iteration (an interrupt, a page fault);
pairing two blocks timed seconds apart cancels the host's slow phases, which last seconds to minutes and hit both
sides alike (the harness alternates the sides run by run within a block; ``compare`` of runs taken at different
times has no such pairing); the log makes a slowdown symmetric and
multiplicative (a 5 % slower candidate is +0.049 whatever the model's latency); and the block log ratios are close
to normal and independent enough for a t interval after a handful of blocks (their autocorrelation is what the
per-device calibration measures, not what it assumes).

Sequential rule: after each block (and never before ``min_blocks``) the interval is compared with the band
``[1 - threshold, 1 + threshold]``:

* ``regression``: the interval lies wholly above ``1 + threshold``;
* ``improvement``: wholly below ``1 - threshold``;
* ``unchanged``: wholly inside the band;
* otherwise another block runs; when the time budget ends first the answer is ``inconclusive``.

Looking after every block makes the nominal confidence optimistic (repeated looks); ``edgedeploy calibrate``
measures the real false-alarm rate of the whole sequential procedure on the device and picks the confidence (and
block length) that keeps it at or below 1 %. The board runner applies the same rule with critical values computed
here (:func:`critical_values`), so it stops when the host would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgedeploy.errors import ConfigError

VERDICTS = ("regression", "improvement", "unchanged", "inconclusive")
DEFAULT_THRESHOLD_PCT = 3.0
DEFAULT_CONFIDENCE = 0.99
DEFAULT_MIN_BLOCKS = 6


@dataclass(frozen=True)
class ABRule:
    """``threshold_pct``: half-width of the band (percent, > 0); ``confidence`` in (0, 1); ``min_blocks`` ≥ 3."""

    threshold_pct: float = DEFAULT_THRESHOLD_PCT
    confidence: float = DEFAULT_CONFIDENCE
    min_blocks: int = DEFAULT_MIN_BLOCKS

    def __post_init__(self) -> None:
        if not (0 < self.threshold_pct < 100) or math.isnan(self.threshold_pct):
            raise ConfigError(f"--threshold must be in (0, 100) percent (got {self.threshold_pct})")
        if not (0.5 <= self.confidence < 1):
            raise ConfigError(f"--confidence must be in [0.5, 1) (got {self.confidence})")
        if self.min_blocks < 3:
            raise ConfigError(f"min_blocks must be >= 3 (got {self.min_blocks})")


@dataclass(frozen=True)
class ABEstimate:
    """The paired-ratio estimate after ``blocks`` blocks; ``verdict`` is None while the rule wants more blocks."""

    ratio: float
    ci_low: float
    ci_high: float
    blocks: int
    verdict: str | None


def block_ratio(baseline_ms: Sequence[float], candidate_ms: Sequence[float]) -> float:
    """``median(candidate) / median(baseline)`` of one block (ms samples of each side)."""
    return _median(candidate_ms) / _median(baseline_ms)


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        raise ConfigError("an empty block")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def t_critical(confidence: float, df: int) -> float:
    """Two-sided Student-t critical value ``t_{df, (1+confidence)/2}``."""
    from scipy.stats import t

    return float(t.ppf((1 + confidence) / 2, df))


def critical_values(confidence: float, max_blocks: int) -> list[float]:
    """``[t_crit(n)]`` for n = 0 … max_blocks blocks (entries for n < 2 are inf): what the board runner uses."""
    from scipy.stats import t

    q = (1 + confidence) / 2
    return [math.inf, math.inf] + [float(t.ppf(q, n - 1)) for n in range(2, max_blocks + 1)]


def interval(ratios: Sequence[float], tcrit: float) -> tuple[float, float, float]:
    """(estimate, low, high) of the paired ratio from block ratios and a critical value (see the module doc)."""
    logs = [math.log(r) for r in ratios]
    n = len(logs)
    mean = sum(logs) / n
    if n < 2:
        return math.exp(mean), 0.0, math.inf
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
    half = tcrit * sd / math.sqrt(n)
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def band_verdict(low: float, high: float, threshold_pct: float) -> str | None:
    """``regression`` / ``improvement`` / ``unchanged`` when [low, high] clears or fits the band, else None."""
    t = threshold_pct / 100
    if low > 1 + t:
        return "regression"
    if high < 1 - t:
        return "improvement"
    if low >= 1 - t and high <= 1 + t:
        return "unchanged"
    return None


def evaluate(ratios: Sequence[float], rule: ABRule, final: bool = False) -> ABEstimate:
    """Apply the sequential rule to the block ratios so far.

    ``final``: the budget is spent — an undecided rule gives ``inconclusive`` instead of None. Fewer than
    ``rule.min_blocks`` blocks never give a verdict (``inconclusive`` when final).
    """
    n = len(ratios)
    if n == 0:
        return ABEstimate(math.nan, math.nan, math.nan, 0, "inconclusive" if final else None)
    est, low, high = interval(ratios, t_critical(rule.confidence, n - 1) if n >= 2 else math.inf)
    verdict = band_verdict(low, high, rule.threshold_pct) if n >= rule.min_blocks else None
    if verdict is None and final:
        verdict = "inconclusive"
    return ABEstimate(est, low, high, n, verdict)
