"""The export pipeline: model card → module → lowering → artifact → op census → parity → manifest.

:func:`export_model` is what ``edgedeploy export`` calls; :func:`cached_export` is what ``edgedeploy bench MODEL``
calls (artifacts cached under ``$EDGEDEPLOY_CACHE`` or ``~/.cache/edgedeploy/artifacts``, keyed by a sha256 of
the module's weights and every export setting).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedeploy import __version__
from edgedeploy._util import path_size, sha256_file
from edgedeploy.cards import ModelCard, get_card
from edgedeploy.data import real_image
from edgedeploy.errors import ConfigError, ExportError, RuntimeUnavailableError
from edgedeploy.export.base import ExportSettings, get_exporter
from edgedeploy.export.lowering import lower, verify_lowering
from edgedeploy.export.manifest import Manifest, TensorSpec, read_manifest, write_manifest
from edgedeploy.export.parity import DEFAULT_THRESHOLDS, ParityReport, Thresholds, check_parity
from edgedeploy.registry import default_runtime, format_spec
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.zoo import build_model, count_params, module_fingerprint

#: the lowering must not change outputs by more than this (max abs, fp32)
LOWERING_TOLERANCE = 1e-4
#: threads used to run an artifact for parity
PARITY_THREADS = 1


@dataclass
class ExportOutcome:
    """What one export produced. ``parity.status`` is "passed", "failed" or "not run"."""

    artifact: Path
    manifest_path: Path
    manifest: Manifest
    parity: ParityReport

    def to_json_dict(self) -> dict:
        return {
            "artifact": str(self.artifact),
            "manifest": str(self.manifest_path),
            "format": self.manifest.format,
            "precision": self.manifest.precision,
            "status": self.manifest.status,
            "parity": self.parity.to_dict(),
        }


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and check it is writable; :class:`ConfigError` otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output folder {path}: {e.strerror}") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {path} is not writable")
    return path


def artifact_name(card: ModelCard, fmt_suffix: str, precision: str, input_size: int) -> str:
    """``edgeformer_s.mnn``, ``edgeformer_s.fp16.mnn``, ``edgeformer_s.320.onnx`` (non-default size)."""
    parts = [card.name]
    if input_size != card.input_size:
        parts.append(str(input_size))
    if precision != "fp32":
        parts.append(precision)
    return ".".join(parts) + fmt_suffix


def run_parity(
    module: nn.Module,
    artifact: Path,
    fmt: str,
    input_shape: tuple[int, ...],
    thresholds: Thresholds,
    layout: str = "NCHW",
    **load_kw: object,
) -> ParityReport:
    """Load ``artifact`` in the format's default runtime and compare it with ``module`` (see parity.py).

    ``layout`` is the artifact's input layout; NHWC artifacts get the NCHW parity inputs transposed.
    """
    runtime_name = default_runtime(fmt)
    try:
        runtime = get_runtime(runtime_name)
        # one thread: parity is about numerics, and a single-threaded run is deterministic (two parity failures
        # with garbage outputs, cosine 0, were seen with 2 MNN threads on a heavily loaded host and never reproduced)
        session = runtime.load(artifact, threads=PARITY_THREADS, **load_kw)
    except RuntimeUnavailableError as e:
        report = ParityReport.not_run(str(e))
        report.runtime = runtime_name
        return report
    to_runtime = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if layout == "NHWC" else None
    return check_parity(module, session.run, input_shape, thresholds, runtime=runtime_name, to_runtime_input=to_runtime)


def export_model(
    model: str | ModelCard,
    fmt: str,
    out_dir: str | Path = "artifacts",
    precision: str = "fp32",
    opset: int | None = None,
    weights: str | Path | None = None,
    input_size: int | None = None,
    thresholds: Thresholds | None = None,
    lowering: str = "default",
    parity: bool = True,
    options: dict | None = None,
    progress: Callable[[str], None] | None = None,
    module: nn.Module | None = None,
) -> ExportOutcome:
    """Export one model to one format and precision, check parity, write the manifest.

    ``module``: the model already built from this card at this size with these weights (not built again).

    The artifact is kept even when parity fails (its manifest says ``status: "parity failed"``); the caller
    decides the exit code. Raises :class:`UnknownModelError`, :class:`UnknownFormatError`, :class:`ConfigError`
    (precision, unwritable folder, input size), :class:`ExportError` (op and node where known),
    :class:`MissingExtraError`, :class:`WeightsError`.
    """
    say = progress or (lambda _msg: None)
    exporter = get_exporter(fmt)
    settings = ExportSettings(precision=precision, opset=opset, options=dict(options or {}))
    exporter.check_settings(settings)
    if lowering not in ("default", "none"):
        raise ConfigError(f"--lowering must be 'default' or 'none' (got {lowering!r})")
    out_dir = ensure_writable_dir(Path(out_dir))
    card = get_card(model) if isinstance(model, str) else model
    size = input_size or card.input_size
    timings: dict[str, float] = {}

    say(f"building {card.name} at {size}x{size}")
    t0 = time.perf_counter()
    if module is None:
        module = build_model(card, size, weights=weights)
    example = torch.from_numpy(real_image(size))
    lowering_info: dict = {"mode": lowering, "rewritten": []}
    export_module = module
    if lowering == "default":
        say("lowering for export")
        export_module, rewritten = lower(module, example, target=fmt)
        check = verify_lowering(module, export_module, example)
        lowering_info.update(rewritten=rewritten, check=asdict(check))
        if check.max_abs_error > LOWERING_TOLERANCE:
            raise ExportError(
                f"the export-time lowering changed {card.name}'s outputs (max abs error {check.max_abs_error:.3g} > "
                f"{LOWERING_TOLERANCE:g}); this is a bug in edgedeploy"
            )
    timings["build_and_lower"] = time.perf_counter() - t0

    path = out_dir / artifact_name(card, exporter.suffix, precision, size)
    say(f"exporting to {fmt} ({precision})")
    t0 = time.perf_counter()
    exported = exporter.export(export_module, example, path, settings)
    timings["export"] = time.perf_counter() - t0
    census = exporter.op_census(path)

    report: ParityReport
    if parity:
        say("checking parity against PyTorch fp32")
        t0 = time.perf_counter()
        gates = thresholds or DEFAULT_THRESHOLDS[precision]
        report = run_parity(
            module, path, fmt, (1, 3, size, size), gates, exported.input_layout, **exported.extra.get("load_kw", {})
        )
        timings["parity"] = time.perf_counter() - t0
    else:
        report = ParityReport.not_run("skipped with --no-parity")
    bisection = None
    if report.status == "failed" and format_spec(fmt).bisectable:
        say("bisecting the parity failure")
        bisection = _bisect(export_module, path, fmt, size, precision, exported.opset)
    status = {"passed": "parity passed", "failed": "parity failed", "not run": "exported"}[report.status]
    manifest = Manifest(
        model=card.name,
        family=card.family,
        format=fmt,
        precision=precision,
        artifact=path.name,
        sha256=sha256_file(path),
        size_bytes=path_size(path) + sum(path_size(path.with_name(n)) for n in exported.extra.get("side_files", {})),
        input=TensorSpec(
            name=exported.input_name,
            shape=exported.input_shape or [1, 3, size, size],
            layout=exported.input_layout,
        ),
        outputs=exported.output_names,
        exporter=exported.exporter,
        opset=exported.opset,
        lowering=lowering_info,
        tool_versions=exporter.tool_versions(),
        op_census=census,
        parity=report.to_dict(),
        status=status,
        params=count_params(module),
        model_fingerprint=module_fingerprint(module),
        weights=str(weights) if weights else None,
        notes=exported.notes,
        timings_s={k: round(v, 3) for k, v in timings.items()},
        bisection=bisection,
        **{k: v for k, v in exported.extra.items() if k != "load_kw"},
    )
    manifest_file = write_manifest(manifest, path)
    return ExportOutcome(path, manifest_file, manifest, report)


def _bisect(module: nn.Module, path: Path, fmt: str, size: int, precision: str, opset: int | None) -> dict:
    """Name the first module whose output drifts (see :mod:`edgedeploy.export.bisect`); errors are recorded."""
    from edgedeploy.errors import EdgeDeployError
    from edgedeploy.export.bisect import bisect_artifact

    try:
        b = bisect_artifact(module, path, fmt, (1, 3, size, size), None, None, precision, opset)
    except EdgeDeployError as e:
        return {"error": str(e)}
    return {
        "culprit": b.culprit,
        "culprit_type": b.culprit_type,
        "first_bad": b.first_bad,
        "tolerance": b.tolerance,
        "probes": [asdict(p) for p in b.probes if p.bad][:20],
    }


def cache_dir() -> Path:
    """``$EDGEDEPLOY_CACHE`` or ``~/.cache/edgedeploy``."""
    return Path(os.environ.get("EDGEDEPLOY_CACHE") or Path.home() / ".cache" / "edgedeploy")


def cached_export(
    model: str,
    fmt: str,
    precision: str = "fp32",
    opset: int | None = None,
    weights: str | Path | None = None,
    input_size: int | None = None,
    lowering: str = "default",
    progress: Callable[[str], None] | None = None,
) -> ExportOutcome:
    """Reuse an artifact exported with the same weights and settings, or export it into the cache.

    The key is a sha256 over the module's state_dict (names, shapes, bytes), the format, precision, opset, input
    size, lowering mode, edgedeploy and torch versions. A cached file whose sha256 no longer matches its manifest
    is exported again.
    """
    card = get_card(model)
    size = input_size or card.input_size
    module = build_model(card, size, weights=weights)
    key_src = json.dumps(
        [module_fingerprint(module), fmt, precision, opset, size, lowering, __version__, torch.__version__]
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    folder = cache_dir() / "artifacts" / f"{card.name}-{key}"
    exporter = get_exporter(fmt)
    path = folder / artifact_name(card, exporter.suffix, precision, size)
    if path.exists():
        try:
            manifest = read_manifest(path, verify=True)
        except Exception:  # noqa: BLE001 - any problem with a cache entry means: export again
            manifest = None
        if manifest is not None:
            report = ParityReport(**manifest.parity) if manifest.parity else ParityReport.not_run("unknown")
            return ExportOutcome(path, path.with_name(path.name + ".json"), manifest, report)
    return export_model(
        card, fmt, folder, precision=precision, opset=opset, weights=weights, input_size=size,
        lowering=lowering, progress=progress, module=module,
    )  # fmt: skip
