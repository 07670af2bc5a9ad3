"""The interleaved A/B timing harness: two loaded sessions, one process, alternating blocks.

Block ``i`` times ``block_size`` batch-1 inferences of each side, the two sides alternating run by run in the order
A B, B A, A B … (even blocks start with the baseline, odd blocks with the candidate), so no side keeps the first or
second position, and a slow phase of the host (other processes time-slicing the CPUs at ~100 ms scale) hits both
sides of a block alike. Alternating run by run rather than side by side (a whole block of one side, then of the
other) cut the spread of the log block ratios 7–15× on this 2-vCPU machine under load (sd 0.057 vs 0.39 and 0.0075
vs 0.12 in two 15 s A/A runs of a 5 ms model, 20 runs per side per block). Each inference is timed alone
(``time.perf_counter_ns``, or with ``BlockPlan(clock="cpu")`` the process CPU time, ``time.process_time_ns``:
with 1 runtime thread, the work an inference does, nearly independent of other processes sharing the core);
every sample is kept, per block. After each block pair ``should_stop(block_ratios)``
decides whether to go on (the sequential verdict of :mod:`edgedeploy.results.ab_verdict` is passed in by the API;
this layer does not decide), and the loop always ends at ``max_seconds`` of timing or ``max_blocks`` blocks. A
``KeyboardInterrupt`` ends it too, with the blocks measured so far kept (``stopped == "interrupted"``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgedeploy.errors import ConfigError

#: default target length of one side's block when no --block-size is given (ms of inference)
DEFAULT_BLOCK_MS = 100.0
MAX_BLOCKS = 2000
#: the clocks an interleaved run can time with: wall (latency) or the process's CPU time (ns counters)
CLOCKS: dict[str, Callable[[], int]] = {"wall": time.perf_counter_ns, "cpu": time.process_time_ns}


@dataclass(frozen=True)
class BlockPlan:
    """How to interleave: ``block_size`` timed runs per side per block (None: sized to ``block_ms`` from the
    warm-up timings), ``max_seconds`` of timing at most (> 0), ``warmup`` untimed runs per side first; ``clock``
    ``"wall"`` (``time.perf_counter_ns``) or ``"cpu"`` (process CPU time, ``time.process_time_ns``)."""

    block_size: int | None = None
    block_ms: float = DEFAULT_BLOCK_MS
    max_seconds: float = 60.0
    warmup: int = 5
    max_blocks: int = MAX_BLOCKS
    clock: str = "wall"

    def __post_init__(self) -> None:
        if not self.max_seconds > 0:
            raise ConfigError(f"--max-seconds must be > 0 (got {self.max_seconds})")
        if self.block_size is not None and not (1 <= self.block_size <= 10000):
            raise ConfigError(f"--block-size must be in 1..10000 (got {self.block_size})")
        if not self.block_ms > 0:
            raise ConfigError(f"block_ms must be > 0 (got {self.block_ms})")
        if self.warmup < 0 or self.max_blocks < 1:
            raise ConfigError("warmup must be >= 0 and max_blocks >= 1")
        if self.clock not in CLOCKS:
            raise ConfigError(f"clock must be one of {', '.join(CLOCKS)} (got {self.clock!r})")


@dataclass
class ABTiming:
    """Raw interleaved timings (ms): ``baseline[i]`` / ``candidate[i]`` are block ``i``'s samples of each side;
    ``first`` is the side that ran first in each block; ``elapsed_s`` the wall time of the timed blocks (s)."""

    baseline: list[list[float]] = field(default_factory=list)
    candidate: list[list[float]] = field(default_factory=list)
    first: list[str] = field(default_factory=list)
    block_size: int = 0
    elapsed_s: float = 0.0
    stopped: str = "rule"  # rule | max_seconds | max_blocks | interrupted
    clock: str = "wall"  # wall | cpu (BlockPlan.clock)
    #: the one process that timed both sides: ``pid``, ``arch`` (and ``runtime_version`` on a board)
    process: dict[str, Any] = field(default_factory=dict)


def _time_block(infer: Callable[[], Any], n: int, clock: Callable[[], int] = time.perf_counter_ns) -> list[float]:
    out = []
    for _ in range(n):
        t0 = clock()
        infer()
        out.append((clock() - t0) / 1e6)
    return out


def _time_pairs(
    first: Callable[[], Any], second: Callable[[], Any], n: int, clock: Callable[[], int] = time.perf_counter_ns
) -> tuple[list[float], list[float]]:
    """``n`` runs of each, alternating first/second, second/first, …; the samples (ms) of ``first``, ``second``."""
    a: list[float] = []
    b: list[float] = []
    for j in range(n):
        pair = ((first, a), (second, b)) if j % 2 == 0 else ((second, b), (first, a))
        for infer, out in pair:
            t0 = clock()
            infer()
            out.append((clock() - t0) / 1e6)
    return a, b


def size_block(warm_ms: list[float], block_ms: float) -> int:
    """Runs per side per block so that one side's block lasts about ``block_ms`` (at least 3)."""
    per = sorted(warm_ms)[len(warm_ms) // 2] if warm_ms else 1.0
    return max(3, min(10000, round(block_ms / max(per, 1e-3))))


def run_interleaved(
    baseline: Callable[[], Any],
    candidate: Callable[[], Any],
    plan: BlockPlan,
    should_stop: Callable[[list[list[float]], list[list[float]]], bool],
) -> ABTiming:
    """Warm both sides up, then time interleaved blocks until ``should_stop(baseline_blocks, candidate_blocks)``,
    ``plan.max_seconds`` or ``plan.max_blocks``. ``baseline`` / ``candidate`` run one batch-1 inference each."""
    clock = CLOCKS[plan.clock]
    warm: list[float] = []
    for infer in (baseline, candidate):
        infer()  # first inference (allocations, lazy init): never timed
        warm += _time_block(infer, plan.warmup, clock)
    n = plan.block_size or size_block(warm, plan.block_ms)
    import os
    import platform

    timing = ABTiming(block_size=n, clock=plan.clock, process={"pid": os.getpid(), "arch": platform.machine()})
    sides = {"baseline": baseline, "candidate": candidate}
    start = time.monotonic()
    try:
        while True:
            b = len(timing.baseline)
            order = ("baseline", "candidate") if b % 2 == 0 else ("candidate", "baseline")
            first, second = _time_pairs(sides[order[0]], sides[order[1]], n, clock)
            got = {order[0]: first, order[1]: second}
            timing.baseline.append(got["baseline"])
            timing.candidate.append(got["candidate"])
            timing.first.append(order[0])
            timing.elapsed_s = time.monotonic() - start
            if should_stop(timing.baseline, timing.candidate):
                timing.stopped = "rule"
                break
            if timing.elapsed_s >= plan.max_seconds:
                timing.stopped = "max_seconds"
                break
            if len(timing.baseline) >= plan.max_blocks:
                timing.stopped = "max_blocks"
                break
    except KeyboardInterrupt:
        timing.stopped = "interrupted"
        timing.elapsed_s = time.monotonic() - start
    return timing
