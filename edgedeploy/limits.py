"""One validation of every user-given number: the CLI, the public API and the benchmark suite all call these.

Each ``check_*`` function raises :class:`~edgedeploy.errors.ConfigError` (exit code 2) with one line naming the
option, the allowed range and the value given, *before* anything is built, exported or started; NaN and infinities
are refused everywhere. The bounds are documented constants so that scripts can read them:

====================  =========================================  ==============================================
option                allowed                                    why
====================  =========================================  ==============================================
``--iterations``      :data:`ITERATIONS` = 1 … 100 000           bounded run time; 100 000 is ~15 min at 10 ms
``--warmup``          :data:`WARMUP` = 0 … 10 000
``--threads``         1 … the device's cores                     more intra-op threads than cores only spin
                      (``--allow-oversubscribe``: up to          (onnxruntime busy-waits: ``--threads 9999`` on
                      :data:`OVERSUBSCRIBE_FACTOR` × cores,      2 cores drove the load average near 6 000);
                      with a warning); :data:`MAX_THREADS` when  never more than :data:`MAX_THREADS`
                      the device's cores are unknown
``--input-size``      :data:`INPUT_SIZE` = 16 … 2048 px          positive; 2048² is already ~50 MB per input
``--input-shape``     1,C,H,W: C ≤ :data:`MAX_CHANNELS`,         batch 1; same memory bound
                      H, W in 1 … 2048
``--opset``           :data:`edgedeploy.registry.OPSET_RANGE`    what the exporters accept
``--atol``            ≥ 0, finite                                an absolute error bound
``--min-cosine``      −1 … 1                                     the range of a cosine
``--min-top1``        0 … 1                                      a fraction of inputs
``--tolerance``       ≥ 0, finite                                bisection's relative error bound
``--alpha``           0 < alpha < 1 (open)                       a significance level
``--threshold``       ≥ 0 %, finite                              a relative change
``--min-abs-ms``      ≥ 0 ms, finite                             an absolute change
``profile --depth``   :data:`PROFILE_DEPTH` = 0 … 32             module-path depth (0: op-owning modules)
``profile --top``     :data:`PROFILE_TOP` = 1 … 10 000           rows per table
====================  =========================================  ==============================================

The device's cores: locally the CPUs this process may run on (``os.sched_getaffinity``); for a board, the cores
its profile lists (``clusters``, or the bits of ``core_mask``), else unknown.
"""

from __future__ import annotations

import math
import os
import warnings as _warnings
from typing import Any

from edgedeploy import registry
from edgedeploy.errors import ConfigError

#: allowed ``--iterations`` (inclusive)
ITERATIONS = (1, 100_000)
#: allowed ``--warmup`` (inclusive)
WARMUP = (0, 10_000)
#: allowed ``--input-size`` in pixels (inclusive); a model may further require a multiple (its card says)
INPUT_SIZE = (16, 2048)
#: at most this many input channels in ``--input-shape``
MAX_CHANNELS = 64
#: with ``--allow-oversubscribe``, at most this many threads per core
OVERSUBSCRIBE_FACTOR = 4
#: never more threads than this, whatever the device (also the cap when the device's cores are unknown)
MAX_THREADS = 256
#: allowed ``profile --depth`` and ``--top`` (inclusive)
PROFILE_DEPTH = (0, 32)
PROFILE_TOP = (1, 10_000)


class OversubscribeWarning(UserWarning):
    """More threads than cores were allowed with ``allow_oversubscribe``."""


def _finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number (got {value!r})") from None
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number (got {value!r})")
    return v


def _int_in(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a whole number (got {value!r})") from None
        if not as_float.is_integer():
            raise ConfigError(f"{name} must be a whole number (got {value!r})")
        value = int(as_float)
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi} (got {value})")
    return value


def local_cores() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``, else ``os.cpu_count()``), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def profile_cores(profile: Any) -> int | None:
    """Cores a device profile lists (its clusters, else its ``core_mask``), or None when it says nothing."""
    if profile is None or getattr(profile, "transport", None) == "local":
        return local_cores()
    cores = {c for cl in (getattr(profile, "clusters", None) or []) for c in cl.cores}
    if cores:
        return len(cores)
    mask = getattr(profile, "core_mask", None)
    if mask:
        return bin(int(mask, 16)).count("1")
    return None


def check_iterations(iterations: Any) -> int:
    """``iterations`` in :data:`ITERATIONS`; returns it as int."""
    return _int_in("--iterations", iterations, *ITERATIONS)


def check_warmup(warmup: Any) -> int:
    """``warmup`` in :data:`WARMUP`; returns it as int."""
    return _int_in("--warmup", warmup, *WARMUP)


def check_threads(threads: Any, device_cores: int | None = None, allow_oversubscribe: bool = False) -> list[str]:
    """``threads`` (None: the default, always fine) against the device's cores; returns warnings (one line each).

    Above ``device_cores``: :class:`ConfigError`, unless ``allow_oversubscribe`` (then a warning, up to
    :data:`OVERSUBSCRIBE_FACTOR` × cores). Never above :data:`MAX_THREADS`.
    """
    if threads is None:
        return []
    n = _int_in("--threads", threads, 1, MAX_THREADS)
    if device_cores is None:
        return []
    if n <= device_cores:
        return []
    if not allow_oversubscribe:
        raise ConfigError(
            f"--threads {n} is more than the device's {device_cores} cores: the extra threads only spin "
            "(give at most that many, or --allow-oversubscribe to insist)"
        )
    cap = min(MAX_THREADS, OVERSUBSCRIBE_FACTOR * device_cores)
    if n > cap:
        raise ConfigError(
            f"--threads {n} is more than {OVERSUBSCRIBE_FACTOR}x the device's {device_cores} cores "
            f"(at most {cap}, even with --allow-oversubscribe)"
        )
    return [f"{n} threads on {device_cores} cores: oversubscribed (--allow-oversubscribe); latencies will suffer"]


def check_run_options(
    iterations: Any,
    warmup: Any,
    threads: Any = None,
    device_cores: int | None = None,
    allow_oversubscribe: bool = False,
) -> list[str]:
    """Check a benchmark's ``iterations``, ``warmup`` and ``threads`` (see the module docstring).

    ``device_cores``: the cores of the device the run is for (None: unknown; then only :data:`MAX_THREADS`
    applies; use :func:`local_cores` or :func:`profile_cores`). Returns warnings (oversubscription); raises
    :class:`ConfigError`.
    """
    check_iterations(iterations)
    check_warmup(warmup)
    return check_threads(threads, device_cores, allow_oversubscribe)


def check_input_size(input_size: Any) -> int | None:
    """``input_size`` (pixels, square side; None: the card's) in :data:`INPUT_SIZE`. ``0`` is refused, not
    taken to mean the default."""
    if input_size is None:
        return None
    return _int_in("--input-size", input_size, *INPUT_SIZE)


def check_input_shape_bounds(dims: Any) -> None:
    """An NCHW shape's channels (1 … :data:`MAX_CHANNELS`) and sides (1 … ``INPUT_SIZE[1]`` px) are bounded."""
    _, c, h, w = (int(d) for d in dims)
    if not 1 <= c <= MAX_CHANNELS:
        raise ConfigError(f"--input-shape channels must be between 1 and {MAX_CHANNELS} (got {c})")
    for side in (h, w):
        if not 1 <= side <= INPUT_SIZE[1]:
            raise ConfigError(f"--input-shape height and width must be between 1 and {INPUT_SIZE[1]} (got {h}x{w})")


def check_opset(opset: Any) -> int | None:
    """``opset`` (None: the default) in :data:`edgedeploy.registry.OPSET_RANGE`."""
    if opset is None:
        return None
    lo, hi = registry.OPSET_RANGE
    return _int_in("--opset", opset, lo, hi)


def check_parity_thresholds(
    atol: Any = None,
    min_cosine: Any = None,
    min_top1: Any = None,
    max_rel: Any = None,
    tolerance: Any = None,
) -> None:
    """Parity gates: ``atol`` / ``max_rel`` / ``tolerance`` ≥ 0, ``min_cosine`` in [−1, 1], ``min_top1`` in [0, 1];
    None means "not given"."""
    for name, value in (("--atol", atol), ("--max-rel", max_rel), ("--tolerance", tolerance)):
        if value is not None and _finite(name, value) < 0:
            raise ConfigError(f"{name} must be 0 or more (got {value})")
    if min_cosine is not None and not -1.0 <= _finite("--min-cosine", min_cosine) <= 1.0:
        raise ConfigError(f"--min-cosine must be between -1 and 1 (got {min_cosine})")
    if min_top1 is not None and not 0.0 <= _finite("--min-top1", min_top1) <= 1.0:
        raise ConfigError(f"--min-top1 must be between 0 and 1 (a fraction of inputs; got {min_top1})")


def check_thresholds_object(thresholds: Any) -> None:
    """A :class:`~edgedeploy.export.parity.Thresholds` (or anything with its fields): same domains as
    :func:`check_parity_thresholds`."""
    if thresholds is None:
        return
    check_parity_thresholds(
        atol=getattr(thresholds, "max_abs_error", None),
        min_cosine=getattr(thresholds, "min_cosine", None),
        min_top1=getattr(thresholds, "min_top1", None),
        max_rel=getattr(thresholds, "max_rel_error", None),
    )


def check_export_options(opts: Any) -> None:
    """Everything numeric ``export`` takes (see the module docstring): ``opts`` is an
    :class:`~edgedeploy.options.ExportOptions` (its ``opset``, ``input_size``, ``atol``, ``min_cosine``,
    ``min_top1``); raises :class:`ConfigError`."""
    check_opset(opts.opset)
    check_input_size(opts.input_size)
    check_parity_thresholds(atol=opts.atol, min_cosine=opts.min_cosine, min_top1=opts.min_top1)
    seconds = _finite("--int8-speed-seconds", opts.int8_speed_seconds)
    if not 0 < seconds <= 600:
        raise ConfigError(f"--int8-speed-seconds must be in (0, 600] (got {opts.int8_speed_seconds})")


def check_alpha(alpha: Any) -> float:
    """A significance level: 0 < alpha < 1."""
    a = _finite("--alpha", alpha)
    if not 0.0 < a < 1.0:
        raise ConfigError(f"--alpha must be between 0 and 1, both excluded (got {alpha})")
    return a


def check_compare_rule(threshold_pct: Any, alpha: Any, min_abs_ms: Any) -> None:
    """``compare``'s rule: threshold ≥ 0 %, 0 < alpha < 1, min-abs-ms ≥ 0 (all finite)."""
    if _finite("--threshold", threshold_pct) < 0:
        raise ConfigError(f"--threshold must be 0 % or more (got {threshold_pct})")
    check_alpha(alpha)
    if _finite("--min-abs-ms", min_abs_ms) < 0:
        raise ConfigError(f"--min-abs-ms must be 0 or more (got {min_abs_ms})")


def check_profile_options(depth: Any, top: Any) -> None:
    """``profile --depth`` (:data:`PROFILE_DEPTH`) and ``--top`` (:data:`PROFILE_TOP`); :class:`ConfigError`."""
    _int_in("--depth", depth, *PROFILE_DEPTH)
    _int_in("--top", top, *PROFILE_TOP)


def warn(messages: list[str]) -> None:
    """Issue each message as an :class:`OversubscribeWarning` (for library callers; the CLI prints them)."""
    for m in messages:
        _warnings.warn(m, OversubscribeWarning, stacklevel=3)
