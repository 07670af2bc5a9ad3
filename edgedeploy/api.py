"""The public Python API: :func:`export`, :func:`bench`, :func:`compare` (re-exported as ``edgedeploy.export`` …).

The command line is a thin layer over these three. Heavy modules (torch, onnx, the runtimes) are imported inside
the functions, so ``import edgedeploy`` stays cheap.

Example::

    import torch.nn as nn
    import edgedeploy

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    outcome = edgedeploy.export(net, "onnx", input_shape=(1, 3, 96, 160), out="artifacts")
    assert outcome.parity.passed
    result = edgedeploy.bench(outcome, iterations=20)
    print(result.median_ms, len(result.samples_ms))        # ms, 20

``model`` may be an ``nn.Module``, a zoo name (``"edgeformer_s"``), a user model card (YAML with ``entry:``),
``"path/to/file.py:callable"``, ``"package.module:callable"`` or an ``.onnx`` file (:mod:`edgedeploy.spec`).
Errors are :class:`~edgedeploy.errors.EdgeDeployError` subclasses with the CLI's exit codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgedeploy.errors import ConfigError
from edgedeploy.options import BenchOptions, ExportOptions

if TYPE_CHECKING:
    import torch

    from edgedeploy.export.multi import MultiExport
    from edgedeploy.export.pipeline import ExportOutcome
    from edgedeploy.opprof.record import Profile
    from edgedeploy.results.ab import ABResult
    from edgedeploy.results.compare import ComparisonReport
    from edgedeploy.results.result import BenchResult


def _export_options(options: dict[str, Any]) -> ExportOptions:
    """The one check of an export request (unknown names, types, numeric ranges), at the API boundary: the CLI
    relies on it. Runs before any heavy import or model build; raises :class:`ConfigError`."""
    from edgedeploy.limits import check_export_options

    opts = ExportOptions.from_kwargs(**options)
    check_export_options(opts)
    return opts


def export(
    model: Any,
    to: str,
    *,
    input_shape: Sequence[int] | str | None = None,
    example: torch.Tensor | None = None,
    out: str | Path = "artifacts",
    name: str | None = None,
    **options: Any,
) -> ExportOutcome:
    """Export ``model`` to format ``to``, check parity, write the artifact and its manifest into ``out``.

    ``model``: ``nn.Module`` / zoo name / user card / ``file.py:callable`` / ``package.module:callable`` /
    ``.onnx`` file. ``input_shape`` ``(1, C, H, W)`` (H ≠ W allowed) or ``example`` (a tensor of that shape) is
    required for a bare module or a callable without a card; it overrides a card's shape. ``name`` names the
    artifact (default: the card's, the callable's or the file's name). ``options``: see :class:`ExportOptions`
    (``precision="fp32"``, ``parity=True``, ``opset``, ``weights``, gates, ``layout``, ``int8_mode`` …).

    Returns an :class:`~edgedeploy.export.pipeline.ExportOutcome`: ``.artifact`` (path), ``.manifest``,
    ``.parity`` (``.passed`` True / False / None when not run), ``.summary()`` (text). A failed parity does not
    raise: the artifact is kept and marked failed. ``precision="int8"`` with ``int8_speed_check`` (default on;
    see :class:`ExportOptions`) also times the int8 artifact against the same module's fp32 artifact of ``to``
    on this host and records it as the manifest's ``int8_speed`` (:mod:`edgedeploy.bench.int8_speed`).
    Raises :class:`~edgedeploy.errors.ConfigError` / ``ArtifactError`` / ``UnknownModelError`` /
    ``UnknownFormatError`` (exit 2), ``MissingExtraError`` (3), ``ExportError`` naming the op and node (4).
    """
    opts = _export_options(options)
    from edgedeploy.export.parity import gates_for
    from edgedeploy.export.pipeline import cached_export, export_model

    if opts.cache:
        custom = [f for f in ("thresholds", "atol", "min_cosine", "min_top1", "calibration") if getattr(opts, f)]
        custom += ["example"] * (example is not None) + ["parity=False"] * (not opts.parity)
        custom += [f"layout={opts.layout}"] * (opts.layout != "NCHW")
        custom += [f"int8_mode={opts.int8_mode}"] * (opts.int8_mode not in (None, "full"))
        if custom:
            raise ConfigError(f"cache=True exports with the default gates and options; drop {', '.join(custom)}")
        outcome = cached_export(model, to, opts, input_shape=input_shape, name=name)
    else:
        gates_for(opts)  # a bad thresholds value fails here, before any model is built
        outcome = export_model(model, to, out, opts, input_shape=input_shape, example=example, name=name)
    if opts.precision == "int8" and opts.int8_speed_check and outcome.manifest.int8_speed is None:
        shape = input_shape if example is None else tuple(example.shape)

        def fp32_of(request: ExportOptions) -> ExportOutcome:
            return cached_export(model, to, request, input_shape=shape, name=name)

        _measure_int8_speed(outcome.artifact, outcome.manifest, outcome.parity.status, to, opts, fp32_of)
    return outcome


def _measure_int8_speed(
    artifact: Path, manifest: Any, parity_status: str, to: str, opts: ExportOptions,
    fp32_of: Callable[[ExportOptions], ExportOutcome],
) -> Any:  # fmt: skip
    """Time the int8 ``artifact`` (its :class:`~edgedeploy.export.manifest.Manifest` ``manifest``, its parity
    status) against the fp32 artifact of the same model and format that ``fp32_of(request)`` returns (the cache's,
    :func:`~edgedeploy.export.pipeline.cached_export`), record the
    :class:`~edgedeploy.export.manifest.Int8Speed` in the manifest, rewrite it and return it. A failed fp32 export
    or parity is recorded as the reason. An interrupt during the timing
    (:class:`~edgedeploy.bench.int8_speed.Int8SpeedInterrupted`) is re-raised after the partial record is written:
    the artifact and its manifest are complete, and the command ends with 130 / 143."""
    from edgedeploy.bench.int8_speed import Int8SpeedCheck, Int8SpeedInterrupted, measure_int8_speed
    from edgedeploy.errors import EdgeDeployError
    from edgedeploy.export.manifest import Int8Speed, write_manifest
    from edgedeploy.registry import default_runtime
    from edgedeploy.signals import signals_deferred

    def not_measured(reason: str) -> Int8Speed:
        return Int8Speed(measured=False, runtime=default_runtime(to), reason=reason)

    say = opts.progress or (lambda _msg: None)
    if parity_status == "failed":
        speed = not_measured("the int8 artifact failed parity")
    else:
        say(f"exporting the fp32 {to} artifact to time int8 against")
        request = ExportOptions(
            precision="fp32", opset=opts.opset, weights=opts.weights, input_size=opts.input_size,
            lowering=opts.lowering, progress=opts.progress,
        )  # fmt: skip
        try:
            fp32 = fp32_of(request)
        except EdgeDeployError as e:
            fp32 = None
            speed = not_measured(f"the fp32 export failed: {str(e).splitlines()[0]}")
        if fp32 is not None and fp32.parity.status == "failed":
            speed = not_measured(f"the fp32 artifact {fp32.artifact} failed parity")
        elif fp32 is not None:
            say(f"timing int8 against fp32 on {default_runtime(to)} (at most {opts.int8_speed_seconds:g} s)")
            check = Int8SpeedCheck(max_seconds=opts.int8_speed_seconds)
            try:
                speed = measure_int8_speed(artifact, fp32.artifact, to, check)
            except Int8SpeedInterrupted as e:  # keep what was timed, then let the interrupt end the command
                manifest.int8_speed = e.speed
                with signals_deferred():
                    write_manifest(manifest, artifact)
                raise
    manifest.int8_speed = speed
    write_manifest(manifest, artifact)
    return speed


def export_all(
    model: Any,
    to: Sequence[str],
    *,
    input_shape: Sequence[int] | str | None = None,
    out: str | Path = "artifacts",
    name: str | None = None,
    **options: Any,
) -> MultiExport:
    """Export ``model`` to each format of ``to`` in turn (what ``export --to all`` runs); one failing format does
    not stop the others.

    ``model``, ``input_shape``, ``name``, ``options``: as :func:`export` (``progress(msg)`` gets
    ``"<model>: <step>"``). Returns a :class:`~edgedeploy.export.multi.MultiExport`: the model's name and one
    :class:`~edgedeploy.export.multi.FormatResult` per format (status ``parity passed`` / ``parity failed`` /
    ``exported`` / ``export failed`` with the op and node / ``skipped`` / ``missing extra``). Raises what concerns
    the whole request: ``ConfigError`` (bad options, an unwritable folder), ``UnknownModelError``, ``WeightsError``.
    """
    opts = _export_options(options)
    from edgedeploy.export.multi import MultiExport, export_each
    from edgedeploy.spec import is_spec, resolve_model

    source: Any = model
    extra: dict[str, Any] = {}
    if not isinstance(model, str) or is_spec(model):
        # resolve once: a bad spec or input shape is one error for the whole request; a user's module is built once
        source = resolve_model(model, input_shape=input_shape, name=name, input_size=opts.input_size)
        model = source.name
    else:
        extra = {"input_shape": input_shape, "name": name}
    say = opts.progress

    def progress(msg: str) -> None:
        if say is not None:
            say(f"{model}: {msg}")

    from dataclasses import replace

    from edgedeploy.export.parity import gates_for

    gates_for(opts)  # a bad thresholds value is one error for the whole request
    results = export_each(source, list(to), out, replace(opts, progress=progress), **extra)
    if opts.precision == "int8" and opts.int8_speed_check:
        _int8_speed_each(source, results, replace(opts, progress=progress), extra)
    return MultiExport(str(model), results)


def _int8_speed_each(source: Any, results: list[Any], opts: ExportOptions, target: dict[str, Any]) -> None:
    """``export_all``'s int8 rows: each exported artifact timed against its format's fp32 one
    (:func:`_measure_int8_speed`); the record goes into the manifest and the row's ``int8_speed``."""
    from edgedeploy.export.manifest import read_manifest
    from edgedeploy.export.pipeline import cached_export

    for r in results:
        if r.artifact is None or r.status not in ("parity passed", "exported", "parity failed"):
            continue
        manifest = read_manifest(r.artifact, verify=False)
        if manifest is None:
            continue
        status = {"parity passed": "passed", "parity failed": "failed"}.get(r.status, "not run")

        def fp32_of(request: ExportOptions, fmt: str = r.format) -> ExportOutcome:
            return cached_export(source, fmt, request, **target)

        r.int8_speed = _measure_int8_speed(Path(r.artifact), manifest, status, r.format, opts, fp32_of).model_dump()


def bench(
    target: Any,
    *,
    device: str = "local",
    runtime: str | None = None,
    iterations: int = 100,
    warmup: int = 10,
    threads: int | None = None,
    **options: Any,
) -> BenchResult:
    """Time batch-1 inference of ``target`` on ``device``: load, first inference, ``warmup`` runs, ``iterations``.

    ``target``: an artifact path, an :class:`~edgedeploy.export.pipeline.ExportOutcome`, or anything
    :func:`export` takes (exported first into the cache, or its cached artifact reused; ``runtime`` picks the
    format, default MNN; ``runtime="torch"`` times the eager module). ``device``: ``"local"``, a device profile
    name or a YAML path (SSH / ADB boards). ``threads``: intra-op threads (default: all cores / the profile's).
    ``options``: see :class:`BenchOptions` (precision, weights, input_shape, trust_on_first_use, on_sample,
    progress, out).

    Returns a :class:`~edgedeploy.results.result.BenchResult`: ``samples_ms`` (every timed iteration, ms),
    ``median_ms`` …, ``status`` ("partial" when interrupted: the samples measured are kept), ``verified`` (False
    for a file without a manifest). Raises ``ConfigError`` (also: an option out of range, :mod:`edgedeploy.limits`)
    / ``ArtifactError`` / ``Unknown*Error`` (exit 2), ``OutputError`` (2: ``out`` could not be written; the
    error's ``result`` is the result and ``saved`` the fallback file it was saved to), ``MissingExtraError`` (3),
    ``DeviceError`` (5).
    """
    opts = BenchOptions.from_kwargs(
        device=device, runtime=runtime, iterations=iterations, warmup=warmup, threads=threads, **options
    )
    from edgedeploy import limits
    from edgedeploy.bench.run import bench_local, resolve_target
    from edgedeploy.devices.profile import load_profile
    from edgedeploy.export.pipeline import ExportOutcome
    from edgedeploy.runtimes.base import get_runtime

    say = opts.progress or (lambda _msg: None)
    limits.check_run_options(opts.iterations, opts.warmup, opts.threads)  # before any export or runtime
    limits.check_input_size(opts.input_size)
    profile = load_profile(opts.device)
    limits.check_threads(opts.threads, limits.profile_cores(profile), opts.allow_oversubscribe)
    from edgedeploy.devices import board_parity
    from edgedeploy.devices.native import tool_runtime

    native = tool_runtime(opts.runtime)  # "native:TOOL" -> the runtime whose format the tool runs, else None
    if opts.runtime is not None and native is None:
        get_runtime(opts.runtime)  # unknown runtime: fail before any export
    out = Path(opts.out) if opts.out is not None else None
    if out is not None:
        check_result_out(out)
    if isinstance(target, ExportOutcome):
        target = target.artifact
    resolved = resolve_target(
        target, native or opts.runtime, opts.precision, None if opts.weights is None else str(opts.weights),
        opts.input_size, progress=say, input_shape=opts.input_shape, name=opts.name,
    )  # fmt: skip
    if opts.sustained is not None and profile.transport == "local":
        from edgedeploy.bench.sustained import bench_sustained_local

        say(f"sustained run: {opts.sustained:g} s back-to-back in a fresh child process")
        result = bench_sustained_local(resolved, opts.threads, opts.warmup, opts.sustained)
        if opts.parity:
            board_parity.attach_local(result, resolved, None if opts.weights is None else str(opts.weights))
    elif profile.transport == "local":
        result = bench_local(
            resolved, opts.iterations, opts.warmup, opts.threads,
            None if opts.weights is None else str(opts.weights), on_sample=opts.on_sample,
            allow_oversubscribe=opts.allow_oversubscribe,
        )  # fmt: skip
        if opts.parity:
            board_parity.attach_local(result, resolved, None if opts.weights is None else str(opts.weights))
        if opts.memory:
            from edgedeploy.bench.memory import with_host_memory

            say("measuring memory in a fresh child process")
            result = with_host_memory(result, resolved.artifact, resolved.runtime, resolved.precision)
    else:
        from edgedeploy.devices.remote import bench_on_device
        from edgedeploy.devices.request import RemoteBench

        if resolved.artifact is None:
            raise ConfigError("the torch runtime runs only on the local device")
        if opts.trust_on_first_use:
            profile = profile.model_copy(update={"trust_on_first_use": True})
        say(f"benchmarking on {profile.name} ({profile.transport}) …")
        parity_kw: dict[str, Any] = {}
        if opts.parity:
            say("computing the reference outputs for board-side parity")
            w = None if opts.weights is None else str(opts.weights)
            parity_kw["parity"] = board_parity.prepare(resolved.artifact, None, w)
        sustained_kw = {}
        if opts.sustained is not None:  # one timed run, then the sustained phase (edgedeploy.bench.sustained)
            sustained_kw = {"sustained_s": opts.sustained, "timeout_s": opts.sustained + 1800.0}
        req = RemoteBench(
            resolved.artifact, opts.runtime if native else resolved.runtime, resolved.model, resolved.format,
            resolved.precision, list(resolved.input_shape), iterations=1 if opts.sustained else opts.iterations,
            warmup=opts.warmup, threads=opts.threads, allow_oversubscribe=opts.allow_oversubscribe, **parity_kw,
            **sustained_kw,
        )  # fmt: skip
        result = bench_on_device(profile, req)
        if opts.sustained is not None:
            from edgedeploy.bench import sustained

            result = sustained.apply(result, getattr(result, "sustained", None))
        if resolved.verified is not None:
            extra = [resolved.unverified_reason()] if resolved.verified is False else []
            result = result.model_copy(update={"verified": resolved.verified, "warnings": [*result.warnings, *extra]})
    if out is not None:
        result_written = write_result(result, out)
        say(f"result {'written to' if result_written.suffix == '.json' else 'stored in'} {result_written}")
    return result


def profile(
    target: Any,
    runtimes: Sequence[str],
    *,
    device: str = "local",
    iterations: int = 50,
    warmup: int = 10,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Profile]:
    """Per-operator profiles of ``target`` (a zoo model or card, exported or reused from the cache, or an artifact
    file) on each of ``runtimes``, interleaved with bench runs (:mod:`edgedeploy.opprof`); times in ms.

    Every runtime and number is checked once, before any export (by
    :func:`~edgedeploy.opprof.run.profile_many`): ``UnknownRuntimeError`` / ``ConfigError`` (exit 2: no profiler
    here, bad numbers, a device other than local), ``RuntimeUnavailableError`` (3: litert has no op profiler).
    Returns one :class:`~edgedeploy.opprof.record.Profile` per runtime, in order.
    """
    from edgedeploy.opprof.run import ProfileRequest, profile_many

    request = ProfileRequest(device=device, iterations=iterations, warmup=warmup, threads=threads, progress=progress)
    return profile_many(target, runtimes, request)


def check_result_out(out: Path) -> None:
    """Fail before measuring when ``out`` (a .json file, or a result folder) cannot be written
    (:mod:`edgedeploy.outpaths`; :class:`~edgedeploy.errors.OutputError`)."""
    from edgedeploy.outpaths import check_output_dir, check_output_file

    if out.suffix == ".json" and not out.is_dir():
        check_output_file(out, "--out")
    else:
        check_output_dir(out, "--out")


def write_result(result: BenchResult, out: Path) -> Path:
    """Write ``result`` to a ``.json`` file, or append it to a result-store folder; returns the file written.

    When that fails the result is saved to a fallback file and :class:`~edgedeploy.errors.OutputError` is raised
    naming it (its ``saved`` attribute; ``result`` is the result itself): see :mod:`edgedeploy.bench.keep`.
    """
    from edgedeploy.bench.keep import save_result
    from edgedeploy.errors import OutputError

    try:
        return save_result(result, out)
    except OutputError as e:
        e.result = result  # type: ignore[attr-defined]
        raise


def compare(baseline: Any, current: Any, **rule: Any) -> ComparisonReport:
    """Compare ``current`` benchmark results against ``baseline``, key by key, under the regression rule.

    Each side is a result file or folder, a stored run id, ``baseline:<branch>`` (strings or paths), a
    :class:`~edgedeploy.results.result.BenchResult`, or a list of them. ``rule``: ``threshold`` (% or "10%"),
    ``alpha``, ``min_abs_ms`` (ms), ``aggregate`` ("fastest" / "pool"), ``store`` (the result store for run
    ids), ``rerun`` (a hook re-measuring a flagged key, see :func:`edgedeploy.results.compare.compare_results`),
    ``baseline_label`` / ``current_label`` (how the report names the sides; default: the spec, or "baseline" /
    "current" for results passed in).
    Returns a :class:`~edgedeploy.results.compare.ComparisonReport` (``.regressions``, ``.exit_code`` …).
    Raises :class:`ConfigError` for bad rule values or an empty side.
    """
    from edgedeploy.results.compare import (
        DEFAULT_ALPHA,
        DEFAULT_MIN_ABS_MS,
        DEFAULT_THRESHOLD_PCT,
        RegressionRule,
        compare_results,
        parse_threshold,
    )

    known = {"threshold", "alpha", "min_abs_ms", "aggregate", "store", "rerun", "baseline_label", "current_label"}
    unknown = sorted(set(rule) - known)
    if unknown:
        raise ConfigError(f"unknown compare option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    r = RegressionRule(
        parse_threshold(rule.get("threshold", DEFAULT_THRESHOLD_PCT)),
        float(rule.get("alpha", DEFAULT_ALPHA)),
        float(rule.get("min_abs_ms", DEFAULT_MIN_ABS_MS)),
        rule.get("aggregate", "fastest"),
    )
    store = rule.get("store")
    base, base_label = _results(baseline, store, "baseline")
    cur, cur_label = _results(current, store, "current")
    base_label = rule.get("baseline_label", base_label)
    cur_label = rule.get("current_label", cur_label)
    return compare_results(base, cur, r, rerun=rule.get("rerun"), baseline_label=base_label, current_label=cur_label)


def _results(side: Any, store: Any, label: str) -> tuple[list[BenchResult], str]:
    from edgedeploy.results.result import BenchResult
    from edgedeploy.results.sources import load_source

    if isinstance(side, BenchResult):
        return [side], label
    if isinstance(side, (str, Path)):
        return list(load_source(side, store)), str(side)
    if isinstance(side, Sequence) and all(isinstance(r, BenchResult) for r in side):
        return list(side), label
    raise ConfigError(f"{label}: give a result file / folder / run id, a BenchResult or a list of them")


def ab(baseline: Any, candidate: Any, **options: Any) -> ABResult:
    """A/B the latency of ``candidate`` against ``baseline``: both loaded in one process (here, or in one runner
    process on the board), timed in interleaved blocks, judged sequentially on the paired block ratios.

    Each side is anything :func:`bench` takes (a model spec exported into the cache, or an artifact); an artifact
    fixes the format the other side is exported to. ``options``: see :class:`~edgedeploy.results.ab.ABOptions`
    (``device``, ``runtime``, ``threads``, ``threshold_pct``, ``confidence``, ``max_seconds`` (s), ``block_size``,
    ``calibration`` …). Returns an :class:`~edgedeploy.results.ab.ABResult` (``verdict``, ``ratio``,
    ``ci_low`` / ``ci_high``, both sides' samples in ms, ``to_json()``, ``exit_code``). Raises
    :class:`ConfigError` (exit 2: different input shapes or formats, ``max_seconds <= 0``, another device's
    calibration), ``ArtifactError`` / ``Unknown*Error`` (2), ``MissingExtraError`` (3), ``DeviceError`` (5).
    """
    from edgedeploy.results.ab import ABOptions, run_ab

    return run_ab(baseline, candidate, ABOptions.from_kwargs(**options))
