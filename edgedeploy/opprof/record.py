"""The profile record: the same schema for every runtime (onnxruntime, MNN, torch).

A runtime profiler (``edgedeploy.opprof.ort`` / ``mnn`` / ``torch_prof``) returns a :class:`RawProfile`: per-op
times of each measured run. :func:`build_profile` joins it to ``nn.Module`` paths (through the source map),
averages over the runs nearest the median (:func:`central_runs`) and rolls it up.

:class:`Profile` (``to_dict`` is what ``edgedeploy profile --json`` prints)::

    {"runtime": "mnn", "model": "edgeformer_s", "artifact": "…/edgeformer_s.mnn", "format": "mnn",
     "threads": 2, "iterations": 50, "warmup": 10,
     "total_ms": 27.1,             # Σ over ops of the op's mean time per run (ms), runs nearest the median
     "bench_median_ms": 26.0,      # median of the bench harness's timed runs, same process, same input (ms)
     "total_vs_bench": 1.04,       # total_ms / bench_median_ms
     "unattributed_ms": 0.3,       # op time on no named module (root module or unplaced ops), ms
     "attributed_share": 0.99,     # 1 - unattributed_ms / total_ms
     "run_ms": 27.9,               # the runtime's own per-run time while profiling (median; ms) or null
     "modules": [{"module": "layer_4.1.spatial_global_rep.0", "ms": 0.8, "share": 0.03, "ops": 12,
                  "macs": 2.1e6, "gmacs_per_s": 2.6}],          # per op-owning module (self time), sorted by ms
     "stages": [{"module": "layer_4", …}],                       # per top-level child (inclusive)
     "ops": [{"name": "/layer_1/…/Conv_output_0", "op_type": "Convolution", "module": "layer_1.0.block.conv",
              "ms": 0.41, "calls": 1}],                          # execution order; ms = mean per run
     "overhead": {…}, "notes": […], "sourcemap": "export" | "derived", "env": {"cpu": …, "loadavg": […]}}

``module`` is the dotted ``named_modules()`` path of the original (not lowered) module; ``share`` a fraction of
``total_ms``; ``macs`` multiply-accumulates of one batch-1 pass (conv + linear + matmul, ``FlopCounterMode``;
self MACs for ``modules`` rows, inclusive for ``stages``), ``gmacs_per_s`` = macs / ms / 1e6 (null without MACs).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgedeploy._util import cpuinfo_model_name


@dataclass
class RawProfile:
    """What a runtime profiler measured. ``samples[name]`` holds the op's time in each measured run (ms, summed
    over its calls in that run); ``order`` is execution order; ``run_ms`` the runtime's own per-run times."""

    runtime: str
    op_types: dict[str, str]
    samples: dict[str, list[float]]
    order: list[str]
    calls: dict[str, int] = field(default_factory=dict)
    run_ms: list[float] = field(default_factory=list)
    modules: dict[str, str | None] | None = None  # set by profilers that know the module directly (torch)
    graph: list[Any] | None = None  # GraphNodes of the executed graph, for the source map's neighbour pass
    overhead: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return max((len(v) for v in self.samples.values()), default=0)


@dataclass
class OpRow:
    name: str
    op_type: str
    module: str | None
    ms: float
    calls: int = 1


@dataclass
class ModuleRow:
    module: str
    ms: float
    share: float
    ops: int
    macs: int | None = None
    gmacs_per_s: float | None = None


@dataclass
class Profile:
    """See the module docstring; every time is in ms."""

    runtime: str
    model: str
    artifact: str | None
    format: str
    threads: int
    iterations: int
    warmup: int
    total_ms: float
    bench_median_ms: float | None
    unattributed_ms: float
    run_ms: float | None
    ops: list[OpRow]
    modules: list[ModuleRow]
    stages: list[ModuleRow]
    overhead: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sourcemap: str = "export"
    env: dict[str, Any] = field(default_factory=dict)
    macs: Mapping[str, int] | None = None

    @property
    def attributed_share(self) -> float:
        return 1.0 - self.unattributed_ms / self.total_ms if self.total_ms > 0 else 0.0

    @property
    def total_vs_bench(self) -> float | None:
        return self.total_ms / self.bench_median_ms if self.bench_median_ms else None

    def rollup(self, depth: int) -> list[ModuleRow]:
        """Module rows with paths cut to ``depth`` dotted components (``layer_4.1`` at depth 2), inclusive."""
        return rollup(self.ops, self.total_ms, lambda m: ".".join(m.split(".")[:depth]), self.macs)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "runtime": self.runtime,
            "model": self.model,
            "artifact": self.artifact,
            "format": self.format,
            "threads": self.threads,
            "iterations": self.iterations,
            "warmup": self.warmup,
            "total_ms": self.total_ms,
            "bench_median_ms": self.bench_median_ms,
            "total_vs_bench": self.total_vs_bench,
            "unattributed_ms": self.unattributed_ms,
            "attributed_share": self.attributed_share,
            "run_ms": self.run_ms,
            "modules": [asdict(r) for r in self.modules],
            "stages": [asdict(r) for r in self.stages],
            "ops": [asdict(o) for o in self.ops],
            "overhead": self.overhead,
            "notes": self.notes,
            "sourcemap": self.sourcemap,
            "env": self.env,
        }
        return d


def named(module: str | None) -> bool:
    """True for an op placed on a named module (not the root ``""``, not unplaced ``None``)."""
    return bool(module)


def rollup(
    ops: list[OpRow], total_ms: float, key: Callable[[str], str], macs: Mapping[str, int] | None
) -> list[ModuleRow]:
    """Sum op time per ``key(module)`` over ops on named modules; MACs inclusive of the key's module."""
    acc: dict[str, list[float]] = {}
    for o in ops:
        if not named(o.module):
            continue
        k = key(o.module)  # type: ignore[arg-type]
        row = acc.setdefault(k, [0.0, 0])
        row[0] += o.ms
        row[1] += 1
    out = [_row(k, ms, int(n), total_ms, macs.get(k) if macs else None) for k, (ms, n) in acc.items()]
    return sorted(out, key=lambda r: -r.ms)


def _row(module: str, ms: float, n: int, total_ms: float, macs: int | None) -> ModuleRow:
    gmacs = macs / (ms * 1e6) if macs and ms > 0 else None
    return ModuleRow(module, ms, ms / total_ms if total_ms > 0 else 0.0, n, macs, gmacs)


def self_macs(inclusive: Mapping[str, int]) -> dict[str, int]:
    """MACs of a module minus those of its direct children (inclusive counts keyed by dotted path)."""
    out = dict(inclusive)
    for path, v in inclusive.items():
        if path:
            parent = path.rpartition(".")[0]
            if parent in out:
                out[parent] -= v
    return out


@dataclass(frozen=True)
class ProfileRun:
    """What was profiled and how: the model, its artifact (``None``: the eager torch module) and format, threads,
    profiled iterations and warm-up runs, the bench median measured alongside (ms), MACs per module path, and
    where the source map came from (``export`` / ``derived``)."""

    model: str
    artifact: str | None
    fmt: str
    threads: int
    iterations: int
    warmup: int
    bench_median_ms: float | None = None
    macs: Mapping[str, int] | None = None
    sourcemap: str = "export"


def build_profile(raw: RawProfile, resolve: Callable[[RawProfile], dict[str, str | None]], run: ProfileRun) -> Profile:
    """Average ``raw`` over its runs nearest the median (:func:`central_runs`), place ops on modules with ``resolve``,
    roll up (``run``: what was profiled, :class:`ProfileRun`)."""
    model, artifact, fmt, threads, iterations, warmup = (
        run.model, run.artifact, run.fmt, run.threads, run.iterations, run.warmup
    )  # fmt: skip
    bench_median_ms, macs, sourcemap = run.bench_median_ms, run.macs, run.sourcemap
    where = raw.modules if raw.modules is not None else resolve(raw)
    keep = central_runs(raw)
    ops = [
        OpRow(n, raw.op_types.get(n, "?"), where.get(n), float(np.mean(np.asarray(raw.samples[n])[keep])),
              raw.calls.get(n, 1))
        for n in raw.order
    ]  # fmt: skip
    total = sum(o.ms for o in ops)
    unattributed = sum(o.ms for o in ops if not named(o.module))
    own = self_macs(macs) if macs else None
    modules = rollup(ops, total, lambda m: m, own)
    stages = rollup(ops, total, lambda m: m.split(".")[0], macs)
    return Profile(
        runtime=raw.runtime, model=model, artifact=artifact, format=fmt, threads=threads, iterations=iterations,
        warmup=warmup, total_ms=total, bench_median_ms=bench_median_ms, unattributed_ms=unattributed,
        run_ms=float(np.median(raw.run_ms)) if raw.run_ms else None, ops=ops, modules=modules, stages=stages,
        overhead={**raw.overhead, "runs_averaged": len(keep), "runs_measured": raw.runs,
                  "profiled_run_vs_bench": (float(np.median(raw.run_ms)) / bench_median_ms
                                            if raw.run_ms and bench_median_ms else None)},
        notes=list(raw.notes), sourcemap=sourcemap, env=machine(), macs=macs,
    )  # fmt: skip


def central_runs(raw: RawProfile) -> np.ndarray:
    """Indices of the half of the runs (rounded up) whose op-time totals are nearest the median total.

    The op times are averaged over these runs only: on a shared host slow phases make the run times bimodal, and a
    plain or interquartile mean then lands between the modes, while the bench figure it is compared with is a
    median. With fewer than 4 runs all are used.
    """
    n = raw.runs
    if n < 4:
        return np.arange(n)
    totals = np.zeros(n)
    for v in raw.samples.values():
        totals[: len(v)] += np.asarray(v)
    nearest = np.argsort(np.abs(totals - np.median(totals)), kind="stable")[: (n + 1) // 2]
    return np.sort(nearest)


def machine() -> dict[str, Any]:
    """CPU model, logical cores and the 1/5/15-min load average, recorded with every profile."""
    cpu = cpuinfo_model_name() or platform.processor() or platform.machine()
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "loadavg": load}
