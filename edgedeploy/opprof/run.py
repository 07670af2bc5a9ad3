"""``edgedeploy profile``: resolve SPEC|ARTIFACT, measure the bench median, profile per op, join to modules.

Order of work in one process, on the same input (the embedded photo, as ``bench``): the bench runtime's own
session (loaded as ``edgedeploy bench`` loads it) timed by the bench harness
(:func:`edgedeploy.bench.harness.measure`) and the runtime's profiler alternate in blocks of :data:`BLOCK` runs
(several runtimes: all of them in turn), so a slow phase of a shared host falls on all; ``bench_median_ms`` is the
median of all harness samples. Per-module MACs come from ``FlopCounterMode`` on the original module
(conv + linear + matmul).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.data import model_input
from edgedeploy.errors import ConfigError, RuntimeUnavailableError
from edgedeploy.export.sourcemap import SourceMap, derived_sourcemap, sourcemap_path
from edgedeploy.opprof.record import Profile, ProfileRun, RawProfile, build_profile

#: bench and profiler runs alternate in blocks of this many runs
BLOCK = 5


def check_runtime(name: str) -> str:
    """The canonical runtime name, or :class:`RuntimeUnavailableError` (exit 3) for a runtime known to expose no
    per-op timings (litert; ``RuntimeSpec.profiler_missing``), :class:`ConfigError` (exit 2) for one without a
    profiler here (``RuntimeSpec.profiler`` unset)."""
    from edgedeploy import registry

    spec = registry.runtime_spec(name)  # UnknownRuntimeError (exit 2)
    if spec.profiler_missing:
        raise RuntimeUnavailableError(spec.profiler_missing)
    if not spec.profiler:
        have = ", ".join(registry.profiler_runtimes())
        raise ConfigError(f"no per-operator profiler for runtime {spec.name} (profilers: {have})")
    return spec.name


def _op_name(op: object) -> str:
    return getattr(op, "__name__", str(op)).split(".")[0]


def module_macs(module: object, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Inclusive MACs (conv + linear + matmul) per dotted module path of one batch-1 NCHW pass, FlopCounterMode.

    Returns {} when the module cannot be counted (an odd forward); MACs are then left out of the tables."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgedeploy.zoo import _MAC_OPS

    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            module(torch.zeros(*input_shape))  # type: ignore[operator]
    except Exception:  # noqa: BLE001 - MACs are an extra column, never a reason to lose a profile
        return {}
    out: dict[str, int] = {}
    for key, per_op in counter.get_flop_counts().items():
        if key == "Global":
            continue
        path = key.partition(".")[2]  # "EdgeFormer.layer_1.0" → "layer_1.0"; the root class alone → ""
        macs = sum(int(f) // 2 for op, f in per_op.items() if _op_name(op) in _MAC_OPS)
        out[path] = out.get(path, 0) + macs
    return out


@dataclass
class _Job:
    """One runtime's share of a profile: what it runs, its profiler, its bench session and samples."""

    runtime: str
    resolved: Any
    module: Any
    x: np.ndarray
    sourcemap: SourceMap | None
    sourcemap_origin: str
    profiler: Any = None
    bench_infer: Callable[[], object] | None = None
    reload: bool = False
    bench_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ProfileRequest:
    """How to profile (what :func:`edgedeploy.api.profile` takes besides the target and the runtimes): the
    ``device`` (local only), ``iterations`` profiled runs, ``warmup`` untimed ones, intra-op ``threads`` (None:
    all cores), ``progress(msg)`` called at each step."""

    device: str = "local"
    iterations: int = 50
    warmup: int = 10
    threads: int | None = None
    progress: Callable[[str], None] | None = None


def profile(target: str, runtime: str, request: ProfileRequest | None = None) -> Profile:
    """Profile ``target`` (a zoo model name or card, exported or reused from the cache; or an artifact file) on
    ``runtime``; see :mod:`edgedeploy.opprof.record` for the record and :func:`profile_many`."""
    return profile_many(target, [runtime], request)[0]


def profile_many(target: str, runtimes: Sequence[str], request: ProfileRequest | None = None) -> list[Profile]:
    """Profile ``target`` on each of ``runtimes``, all interleaved in blocks of :data:`BLOCK` runs (runtime A's
    bench block, A's profiler block, B's bench block, B's profiler block, …), one :class:`Profile` per runtime.

    ``request.iterations`` profiled runs and as many bench-harness runs per runtime, after ``1 + warmup`` untimed
    ones. The request is checked here, once, before any export: raises :class:`RuntimeUnavailableError` (litert;
    exit 3), :class:`ConfigError` (a device other than local, bad counts, no profiler for a runtime),
    :class:`~edgedeploy.errors.ArtifactError`, :class:`~edgedeploy.errors.UnknownModelError`.
    """
    from edgedeploy.bench.harness import check_run_args, measure

    req = request or ProfileRequest()
    iterations, warmup = req.iterations, req.warmup
    say = req.progress or (lambda _m: None)
    names = [check_runtime(r) for r in runtimes]
    check_run_args(iterations, warmup, req.threads)
    if req.device != "local":
        raise ConfigError(f"profile runs on the local device only (got --device {req.device})")
    threads = req.threads or os.cpu_count() or 1
    jobs = [_prepare(target, rt, say) for rt in names]
    for job in jobs:
        # the bench session and the profiler's never live together: MNN's thread pool serves two runtimes only
        # (edgedeploy.opprof.mnn), and an idle onnxruntime session's intra-op threads compete with the active one
        job.reload = job.runtime in ("mnn", "onnxruntime")
        job.profiler = _profiler(job.runtime, job.resolved.artifact, job.module, job.x, threads, job.reload)
        job.profiler.run(0, timed=False, warm=1 + warmup)
        if not job.reload:
            job.bench_infer = _bench_session(job.resolved, job.module, threads, job.x)
    say(f"profiling {jobs[0].resolved.model} on {', '.join(names)}: {iterations} runs each, interleaved with bench")
    done = 0
    while done < iterations:
        n = min(BLOCK, iterations - done)
        for job in jobs:
            infer = job.bench_infer or _bench_session(job.resolved, job.module, threads, job.x)
            # measure() runs one untimed inference first; so does the profiler, after switching sessions
            job.bench_ms += measure(infer, iterations=n, warmup=warmup if not done else int(job.reload)).samples_ms
            del infer
            if job.reload:
                gc.collect()
            job.profiler.run(n, warm=1)
        done += n
        say(f"profiled {done}/{iterations} runs")
    macs_cache: dict[tuple[str, int], dict[str, int] | None] = {}
    out = []
    for job in jobs:
        nchw = tuple(job.x.shape)
        if job.x.shape[1] != 3 and job.x.shape[-1] == 3:
            nchw = (1, 3, job.x.shape[1], job.x.shape[2])
        key = (job.resolved.model, tuple(nchw))
        if key not in macs_cache:
            macs_cache[key] = module_macs(job.module, tuple(nchw)) if job.module is not None else None
        out.append(_finish(job, threads, iterations, warmup, macs_cache[key]))
    return out


def _prepare(target: str, rt: str, say: Callable[[str], None]) -> _Job:
    from edgedeploy.bench.run import resolve_target
    from edgedeploy.export.manifest import read_manifest
    from edgedeploy.zoo import build_model

    resolved = resolve_target(target, rt, progress=say)
    shape = tuple(resolved.input_shape)
    nhwc = len(shape) == 4 and shape[1] != 3 and shape[-1] == 3  # TFLite --layout NHWC
    module = resolved.module
    if module is None:
        try:
            module = build_model(resolved.model, (shape[1] if nhwc else shape[-1]) if len(shape) == 4 else None)
        except Exception:  # noqa: BLE001 - an artifact of a model not in the zoo: no MACs, the source map's names
            module = None
    if len(shape) != 4:
        raise ConfigError(f"cannot tell the input shape of {target}; export it with edgedeploy")
    if nhwc:
        x = model_input((1, 3, shape[1], shape[2]), resolved.mean, resolved.std).transpose(0, 2, 3, 1).copy()
    else:
        x = model_input(shape, resolved.mean, resolved.std)
    sm: SourceMap | None = None
    origin = "module"
    if resolved.artifact is not None:
        manifest = read_manifest(resolved.artifact, verify=False)
        side_file = sourcemap_path(resolved.artifact)
        named_file = getattr(manifest, "sourcemap", None) if manifest is not None else None
        if named_file:
            side_file = resolved.artifact.with_name(str(named_file))
        if side_file.is_file():
            sm, origin = SourceMap.load(side_file), "export"
        elif module is not None:
            sm, origin = derived_sourcemap(module, resolved.artifact, resolved.format), "derived"
        else:
            raise ConfigError(f"{resolved.artifact} has no source map ({side_file.name}) and its model is unknown")
    return _Job(rt, resolved, module, x, sm, origin)


def _finish(job: _Job, threads: int, iterations: int, warmup: int, macs: dict[str, int] | None) -> Profile:
    raw = job.profiler.result()
    sm = job.sourcemap

    def resolve(r: RawProfile) -> dict[str, str | None]:
        assert sm is not None
        if r.graph:
            placed = sm.resolve(r.graph)
            return {n: placed[n] if n in placed else sm.lookup(n) for n in r.order}
        return {n: sm.lookup(n) for n in r.order}

    resolved = job.resolved
    run = ProfileRun(
        resolved.model, str(resolved.artifact) if resolved.artifact else None, resolved.format, threads, iterations,
        warmup, float(np.median(job.bench_ms)), macs, job.sourcemap_origin,
    )  # fmt: skip
    prof = build_profile(raw, resolve, run)
    if job.sourcemap_origin == "derived":
        prof.notes.append("no source map beside the artifact: ops placed by their scope names alone (export again)")
    return prof


def _bench_session(resolved: object, module: object, threads: int, x: np.ndarray) -> Callable[[], object]:
    """The bench runtime's own session (as ``edgedeploy bench`` loads it) bound to ``x``."""
    from edgedeploy.runtimes.base import get_runtime
    from edgedeploy.runtimes.torch_rt import TorchRuntime

    if resolved.artifact is None:  # type: ignore[attr-defined]
        return TorchRuntime.from_module(module, tuple(x.shape), threads).prepare(x)  # type: ignore[arg-type]
    session = get_runtime(resolved.runtime).load(resolved.artifact, threads)  # type: ignore[attr-defined]
    return session.prepare(x)


def _profiler(rt: str, artifact: Path | None, module: object, x: np.ndarray, threads: int, reload: bool = False) -> Any:
    if rt == "onnxruntime":
        from edgedeploy.opprof.ort import OrtProfiler

        assert artifact is not None
        return OrtProfiler(artifact, x, threads, keep_open=not reload)
    if rt == "mnn":
        from edgedeploy.opprof.mnn import MnnProfiler

        assert artifact is not None
        return MnnProfiler(artifact, x, threads, keep_open=not reload)
    from edgedeploy.opprof.torch_prof import TorchProfiler

    if module is None:
        raise ConfigError("the torch runtime profiles a zoo model, not a file")
    return TorchProfiler(module, x, threads)  # type: ignore[arg-type]
