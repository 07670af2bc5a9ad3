"""The timing harness: warm-up, then N timed batch-1 runs, every raw sample kept.

The clock (``time.perf_counter_ns``, monotonic) wraps the inference call alone; input preparation, result copies
and progress reporting happen outside the timed region. The harness's own overhead is measured in
``benchmarks/harness_overhead.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgedeploy.bench.interrupt import check as check_stop
from edgedeploy.limits import check_run_options


@dataclass
class Timing:
    """Raw timings of one run (all in ms): ``first_ms`` is the first inference after load (not in the samples)."""

    samples_ms: list[float]
    first_ms: float
    warmup_ms: list[float] = field(default_factory=list)
    interrupted: BaseException | None = None


def check_run_args(
    iterations: int,
    warmup: int,
    threads: int | None = None,
    device_cores: int | None = None,
    allow_oversubscribe: bool = False,
) -> list[str]:
    """Bounds of ``iterations``, ``warmup`` and ``threads`` (None: not given); see :mod:`edgedeploy.limits`.

    Returns oversubscription warnings; raises :class:`~edgedeploy.errors.ConfigError`.
    """
    return check_run_options(iterations, warmup, threads, device_cores, allow_oversubscribe)


def measure(
    infer: Callable[[], Any],
    iterations: int = 100,
    warmup: int = 10,
    on_sample: Callable[[int, float], None] | None = None,
) -> Timing:
    """Time ``infer()``: one first inference, ``warmup`` untimed-for-statistics runs, ``iterations`` timed runs.

    ``on_sample(i, ms)`` is called after each timed run, outside the timed region (progress bars).
    A ``KeyboardInterrupt`` or an exception raised by ``infer`` during the timed runs stops the loop; the samples
    measured so far are returned with ``interrupted`` set, so nothing measured is lost. Between runs (outside the
    timed region) it checks for a cooperative stop (:mod:`edgedeploy.bench.interrupt`: a signal during a suite, a
    case deadline), which ends the loop the same way; before the first timed sample it raises
    :class:`~edgedeploy.bench.interrupt.StopRequested`.

    Raises :class:`~edgedeploy.errors.ConfigError` for ``iterations`` or ``warmup`` out of range
    (:mod:`edgedeploy.limits`).
    """
    check_run_args(iterations, warmup)
    clock = time.perf_counter_ns
    check_stop()
    t0 = clock()
    infer()
    first_ms = (clock() - t0) / 1e6
    warm: list[float] = []
    for _ in range(warmup):
        check_stop()
        t0 = clock()
        infer()
        warm.append((clock() - t0) / 1e6)
    samples: list[float] = []
    try:
        for i in range(iterations):
            check_stop()
            t0 = clock()
            infer()
            t1 = clock()
            ms = (t1 - t0) / 1e6
            samples.append(ms)
            if on_sample is not None:
                on_sample(i, ms)
    except (KeyboardInterrupt, Exception) as e:
        if not samples:
            raise
        return Timing(samples, first_ms, warm, interrupted=e)
    return Timing(samples, first_ms, warm)
