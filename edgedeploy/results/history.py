"""Change points of each key's latency across stored runs, found with ``ruptures`` (PELT, least-squares cost).

The signal of a key is the log of each run's median latency (ms), runs ordered by their timestamp. ``ruptures``'
PELT segments it under the ``l2`` cost with a penalty of ``penalty_factor · σ² · ln n``, where σ is a robust
estimate of the run-to-run noise (the median absolute first difference / (0.6745 · √2)): a BIC-like penalty
scaled to the key's own noise, so a noisy key needs a larger shift to break. A change point is reported only
when the medians of the two segments around it differ by at least ``min_change_pct`` %. Each change point names
the first run after it (its commit, run id or timestamp) and its size (before / after median, ms, and percent).

``ruptures`` is an optional package (``pip install 'edgedeploy[report]'``); without it
:class:`~edgedeploy.errors.MissingExtraError` (exit 3) names the extra.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from edgedeploy.errors import ConfigError, MissingExtraError
from edgedeploy.results.compare import Key, group_by_key
from edgedeploy.results.result import BenchResult

DEFAULT_PENALTY_FACTOR = 10.0
DEFAULT_MIN_CHANGE_PCT = 2.0


@dataclass(frozen=True)
class HistoryOptions:
    """``keys``: glob patterns matched against ``model/format/precision/runtime/device/threads`` (or the model
    alone; empty: every key); ``penalty_factor`` > 0; ``min_change_pct`` ≥ 0 (%); ``min_size``: runs per segment
    at least (≥ 1)."""

    keys: tuple[str, ...] = ()
    penalty_factor: float = DEFAULT_PENALTY_FACTOR
    min_change_pct: float = DEFAULT_MIN_CHANGE_PCT
    min_size: int = 2

    def __post_init__(self) -> None:
        if not self.penalty_factor > 0 or self.min_change_pct < 0 or self.min_size < 1:
            raise ConfigError("--penalty must be > 0, --min-change >= 0 and --min-size >= 1")


@dataclass(frozen=True)
class ChangePoint:
    """A shift between run ``index - 1`` and run ``index`` (0-based, oldest first) of ``key``."""

    key: Key
    index: int
    commit: str | None
    timestamp: str
    before_ms: float
    after_ms: float

    @property
    def change_pct(self) -> float:
        return (self.after_ms / self.before_ms - 1) * 100


@dataclass
class KeyHistory:
    """One key's runs (oldest first: timestamp, commit, median ms) and its change points."""

    key: Key
    timestamps: list[str] = field(default_factory=list)
    commits: list[str | None] = field(default_factory=list)
    medians_ms: list[float] = field(default_factory=list)
    change_points: list[ChangePoint] = field(default_factory=list)


def key_label(key: Key) -> str:
    return "/".join(str(k) for k in key)


def _matches(key: Key, patterns: Sequence[str]) -> bool:
    if not patterns:
        return True
    label = key_label(key)
    return any(fnmatch.fnmatchcase(label, p) or fnmatch.fnmatchcase(str(key[0]), p) for p in patterns)


def _import_ruptures() -> object:
    try:
        import ruptures
    except ImportError as e:
        raise MissingExtraError("ruptures", "report", "change points over history") from e
    return ruptures


def noise_sigma(signal: Sequence[float]) -> float:
    """Robust run-to-run noise of ``signal``: median |first difference| / (0.6745 · √2)."""
    diffs = [abs(b - a) for a, b in itertools.pairwise(signal)]
    return statistics.median(diffs) / (0.6745 * math.sqrt(2)) if diffs else 0.0


def segment(signal: Sequence[float], opts: HistoryOptions) -> list[int]:
    """Break indices (the first index of each new segment) of ``signal`` by ``ruptures.Pelt`` (see module doc)."""
    n = len(signal)
    if n < 2 * opts.min_size:
        return []
    rpt = _import_ruptures()
    import numpy as np

    sigma = max(noise_sigma(signal), 1e-4)
    pen = opts.penalty_factor * sigma**2 * math.log(n)
    algo = rpt.Pelt(model="l2", min_size=opts.min_size, jump=1).fit(np.asarray(signal, dtype=float).reshape(-1, 1))
    return [b for b in algo.predict(pen=pen) if b < n]


def history(results: Sequence[BenchResult], opts: HistoryOptions | None = None) -> list[KeyHistory]:
    """Every matching key's history with its change points (keys without a match are left out).

    Raises :class:`ConfigError` when no key matches ``opts.keys``, :class:`MissingExtraError` without ruptures.
    """
    opts = opts or HistoryOptions()
    out = []
    for key, rs in group_by_key(results).items():
        if not _matches(key, opts.keys):
            continue
        rs = sorted(rs, key=lambda r: r.timestamp)
        h = KeyHistory(key, [r.timestamp for r in rs], [r.git_commit for r in rs], [r.median_ms for r in rs])
        logs = [math.log(m) for m in h.medians_ms]
        bounds = [0, *segment(logs, opts), len(rs)]
        for i in range(1, len(bounds) - 1):
            before = statistics.median(h.medians_ms[bounds[i - 1] : bounds[i]])
            after = statistics.median(h.medians_ms[bounds[i] : bounds[i + 1]])
            cp = ChangePoint(key, bounds[i], rs[bounds[i]].git_commit, rs[bounds[i]].timestamp, before, after)
            if abs(cp.change_pct) >= opts.min_change_pct:
                h.change_points.append(cp)
        out.append(h)
    if opts.keys and not out:
        raise ConfigError(f"no stored key matches {', '.join(opts.keys)}")
    return out


def history_markdown(hist: Sequence[KeyHistory]) -> str:
    """A Markdown table of the change points (key, run, commit, before / after ms, change %)."""
    lines = ["## Change points over history", "",
             "| key | runs | change at run | commit | time (UTC) | before ms | after ms | change |",
             "|---|---:|---:|---|---|---:|---:|---:|"]  # fmt: skip
    for h in hist:
        for cp in h.change_points:
            lines.append(
                f"| {key_label(h.key)} | {len(h.medians_ms)} | {cp.index} | {(cp.commit or '?')[:10]} | "
                f"{cp.timestamp[:19]} | {cp.before_ms:.3f} | {cp.after_ms:.3f} | {cp.change_pct:+.1f} % |"
            )
    if len(lines) == 4:
        lines.append("| (no change points) | | | | | | | |")
    return "\n".join(lines) + "\n"
