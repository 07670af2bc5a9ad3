"""The latency regression rule: compare a baseline and a current set of benchmark results key by key.

Runs are matched on :attr:`BenchResult.key` = (model, format, precision, runtime, device, threads). For each key
the raw per-iteration samples (ms) of both sides give:

* the medians and the change of the median in % of the baseline median;
* the Hodges–Lehmann estimate of the shift (median of all pairwise differences ``current_j - baseline_i``, ms) and
  its distribution-free confidence interval derived from the Mann–Whitney U distribution (Lehmann 1963;
  Bauer 1972, "Constructing confidence sets using rank statistics", JASA 67; Hollander & Wolfe, *Nonparametric
  Statistical Methods*, 3rd ed., §4.3), at confidence ``1 - alpha``;
* the two-sided Mann–Whitney U p-value (``scipy.stats.mannwhitneyu``);
* a verdict:

  - **regression**: p < alpha AND change > +threshold % AND median difference > +min_abs_ms;
  - **improvement**: p < alpha AND change < -threshold % AND median difference < -min_abs_ms;
  - **unchanged**: anything else;
  - **missing**: the key is on one side only (``note`` says which);
  - **insufficient**: too few samples for the test ever to reach ``p < alpha``: with ``n`` and ``m`` samples the
    smallest two-sided exact Mann–Whitney p-value is ``2 / C(n + m, n)`` (all of one side below all of the other),
    so e.g. 1 vs 1 sample can never be flagged, and at alpha 0.01 each side needs at least 5 samples
    (:func:`min_p_value`, :func:`samples_needed`). ``compare`` then exits 2 (unless a regression was found, 1)
    and says how many samples are needed.

All three conditions are needed: with 100+ samples per side the test alone flags shifts far too small to matter,
and a threshold alone on single medians cries wolf on noisy devices. The defaults
(:data:`DEFAULT_THRESHOLD_PCT`, :data:`DEFAULT_ALPHA`, :data:`DEFAULT_MIN_ABS_MS`) were chosen from
``benchmarks/regression_calibration.py`` on the development machine (2 shared vCPUs whose quiet/slow phases make
about one run in five 1.2× slower; results in ``benchmarks/results/regression_calibration_quiet.md``). There, one
run per side gave 29 % A/A false alarms at a 5 % threshold whatever alpha; the best (fastest) of 3 runs per side
(``aggregate="fastest"``) at a 10 % threshold gave 0.8 % false alarms and detected 98 % of real 20 % slowdowns
and 63 % of 10 % ones (alpha 0.01 and 0.05 alike; a confirming re-run brought false alarms to 0 %). So: bench
each case 3 times per side (the CI workflow does), threshold 10 %, alpha 0.01. Re-calibrate on the machine or
board that runs CI.

Several runs of one key on one side (a baseline saved from several ``bench`` runs, a result folder) are reduced
to one sample set: only the runs of the most recent git commit are kept, then by default the run with the lowest
median is used (``aggregate="fastest"``): interference on a shared machine only ever adds time, so the least
disturbed run is the best estimate of the code's own latency (Chen & Revels 2016, "Robust benchmarking in noisy
environments", arXiv:1608.04295). ``aggregate="pool"`` pools all samples instead.

``--confirm`` (the ``rerun`` hook of :func:`compare_results`): a flagged regression is re-measured once and kept only
if the re-run is a regression by the same rule too; this is what removes most false alarms caused by a slow phase of
a shared host (see the calibration).

Besides latency each row carries the key's other figures (``figures``: artifact bytes, load and first-inference
times, ``peak_rss_mb``, ``rss_delta_mb`` of both sides, :mod:`edgedeploy.results.figures`) and a
``memory_verdict``: a memory regression (current peak RSS > baseline by more than ``memory_threshold_pct`` % and
``min_abs_mb`` MB, default 10 % and 2 MB) is a regression too: it is listed in ``regressions`` and makes the exit
code 1, whatever the latency verdict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from edgedeploy.errors import ConfigError, EdgeDeployError
from edgedeploy.results.figures import (
    DEFAULT_MEMORY_THRESHOLD_PCT,
    DEFAULT_MIN_ABS_MB,
    FigureComparison,
    compare_figures,
)
from edgedeploy.results.result import BenchResult

#: Relative change of the median (in %) a regression must exceed. Chosen from the calibration (see module doc).
DEFAULT_THRESHOLD_PCT = 10.0
#: Significance level of the two-sided Mann–Whitney U test; the shift's confidence interval is at ``1 - alpha``.
DEFAULT_ALPHA = 0.01
#: Absolute floor (ms) the median difference must exceed: below it, a tiny model's change is timer and cache noise.
DEFAULT_MIN_ABS_MS = 0.05
#: Largest number of pairwise differences computed exactly for Hodges–Lehmann; larger sets are subsampled.
MAX_PAIRS = 4_000_000

Key = tuple[str, str, str, str, str, int]
Verdict = Literal["regression", "improvement", "unchanged", "missing", "insufficient"]
Aggregate = Literal["fastest", "pool"]
KEY_FIELDS = ("model", "format", "precision", "runtime", "device", "threads")


def parse_threshold(text: str | float) -> float:
    """Parse a threshold such as ``"5%"``, ``"5"`` or ``7.5`` into a percentage (float, ≥ 0).

    A bare number is a percentage too (``"5"`` = 5 %). Raises :class:`ConfigError` for anything else.
    """
    s = str(text).strip()
    if s.endswith("%"):
        s = s[:-1].strip()
    try:
        value = float(s)
    except ValueError:
        raise ConfigError(f"--threshold must be a percentage such as 5% (got {text!r})") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"--threshold must be a finite percentage ≥ 0 (got {text!r})")
    return value


def min_p_value(n: int, m: int) -> float:
    """Smallest two-sided exact Mann–Whitney U p-value reachable with ``n`` and ``m`` samples: ``2 / C(n+m, n)``
    (capped at 1), reached when every sample of one side is below every sample of the other."""
    if n < 1 or m < 1:
        return 1.0
    if n + m <= 1000:
        return min(1.0, 2.0 / math.comb(n + m, n))
    log_comb = math.lgamma(n + m + 1) - math.lgamma(n + 1) - math.lgamma(m + 1)
    return min(1.0, math.exp(math.log(2.0) - log_comb))  # underflows to 0.0: always flaggable


def samples_needed(alpha: float, other: int | None = None, limit: int = 100_000) -> int:
    """The fewest samples for which :func:`min_p_value` ``< alpha``: per side when ``other`` is None (both sides
    equal), else on one side given ``other`` samples on the other (``limit`` when even that is not enough)."""
    for k in range(1, limit + 1):
        if min_p_value(k, k if other is None else other) < alpha:
            return k
    return limit


def samples_needed_text(n: int, m: int, alpha: float) -> str:
    """What ``n`` baseline vs ``m`` current samples lack to be judgeable at ``alpha``, in words: "at least 5
    samples per side" when the sides are equal, else also what the smaller side needs given the larger one
    ("at least 12 baseline samples given 6 current ones, or 5 per side")."""
    per_side = samples_needed(alpha)
    if n == m:
        return f"at least {per_side} samples per side"
    big, small_name, big_name = (m, "baseline", "current") if n < m else (n, "current", "baseline")
    need_small = samples_needed(alpha, other=big)
    if need_small <= big:
        return f"at least {need_small} {small_name} samples given {big} {big_name} ones, or {per_side} per side"
    return f"at least {per_side} samples per side (got {n} baseline vs {m} current)"


def can_flag(n: int, m: int, alpha: float) -> bool:
    """Whether ``n`` vs ``m`` samples can ever give ``p < alpha`` (see :func:`min_p_value`)."""
    return min_p_value(n, m) < alpha


@dataclass(frozen=True)
class RegressionRule:
    """The rule's parameters: ``threshold_pct`` (%), ``alpha`` (two-sided test level), ``min_abs_ms`` (ms).

    Raises :class:`ConfigError` on values out of range.
    """

    threshold_pct: float = DEFAULT_THRESHOLD_PCT
    alpha: float = DEFAULT_ALPHA
    min_abs_ms: float = DEFAULT_MIN_ABS_MS
    aggregate: Aggregate = "fastest"
    #: memory rule (edgedeploy.results.figures): peak RSS change above this % of the baseline AND above min_abs_mb
    memory_threshold_pct: float = DEFAULT_MEMORY_THRESHOLD_PCT
    min_abs_mb: float = DEFAULT_MIN_ABS_MB

    def __post_init__(self) -> None:
        from edgedeploy.limits import check_compare_rule

        check_compare_rule(self.threshold_pct, self.alpha, self.min_abs_ms)
        if not (0 <= self.memory_threshold_pct <= 1000 and 0 <= self.min_abs_mb <= 1e6):
            raise ConfigError("memory_threshold_pct must be 0..1000 and min_abs_mb 0..1e6")
        if self.aggregate not in ("fastest", "pool"):
            raise ConfigError(f"aggregate must be 'fastest' or 'pool' (got {self.aggregate!r})")


@dataclass
class Shift:
    """Hodges–Lehmann shift ``current - baseline`` (ms) and its ``confidence`` interval [low_ms, high_ms]."""

    estimate_ms: float
    low_ms: float
    high_ms: float
    confidence: float


def hodges_lehmann(
    baseline_ms: Sequence[float], current_ms: Sequence[float], confidence: float = 0.99, seed: int = 0
) -> Shift:
    """Hodges–Lehmann estimate of the location shift ``current - baseline`` (ms) with its Mann–Whitney interval.

    The estimate is the median of all ``n*m`` pairwise differences; the interval is ``[D(k), D(nm-k+1)]`` of the
    sorted differences with ``k = floor(nm/2 - z_{(1+confidence)/2} * sqrt(nm(n+m+1)/12))`` (normal approximation of
    the U distribution; Hollander & Wolfe §4.3, Bauer 1972). Above :data:`MAX_PAIRS` differences a seeded uniform
    subsample of pairs is used. Raises :class:`ValueError` if either side is empty.
    """
    from scipy import stats  # imported on use: scipy.stats takes ~1 s to import, every CLI command would pay it

    x = np.asarray(baseline_ms, dtype=np.float64)
    y = np.asarray(current_ms, dtype=np.float64)
    n, m = x.size, y.size
    if n == 0 or m == 0:
        raise ValueError("both sample sets must be non-empty")
    if n * m <= MAX_PAIRS:
        d = (y[None, :] - x[:, None]).ravel()
    else:
        rng = np.random.default_rng(seed)
        d = y[rng.integers(0, m, MAX_PAIRS)] - x[rng.integers(0, n, MAX_PAIRS)]
    d.sort()
    nd = d.size
    est = float(np.median(d))
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    k = math.floor(n * m / 2.0 - z * math.sqrt(n * m * (n + m + 1) / 12.0))
    k = round(k * nd / (n * m))  # rescale to the subsample size (identity when exact)
    if k < 1:
        lo, hi = float(d[0]), float(d[-1])
    else:
        lo, hi = float(d[k - 1]), float(d[nd - k])
    return Shift(est, lo, hi, confidence)


def mann_whitney_p(baseline_ms: Sequence[float], current_ms: Sequence[float]) -> float:
    """Two-sided Mann–Whitney U p-value (``scipy.stats.mannwhitneyu``, exact for small tie-free sets, else the
    tie-corrected normal approximation). Returns 1.0 when both sides are constant and equal."""
    from scipy import stats

    x = np.asarray(baseline_ms, dtype=np.float64)
    y = np.asarray(current_ms, dtype=np.float64)
    if np.all(x == x[0]) and np.all(y == x[0]):
        return 1.0
    return float(stats.mannwhitneyu(y, x, alternative="two-sided").pvalue)


@dataclass
class KeyComparison:
    """The comparison of one key. Times in ms, ``change_pct`` in % of the baseline median."""

    key: Key
    verdict: Verdict
    baseline_median_ms: float | None = None
    current_median_ms: float | None = None
    change_pct: float | None = None
    diff_ms: float | None = None
    shift: Shift | None = None
    p_value: float | None = None
    n_baseline: int = 0
    n_current: int = 0
    runs_baseline: int = 0
    runs_current: int = 0
    note: str = ""
    first_verdict: Verdict | None = None
    rerun: KeyComparison | None = None
    baseline_samples_ms: list[float] = field(default_factory=list, repr=False)
    current_samples_ms: list[float] = field(default_factory=list, repr=False)
    figures: FigureComparison | None = None

    @property
    def memory_verdict(self) -> str:
        """The memory rule's verdict (``unmeasured`` without figures)."""
        return self.figures.memory_verdict if self.figures else "unmeasured"

    @property
    def regressed(self) -> bool:
        """A latency or a memory regression."""
        return self.verdict == "regression" or self.memory_verdict == "regression"

    @property
    def model(self) -> str:
        return self.key[0]

    def label(self) -> str:
        """``model format/precision runtime@device tN``, the name used in reports."""
        m, f, p, r, d, t = self.key
        return f"{m} {f}/{p} {r}@{d} t{t}"

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = dict(zip(KEY_FIELDS, self.key, strict=True))
        for name in (
            "verdict",
            "baseline_median_ms",
            "current_median_ms",
            "change_pct",
            "diff_ms",
            "p_value",
            "n_baseline",
            "n_current",
            "runs_baseline",
            "runs_current",
            "note",
            "first_verdict",
        ):
            out[name] = getattr(self, name)
        out["shift"] = asdict(self.shift) if self.shift else None
        out["rerun"] = self.rerun.to_dict(samples) if self.rerun else None
        out["memory_verdict"] = self.memory_verdict
        out["figures"] = self.figures.to_dict() if self.figures else None
        if samples:
            out["baseline_samples_ms"] = self.baseline_samples_ms
            out["current_samples_ms"] = self.current_samples_ms
        return out


_ORDER = {"regression": 0, "insufficient": 1, "missing": 2, "improvement": 3, "unchanged": 4}


@dataclass
class ComparisonReport:
    """All keys' comparisons under one :class:`RegressionRule`; ``exit_code`` is 1 if any key regressed else 0."""

    rule: RegressionRule
    rows: list[KeyComparison]
    baseline_label: str = "baseline"
    current_label: str = "current"
    confirmed: bool = False

    @property
    def regressions(self) -> list[KeyComparison]:
        return [r for r in self.rows if r.regressed]

    @property
    def improvements(self) -> list[KeyComparison]:
        return [r for r in self.rows if r.verdict == "improvement"]

    @property
    def missing(self) -> list[KeyComparison]:
        return [r for r in self.rows if r.verdict == "missing"]

    @property
    def insufficient(self) -> list[KeyComparison]:
        return [r for r in self.rows if r.verdict == "insufficient"]

    @property
    def exit_code(self) -> int:
        """1 if any key regressed; else 2 if some key had too few samples to be judged; else 0."""
        if self.regressions:
            return 1
        return 2 if self.insufficient else 0

    def insufficient_message(self) -> str:
        """One line on the keys with too few samples (empty when there are none)."""
        rows = self.insufficient
        if not rows:
            return ""
        shown = ", ".join(f"{r.label()} ({r.n_baseline} vs {r.n_current})" for r in rows[:3])
        more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        first = rows[0]
        need = samples_needed_text(first.n_baseline, first.n_current, self.rule.alpha)
        if len(rows) > 1 and any((r.n_baseline, r.n_current) != (first.n_baseline, first.n_current) for r in rows):
            need += f" for {first.label()}"
        return (
            f"{len(rows)} key(s) have too few samples to be judged at alpha {self.rule.alpha:g}: {shown}{more}; "
            f"the test needs {need} (bench with more --iterations)"
        )

    def sorted_rows(self) -> list[KeyComparison]:
        """Regressions first (largest change first), then missing, improvements, unchanged."""
        return sorted(
            self.rows, key=lambda r: (_ORDER["regression" if r.regressed else r.verdict], -(r.change_pct or 0.0), r.key)
        )

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        return {
            "rule": asdict(self.rule),
            "baseline": self.baseline_label,
            "current": self.current_label,
            "confirmed": self.confirmed,
            "summary": {
                "keys": len(self.rows),
                "regressions": len(self.regressions),
                "improvements": len(self.improvements),
                "missing": len(self.missing),
                "insufficient": len(self.insufficient),
            },
            "rows": [r.to_dict(samples) for r in self.sorted_rows()],
        }

    def to_json(self, indent: int | None = 2, samples: bool = False) -> str:
        return json.dumps(self.to_dict(samples), indent=indent)


def select_samples(results: Iterable[BenchResult], aggregate: Aggregate = "fastest") -> tuple[list[float], int]:
    """Reduce several runs of ONE key to one sample set (ms) and say how many runs were considered.

    Keeps the runs of the most recent git commit (by timestamp); then ``"fastest"`` takes the run with the lowest
    median, ``"pool"`` concatenates all samples. Raises :class:`ValueError` on an empty input.
    """
    runs = [r for r in results if r.samples_ms]
    if not runs:
        raise ValueError("no runs with samples")
    latest = max(runs, key=lambda r: r.timestamp)
    if latest.git_commit is not None:
        runs = [r for r in runs if r.git_commit == latest.git_commit]
    if aggregate == "pool":
        return [s for r in runs for s in r.samples_ms], len(runs)
    best = min(runs, key=lambda r: r.median_ms)
    return list(best.samples_ms), len(runs)


def decide(p_value: float, change_pct: float, diff_ms: float, rule: RegressionRule) -> Verdict:
    """The verdict from the test's p-value, the median change (%) and the median difference (ms).

    regression: ``p < alpha and change_pct > threshold_pct and diff_ms > min_abs_ms``; improvement: the mirror
    image; otherwise unchanged. The calibration benchmark calls this very function.
    """
    if p_value < rule.alpha:
        if change_pct > rule.threshold_pct and diff_ms > rule.min_abs_ms:
            return "regression"
        if change_pct < -rule.threshold_pct and -diff_ms > rule.min_abs_ms:
            return "improvement"
    return "unchanged"


def compare_samples(
    key: Key,
    baseline_ms: Sequence[float],
    current_ms: Sequence[float],
    rule: RegressionRule | None = None,
    runs: tuple[int, int] = (1, 1),
) -> KeyComparison:
    """Apply the rule to one key's raw samples (ms). See the module docstring for the method and its sources.

    Raises :class:`ConfigError` if a side has no samples or non-finite / negative values.
    """
    rule = rule or RegressionRule()
    x = np.asarray(baseline_ms, dtype=np.float64)
    y = np.asarray(current_ms, dtype=np.float64)
    for side, a in (("baseline", x), ("current", y)):
        if a.size == 0:
            raise ConfigError(f"{side} has no samples for {key}")
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ConfigError(f"{side} has non-finite or negative samples for {key}")
    mx, my = float(np.median(x)), float(np.median(y))
    diff = my - mx
    change = (my / mx - 1.0) * 100.0 if mx > 0 else (math.inf if diff > 0 else 0.0)
    p = mann_whitney_p(x, y)
    shift = hodges_lehmann(x, y, confidence=1.0 - rule.alpha)
    verdict: Verdict = decide(p, change, diff, rule)
    note = ""
    if verdict == "unchanged" and p < rule.alpha and abs(change) > 0:
        note = "significant but within the threshold or the absolute floor"
    if not can_flag(x.size, y.size, rule.alpha):
        verdict = "insufficient"
        note = (
            f"insufficient samples: {x.size} vs {y.size} can never reach p < {rule.alpha:g} (smallest p "
            f"{min_p_value(x.size, y.size):.3g}); need "
            + (
                f"at least {samples_needed(rule.alpha)} per side"
                if x.size == y.size
                else samples_needed_text(x.size, y.size, rule.alpha)
            )
        )
    return KeyComparison(
        key=key,
        verdict=verdict,
        baseline_median_ms=mx,
        current_median_ms=my,
        change_pct=change,
        diff_ms=diff,
        shift=shift,
        p_value=p,
        n_baseline=int(x.size),
        n_current=int(y.size),
        runs_baseline=runs[0],
        runs_current=runs[1],
        note=note,
        baseline_samples_ms=x.tolist(),
        current_samples_ms=y.tolist(),
    )


def group_by_key(results: Iterable[BenchResult]) -> dict[Key, list[BenchResult]]:
    """Group results by :attr:`BenchResult.key`, keeping input order within a key."""
    out: dict[Key, list[BenchResult]] = {}
    for r in results:
        out.setdefault(r.key, []).append(r)
    return out


RerunHook = Callable[[Key], BenchResult]


def _missing_row(
    key: Key,
    base_groups: dict[Key, list[BenchResult]],
    cur_groups: dict[Key, list[BenchResult]],
    rule: RegressionRule,
    labels: tuple[str, str],
) -> KeyComparison:
    """The ``missing`` row of a key only one side has: that side's median (ms), samples and runs."""
    side = "baseline" if key in base_groups else "current"
    samples, runs = select_samples((base_groups if side == "baseline" else cur_groups)[key], rule.aggregate)
    note = f"not in {labels[1]}" if side == "baseline" else f"new: not in {labels[0]}"
    fields = {f"{side}_median_ms": float(np.median(samples)), f"n_{side}": len(samples), f"runs_{side}": runs,
              f"{side}_samples_ms": samples}  # fmt: skip
    return KeyComparison(key, "missing", note=note, **fields)


def compare_results(
    baseline: Sequence[BenchResult],
    current: Sequence[BenchResult],
    rule: RegressionRule | None = None,
    rerun: RerunHook | None = None,
    baseline_label: str = "baseline",
    current_label: str = "current",
) -> ComparisonReport:
    """Compare two sets of results key by key under ``rule`` (see the module docstring).

    ``rerun(key)``, when given (``--confirm``), is called once for each key that came out as a regression; it must
    return a fresh :class:`BenchResult` of the same key. The regression stands only if the re-run, compared with the
    same baseline, is a regression too; otherwise the verdict becomes the re-run's and ``note`` says so. An error
    raised by the hook propagates (a failed re-run is not a pass).

    Raises :class:`ConfigError` if either side is empty or a re-run returns a different key.
    """
    rule = rule or RegressionRule()
    if not baseline:
        raise ConfigError(f"{baseline_label}: no benchmark results found")
    if not current:
        raise ConfigError(f"{current_label}: no benchmark results found")
    base_groups = group_by_key(baseline)
    cur_groups = group_by_key(current)
    rows: list[KeyComparison] = []
    for key in sorted(set(base_groups) | set(cur_groups), key=lambda k: tuple(str(v) for v in k)):
        if key not in cur_groups or key not in base_groups:
            rows.append(_missing_row(key, base_groups, cur_groups, rule, (baseline_label, current_label)))
            continue
        b, nb = select_samples(base_groups[key], rule.aggregate)
        c, nc = select_samples(cur_groups[key], rule.aggregate)
        row = compare_samples(key, b, c, rule, runs=(nb, nc))
        if row.verdict == "regression" and rerun is not None:
            row = _confirm(row, b, rerun, rule)
        rows.append(row)
    for row in rows:
        row.figures = compare_figures(
            base_groups.get(row.key, []), cur_groups.get(row.key, []), rule.memory_threshold_pct, rule.min_abs_mb
        )
        if row.figures.note():
            row.note = "; ".join(x for x in (row.note, row.figures.note()) if x)
    return ComparisonReport(rule, rows, baseline_label, current_label, confirmed=rerun is not None)


def _confirm(row: KeyComparison, baseline_ms: list[float], rerun: RerunHook, rule: RegressionRule) -> KeyComparison:
    fresh = rerun(row.key)
    if not isinstance(fresh, BenchResult):
        raise EdgeDeployError(f"re-run of {row.label()} did not return a BenchResult")
    if fresh.key != row.key:
        raise ConfigError(f"re-run of {row.key} returned results for a different key {fresh.key}")
    second = compare_samples(row.key, baseline_ms, fresh.samples_ms, rule, runs=(row.runs_baseline, 1))
    row.rerun = second
    row.first_verdict = row.verdict
    if second.verdict == "regression":
        row.note = f"confirmed on re-run ({second.change_pct:+.1f} %)"
    else:
        row.verdict = second.verdict
        row.note = (
            f"not confirmed: re-run {second.change_pct:+.1f} % (p = {second.p_value:.2g}), "
            f"first run {row.change_pct:+.1f} %"
        )
    return row
