"""``edgedeploy bench``: resolve what to time (model name or artifact file), load it, time it, record it.

A model name is exported first with :func:`~edgedeploy.export.pipeline.cached_export` (or its cached artifact
reused); a file's format is inferred from its suffix and checked against its manifest when one lies beside it.
Local runs time the runtime in this process with :func:`~edgedeploy.bench.harness.measure`; other devices go
through :func:`edgedeploy.devices.remote.bench_on_device`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedeploy import registry
from edgedeploy._util import sha256_file
from edgedeploy.bench.envinfo import local_fingerprint
from edgedeploy.bench.harness import check_run_args, measure
from edgedeploy.data import model_input
from edgedeploy.errors import ArtifactError
from edgedeploy.export.manifest import read_manifest
from edgedeploy.limits import check_input_size, local_cores
from edgedeploy.results.result import BenchResult, utc_now_iso
from edgedeploy.runtimes.base import get_runtime

#: the runtime a model (not an artifact) is benchmarked on by default: the registry's
DEFAULT_RUNTIME = registry.DEFAULT_BENCH_RUNTIME


@dataclass
class BenchTarget:
    """What will be timed: ``artifact`` is None for the torch runtime (eager ``module``, or the zoo ``model``).

    ``mean`` / ``std`` preprocess the photo that is timed (None: ImageNet's).
    """

    model: str
    format: str
    precision: str
    runtime: str
    artifact: Path | None
    input_shape: tuple[int, ...]
    parity_status: str | None = None
    module: Any = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    #: True: the file matched its manifest's sha256; False: a file with no manifest (unverified); None: no file
    verified: bool | None = None

    def unverified_reason(self) -> str:
        """The one-line warning for a file that has no manifest."""
        return (
            f"{self.artifact} has no manifest ({self.artifact}.json): unverified, not checked against PyTorch or "
            "its export settings; timing it as is"
        )


def _is_artifact(target: Any, runtime: str | None) -> bool:
    """An artifact file to time as it is (not a model spec to export first)."""
    if not isinstance(target, (str, Path)) or not registry.is_artifact_path(target):
        return False
    if runtime is None:
        return True
    fmt = registry.format_of(target)
    return fmt in registry.runtime_spec(runtime).formats or not Path(target).is_file() or fmt != "onnx"


def resolve_target(
    target: Any,
    runtime: str | None,
    precision: str = "fp32",
    weights: str | None = None,
    input_size: int | None = None,
    progress: Callable[[str], None] | None = None,
    input_shape: Any = None,
    name: str | None = None,
) -> BenchTarget:
    """Turn ``MODEL_OR_FILE`` + ``--runtime`` into a :class:`BenchTarget`, exporting (or reusing) as needed.

    ``target`` is an artifact file, or anything :func:`edgedeploy.spec.resolve_model` takes (zoo name, card,
    callable spec, ``nn.Module``, ``.onnx`` file with a runtime that does not run ONNX). Raises
    :class:`ArtifactError` (missing / corrupt / mismatched file), :class:`ConfigError` (runtime that cannot run
    the format, bad spec), :class:`UnknownModelError`, :class:`UnknownRuntimeError`.
    """
    if _is_artifact(target, runtime):
        path = Path(target)
        fmt = registry.existing_artifact_format(path)
        rt_name = registry.check_runtime_runs(runtime or registry.default_runtime(fmt), fmt).name
        manifest = read_manifest(path, verify=True)
        if manifest is None:
            return BenchTarget(path.stem.split(".")[0], fmt, precision, rt_name, path, (), verified=False)
        if manifest.format != fmt:
            raise ArtifactError(f"{path}: its manifest describes a {manifest.format} artifact, not {fmt}")
        source = getattr(manifest, "source", None) or {}
        return BenchTarget(
            manifest.model,
            fmt,
            manifest.precision,
            rt_name,
            path,
            tuple(manifest.input.shape),
            manifest.parity.get("status"),
            mean=tuple(source["mean"]) if source.get("mean") else None,
            std=tuple(source["std"]) if source.get("std") else None,
            verified=True,
        )
    from edgedeploy.spec import resolve_model

    rt_spec = registry.runtime_spec(runtime or DEFAULT_RUNTIME)
    rt_name = rt_spec.name
    check_input_size(input_size)  # 0 is an error, not "the default"
    src = resolve_model(target, input_shape=input_shape, name=name, input_size=input_size)
    mean, std = (None, None) if src.is_zoo else (src.mean, src.std)
    if rt_name == "torch":
        module = src.build(weights)
        return BenchTarget(src.name, "torch", "fp32", "torch", None, tuple(src.input_shape), module=module,
                           mean=mean, std=std)  # fmt: skip
    from edgedeploy.export.pipeline import cached_export
    from edgedeploy.options import ExportOptions

    fmt = rt_spec.formats[0]
    outcome = cached_export(src, fmt, ExportOptions(precision=precision, weights=weights, progress=progress))
    return BenchTarget(src.name, fmt, precision, rt_name, outcome.artifact, tuple(src.input_shape),
                       outcome.parity.status, mean=mean, std=std, verified=True)  # fmt: skip


def bench_local(
    target: BenchTarget,
    iterations: int = 100,
    warmup: int = 10,
    threads: int | None = None,
    weights: str | None = None,
    on_sample: Callable[[int, float], None] | None = None,
    allow_oversubscribe: bool = False,
) -> BenchResult:
    """Load and time ``target`` in this process; every raw sample kept (see harness.measure).

    An interrupted run (Ctrl-C, runtime error mid-run) returns ``status="partial"`` with the samples measured.
    ``threads`` is at most this machine's cores unless ``allow_oversubscribe`` (see :mod:`edgedeploy.limits`).
    Raises :class:`ArtifactError` when the file's input shape differs from its manifest's.
    """
    oversubscribed = check_run_args(iterations, warmup, threads, local_cores(), allow_oversubscribe)
    threads = threads or os.cpu_count() or 1
    rt = get_runtime(target.runtime)
    t0 = time.perf_counter()
    if target.artifact is None:
        from edgedeploy.runtimes.torch_rt import TorchRuntime

        module = target.module
        if module is None:
            from edgedeploy.zoo import build_model

            module = build_model(target.model, target.input_shape[-1], weights=weights)
        session = TorchRuntime.from_module(module, target.input_shape, threads)
    else:
        session = rt.load(target.artifact, threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    shape = target.input_shape or session.input_shape
    if target.input_shape and len(session.input_shape) == 4 and tuple(session.input_shape) != tuple(shape):
        raise ArtifactError(
            f"{target.artifact}: its input shape {list(session.input_shape)} differs from its manifest's "
            f"{list(shape)}: the file or the manifest was replaced; export it again"
        )
    if len(shape) != 4:
        raise ArtifactError(f"cannot tell the input shape of {target.artifact}; export it with edgedeploy")
    if shape[1] != 3 and shape[-1] == 3:  # NHWC (TFLite --layout NHWC)
        x = model_input((1, 3, shape[1], shape[2]), target.mean, target.std).transpose(0, 2, 3, 1).copy()
    else:
        x = model_input(shape, target.mean, target.std)
    state_before = _local_state()
    started_at = utc_now_iso()
    timing = measure(session.prepare(x), iterations=iterations, warmup=warmup, on_sample=on_sample)
    finished_at = utc_now_iso()
    state_after = _local_state()
    warnings = list(oversubscribed)
    if target.verified is False:
        warnings.append(target.unverified_reason())
    from edgedeploy.devices.state import throttling

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if state_before and state_after and "error" not in state_before and "error" not in state_after:
        warnings += throttling(state_before, state_after, [], cores)
    if target.parity_status == "failed":
        warnings.append("this artifact FAILED its parity check; its latency is of a wrong model")
    if timing.interrupted is not None:
        warnings.append(
            f"interrupted after {len(timing.samples_ms)} of {iterations} iterations: "
            f"{type(timing.interrupted).__name__}: {timing.interrupted}"
        )
    env = local_fingerprint({rt.name: rt.version()})
    env["threads"] = threads
    return BenchResult(
        model=target.model,
        format=target.format,
        precision=target.precision,
        runtime=target.runtime,
        device="local",
        threads=threads,
        iterations=iterations,
        warmup=warmup,
        input_shape=list(shape),
        samples_ms=timing.samples_ms,
        load_ms=load_ms,
        first_ms=timing.first_ms,
        status="partial" if timing.interrupted is not None else "complete",
        artifact=({"path": str(target.artifact), "sha256": sha256_file(target.artifact)} if target.artifact else {}),
        warnings=warnings,
        device_state={"before": state_before, "after": state_after},
        env=env,
        git_commit=env.get("git_commit") or env.get("package_commit"),  # the checkout run from, else edgedeploy's
        started_at=started_at,
        finished_at=finished_at,
        verified=target.verified,
    )


def _local_state() -> dict:
    """Governor, frequencies, temperatures and load of this machine (best effort; sysfs may say nothing in a VM)."""
    from edgedeploy.devices.local import LocalTransport
    from edgedeploy.devices.state import read_device_state

    try:
        return read_device_state(LocalTransport())
    except Exception as e:  # noqa: BLE001 - state readings are best effort and must not cost a measurement
        return {"error": f"{type(e).__name__}: {e}"}
