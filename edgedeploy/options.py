"""The typed requests every layer passes down as they are: :class:`ExportOptions` and :class:`BenchOptions`.

The public API (:mod:`edgedeploy.api`) builds them from its keyword arguments (unknown names refused once, there);
the export pipeline, ``--to all``, the cache and the suite runner take them as they are. Records layer: plain
data, no imports above :mod:`edgedeploy.errors`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgedeploy.errors import ConfigError


@dataclass(frozen=True)
class ExportOptions:
    """Everything :func:`export` takes besides the model and the format (``**options`` of :func:`export`).

    ``thresholds`` is a :class:`~edgedeploy.export.parity.Thresholds` or a dict of its fields; ``atol``,
    ``min_cosine``, ``min_top1`` override single gates. ``layout`` (NCHW / NHWC, TFLite), ``int8_mode``
    (``full`` / ``weight``), ``calibration`` (a folder of images) are format options. ``progress(msg)`` is
    called at each step. ``cache``: reuse (or make) the artifact in edgedeploy's cache (``$EDGEDEPLOY_CACHE``,
    keyed by the weights' hash and every setting; what ``bench`` of a model does) instead of writing into ``out``.

    ``int8_speed_check`` (int8 only): after the export, time the int8 artifact against the same module's fp32
    artifact of the format (exported into the cache, or reused from it) on this host with the format's host
    runtime, 1 thread, process CPU time, interleaved blocks, at most ``int8_speed_seconds`` (s) of timing
    (:mod:`edgedeploy.bench.int8_speed`); the manifest's ``int8_speed`` and the outcome's summary say whether int8
    is faster or slower here. On by default: int8 exists to be faster, it is not on every runtime and CPU (MNN's
    int8 on x86 ran at 0.70× its fp32), an int8 export already spends seconds calibrating, and the check costs at
    most ``int8_speed_seconds`` plus one fp32 export that the cache keeps. Turn it off (``False``,
    ``--no-int8-speed-check``) for CI or fast exports: the manifest then has no ``int8_speed``.
    """

    precision: str = "fp32"
    parity: bool = True
    opset: int | None = None
    weights: str | Path | None = None
    input_size: int | None = None
    lowering: str = "default"
    thresholds: Any = None
    atol: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None
    layout: str = "NCHW"
    int8_mode: str | None = None
    calibration: str | Path | None = None
    progress: Callable[[str], None] | None = None
    cache: bool = False
    int8_speed_check: bool = True
    int8_speed_seconds: float = 5.0

    def __post_init__(self) -> None:
        from edgedeploy.apitypes import check_field_types

        check_field_types(self, "export")  # ConfigError, not a TypeError deep inside an exporter

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ExportOptions:
        """Build from keyword arguments; :class:`ConfigError` names unknown ones."""
        return _from_kwargs(cls, "export", kwargs)


@dataclass(frozen=True)
class BenchOptions:
    """Everything :func:`bench` takes besides the target (see there).

    ``on_sample(i, ms)`` is called after each timed iteration (local runs); ``progress(msg)`` at each step;
    ``out`` writes the result (a ``.json`` file, or a result-store folder that gets one record per run).
    ``parity``: also run the parity inputs on the device and compare its outputs with the reference (PyTorch fp32);
    the result's ``board_parity`` holds the verdict (:mod:`edgedeploy.devices.board_parity`).
    ``allow_oversubscribe``: accept more ``threads`` than the device's cores (up to 4×, with a warning in the
    result); see :mod:`edgedeploy.limits` for every bound.
    """

    device: str = "local"
    runtime: str | None = None
    iterations: int = 100
    warmup: int = 10
    threads: int | None = None
    precision: str = "fp32"
    weights: str | Path | None = None
    input_shape: Any = None
    input_size: int | None = None
    name: str | None = None
    trust_on_first_use: bool = False
    allow_oversubscribe: bool = False
    on_sample: Callable[[int, float], None] | None = None
    progress: Callable[[str], None] | None = None
    out: str | Path | None = None
    parity: bool = False
    #: measure peak_rss_mb / rss_delta_mb in a fresh child process (local runs; boards always report theirs)
    memory: bool = True
    #: run back-to-back for this many seconds instead of ``iterations`` (edgedeploy.bench.sustained)
    sustained: float | None = None

    def __post_init__(self) -> None:
        from edgedeploy.apitypes import check_field_types

        check_field_types(self, "bench")  # ConfigError, not a TypeError deep inside a runtime

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> BenchOptions:
        """Build from keyword arguments; :class:`ConfigError` names unknown ones."""
        return _from_kwargs(cls, "bench", kwargs)


def _from_kwargs(cls: type, what: str, kwargs: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(f"unknown {what} option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**kwargs)
