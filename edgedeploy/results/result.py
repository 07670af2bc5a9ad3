"""The benchmark result record: raw per-iteration samples plus the environment fingerprint.

This is the one schema every producer writes (local harness, remote Python runner, parsed native tools) and every
consumer reads (``compare``, reports). Statistics are derived from ``samples_ms`` on every load/dump and never
trusted from a file.

JSON layout (``schema_version`` 1)::

    {"schema_version": 1, "model": "edgeformer_s", "format": "mnn", "precision": "fp32",
     "runtime": "mnn", "device": "local", "threads": 2, "iterations": 100, "warmup": 10,
     "input_shape": [1, 3, 256, 256], "samples_ms": [...],
     "median_ms": ..., "mean_ms": ..., "p90_ms": ..., "p99_ms": ..., "std_ms": ..., "min_ms": ..., "max_ms": ...,
     "load_ms": ..., "first_ms": ..., "status": "complete" | "partial", "source": "python-harness",
     "artifact": {"path": ..., "sha256": ...}, "warnings": [...], "device_state": {"before": {...}, "after": {...}},
     "env": {...}, "timestamp": "2026-11-21T06:00:00+00:00", "git_commit": "...",
     "verified": true | false | null,
     "board": "rk3288-a" | null, "started_at": "2026-11-21T06:00:01.250000+00:00" | null, "finished_at": ...}

``verified`` is false for a file benchmarked without a manifest beside it (nothing says what it is), true when the
file's sha256 matched its manifest, null where there is no file (the torch runtime).

``board`` (the labgrid place name for a farm run, else ``null``), ``started_at`` and ``finished_at`` (ISO 8601 UTC,
microseconds, around the timed phase: locally the warm-up and timed iterations, on a board the runner process that
loads, warms up and times) were added later; files without them load with ``null``.

Added with issue 20 (files without them load with ``null`` / empty): ``artifact_bytes`` (bytes on disk of the
artifact and its side files), ``peak_rss_mb`` and ``rss_delta_mb`` (MB = 2**20 bytes; the high-water resident set of
the process that ran the runtime and its rise from just before the model load, see :mod:`edgedeploy.bench.memory`),
``memory`` (the raw reading), ``not_measured`` (field name -> why that figure is ``null``: never reported as 0) and
``sustained`` (``--sustained``: per-iteration timestamps, thermal trace, window p50s and ``throttle_ratio``, see
:mod:`edgedeploy.bench.sustained`).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgedeploy.results.stats import summarize

SCHEMA_VERSION = 1


def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with microseconds (``started_at`` / ``finished_at``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


class BenchResult(BaseModel):
    """One benchmark run of one artifact on one device (see the module docstring for the JSON layout)."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    model: str
    format: str
    precision: str = "fp32"
    runtime: str
    device: str
    threads: int
    iterations: int
    warmup: int
    input_shape: list[int] = Field(default_factory=list)
    samples_ms: list[float]
    median_ms: float = 0.0
    mean_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    std_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    load_ms: float | None = None
    first_ms: float | None = None
    status: Literal["complete", "partial"] = "complete"
    source: str = "python-harness"
    artifact: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    device_state: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, Any] = Field(default_factory=dict)
    timestamp: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    git_commit: str | None = None
    #: True: the artifact matched its manifest (sha256); False: a file without a manifest (unverified); None: n/a
    verified: bool | None = None
    board: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    artifact_bytes: int | None = None
    peak_rss_mb: float | None = None
    rss_delta_mb: float | None = None
    memory: dict[str, Any] = Field(default_factory=dict)
    #: field name -> why it is null (a figure that could not be measured is never reported as 0)
    not_measured: dict[str, str] = Field(default_factory=dict)
    sustained: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _derive_stats(self) -> BenchResult:
        if self.samples_ms:
            for k, v in summarize(self.samples_ms).items():
                object.__setattr__(self, k, v)
        return self

    @property
    def key(self) -> tuple[str, str, str, str, str, int]:
        """(model, format, precision, runtime, device, threads): what ``compare`` matches runs on."""
        return (self.model, self.format, self.precision, self.runtime, self.device, self.threads)

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def load(cls, path: str | Path) -> BenchResult:
        return cls.model_validate(json.loads(Path(path).read_text()))
