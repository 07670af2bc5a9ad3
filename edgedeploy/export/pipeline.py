"""The export pipeline: model source → module → lowering → artifact → op census → parity → manifest.

A source is anything :func:`edgedeploy.spec.resolve_model` resolves: a zoo card, a user card, a callable spec, an
``nn.Module`` or an ONNX file (which skips the PyTorch steps, :mod:`edgedeploy.export.onnx_source`).

:func:`export_model` is what ``edgedeploy export`` calls; :func:`cached_export` is what ``edgedeploy bench MODEL``
calls (artifacts cached under ``$EDGEDEPLOY_CACHE`` or ``~/.cache/edgedeploy/artifacts``, keyed by a sha256 of
the module's weights and every export setting).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedeploy._util import path_size, sha256_file
from edgedeploy._version import __version__
from edgedeploy.cards import ModelCard
from edgedeploy.errors import ConfigError, ExportError, OutputError, RuntimeUnavailableError
from edgedeploy.export.base import ExportSettings, get_exporter, settings_for
from edgedeploy.export.lowering import lower, lowering_report, verify_lowering
from edgedeploy.export.manifest import (
    Manifest,
    TensorSpec,
    int8_speed_line,
    manifest_path,
    read_manifest,
    write_manifest,
)
from edgedeploy.export.parity import (
    DEFAULT_THRESHOLDS,
    ParityReport,
    ParitySetup,
    Thresholds,
    check_parity,
    flatten_outputs,
    gates_for,
)
from edgedeploy.export.sourcemap import write_sourcemap
from edgedeploy.limits import check_input_size, check_opset, check_thresholds_object
from edgedeploy.options import ExportOptions
from edgedeploy.registry import default_runtime, format_spec
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.spec import ModelSource, resolve_model, zoo_source
from edgedeploy.usercode import contain_exits, model_label
from edgedeploy.zoo import count_params, module_fingerprint

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

    def summary_lines(self) -> list[str]:
        """The export in a few lines: what was written, the parity verdict, and for int8 the speed measured
        against fp32 on this host (:func:`~edgedeploy.export.manifest.int8_speed_line`)."""
        m = self.manifest
        lines = [f"{m.model} → {m.format} ({m.precision}): {m.status}, {self.artifact} ({m.size_bytes / 1e6:.2f} MB)"]
        p = self.parity
        lines.append(f"parity not run: {p.reason}" if p.status == "not run" else f"parity {p.status}: {p.summary()}")
        if m.int8_speed is not None:
            lines.append(int8_speed_line(m.int8_speed))
        return lines

    def summary(self) -> str:
        """:meth:`summary_lines` joined by newlines."""
        return "\n".join(self.summary_lines())

    def to_json_dict(self) -> dict:
        speed = self.manifest.int8_speed
        return {
            "artifact": str(self.artifact),
            "manifest": str(self.manifest_path),
            "format": self.manifest.format,
            "precision": self.manifest.precision,
            "status": self.manifest.status,
            "parity": self.parity.to_dict(),
            "int8_speed": speed.model_dump() if speed is not None else None,
            "summary": self.summary(),
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


STAGING_PREFIX = ".edgedeploy-staging-"


@contextlib.contextmanager
def staged_artifact(final: Path) -> Iterator[Path]:
    """Yield a path with ``final``'s name inside a new hidden folder beside it; on a normal exit, move what was
    written there into place (:func:`publish_staged`); always remove the folder.

    An exception, Ctrl-C or SIGTERM inside leaves ``final`` (and its manifest) as they were; a SIGKILL leaves at
    most the hidden ``.edgedeploy-staging-*`` folder, never a file under the final name.
    """
    started = time.time()
    remove_stale_staging(final.parent, started)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_owner_tag()}-", dir=final.parent))
    try:
        yield staging / final.name
        publish_staged(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _owner_tag() -> str:
    """``<host>-<pid>`` of this process, in its staging folders' names (so a later export can tell them stale)."""
    import socket

    host = "".join(c if c.isalnum() or c in "._" else "_" for c in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _staging_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) from a staging folder's name, or None for a name without them (older edgedeploy)."""
    rest = name[len(STAGING_PREFIX) :]
    host_pid, _, _rand = rest.rpartition("-")
    host, _, pid = host_pid.rpartition("-")
    return (host, int(pid)) if host and pid.isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(folder: Path, before: float) -> list[Path]:
    """Remove the ``.edgedeploy-staging-*`` folders in ``folder`` that an export killed earlier left behind: older
    than ``before`` (a ``time.time()``, the current export's start) and not of a live export (a folder naming this
    host and a process that still runs is kept; one from another host or an older edgedeploy only by its age).
    Best effort; returns the folders removed."""
    removed: list[Path] = []
    host = _owner_tag().rpartition("-")[0]
    with contextlib.suppress(OSError):
        for p in folder.glob(f"{STAGING_PREFIX}*"):
            with contextlib.suppress(OSError):
                if not p.is_dir() or p.is_symlink() or p.stat().st_mtime >= before:
                    continue
                owner = _staging_owner(p.name)
                if owner is not None and owner[0] == host and _pid_alive(owner[1]):
                    continue
                shutil.rmtree(p)
                removed.append(p)
    return removed


def publish_staged(staging: Path, final: Path) -> None:
    """Rename the artifact ``staging/<final.name>``, its side files and its manifest into ``final.parent``.

    Order: the manifest first, then side files, the artifact last, each with ``os.replace`` (atomic): at no
    moment is there an artifact under the final name without the manifest that describes it (an old artifact
    next to the new manifest fails the sha256 check and is reported, never timed as the new one). Folder
    artifacts (``.mlpackage``) replace an old folder of the same name. Interrupts are held back meanwhile.
    """
    from edgedeploy.signals import signals_deferred

    artifact = staging / final.name
    manifest = manifest_path(artifact)
    if not artifact.exists():
        raise ExportError(f"the exporter wrote no {final.name}")
    others = sorted(p for p in staging.iterdir() if p not in (artifact, manifest))
    with signals_deferred():
        for src in ([manifest] if manifest.exists() else []) + others + [artifact]:
            dst = final.parent / src.name
            if src.is_dir() and dst.is_dir():
                old = staging / f".old-{src.name}"
                os.replace(dst, old)
            os.replace(src, dst)
        _fsync_dir(final.parent)


@contextlib.contextmanager
def _output_errors(final: Path) -> Iterator[None]:
    """Turn a full disk / read-only / permission failure while writing ``final`` into :class:`OutputError`."""
    full = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
    try:
        yield
    except OSError as e:
        if e.errno in full:
            raise OutputError(f"cannot write {final}: {e.strerror}") from e
        raise
    except ExportError as e:  # an exporter that wrapped the OSError of a full disk: not a failure of the export
        cause: BaseException | None = e
        for _ in range(5):  # the OSError may be wrapped by the exporting library too
            cause = cause.__cause__ or cause.__context__ if cause is not None else None
            if isinstance(cause, OSError) and cause.errno in full:
                raise OutputError(f"cannot write {final}: {cause.strerror}") from e
        raise


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def artifact_name(card: ModelCard, fmt_suffix: str, precision: str, input_size: int) -> str:
    """``edgeformer_s.mnn``, ``edgeformer_s.fp16.mnn``, ``edgeformer_s.320.onnx`` (non-default size)."""
    parts = [card.name]
    if input_size != card.input_size:
        parts.append(str(input_size))
    if precision != "fp32":
        parts.append(precision)
    return ".".join(parts) + fmt_suffix


def source_artifact_name(src: ModelSource, fmt_suffix: str, precision: str) -> str:
    """Zoo: :func:`artifact_name`; other sources ``<name>[.fp16]<suffix>`` (``user_net.mnn``)."""
    if src.card is not None:
        return artifact_name(src.card, fmt_suffix, precision, src.input_size)
    return ".".join([src.name] + ([precision] if precision != "fp32" else [])) + fmt_suffix


def run_parity(
    module: nn.Module | Callable[[np.ndarray], Any],
    artifact: Path,
    fmt: str,
    input_shape: tuple[int, ...],
    thresholds: Thresholds,
    layout: str = "NCHW",
    setup: ParitySetup | None = None,
    load_kw: dict[str, Any] | None = None,
) -> ParityReport:
    """Load ``artifact`` in the format's default runtime and compare it with ``module`` (see parity.py).

    ``module`` is the PyTorch module or a callable reference (onnxruntime on a source ONNX file). ``layout`` is
    the artifact's input layout; NHWC artifacts get the NCHW parity inputs transposed. Every output is compared.
    ``setup``: :class:`~edgedeploy.export.parity.ParitySetup` (default: top-1 gated); ``load_kw`` go to the
    runtime's ``load``.
    """
    runtime_name = default_runtime(fmt)
    try:
        runtime = get_runtime(runtime_name)
        # one thread: parity is about numerics, and a single-threaded run is deterministic (two parity failures
        # with garbage outputs, cosine 0, were seen with 2 MNN threads on a heavily loaded host and never reproduced)
        session = runtime.load(artifact, threads=PARITY_THREADS, **(load_kw or {}))
    except RuntimeUnavailableError as e:
        report = ParityReport.not_run(str(e))
        report.runtime = runtime_name
        return report
    to_runtime = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if layout == "NHWC" else None
    setup = setup or ParitySetup(classifier=True)
    return check_parity(module, session.run_outputs, input_shape, thresholds, runtime_name, to_runtime, setup)


def output_names_of(module: nn.Module, example: torch.Tensor) -> list[str]:
    """Graph output names for a user's module: a dict's keys, ``output_<i>`` for a tuple, else ``["output"]``."""
    with torch.no_grad():
        out = module(example)
    n = len(flatten_outputs(out))
    if isinstance(out, dict) and all(isinstance(v, torch.Tensor) for v in out.values()):
        return [str(k) for k in out]
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


class _Flat(nn.Module):
    """``module`` with its outputs (tensor, tuple, list or dict) flattened and concatenated into one 1-D tensor."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([t.reshape(-1).float() for t in flatten_outputs(self.inner(x))])


def _classifier(src: ModelSource) -> bool | None:
    return {"classifier": True, "auto": None}.get(src.output, False)


@contain_exits(model_label)  # sys.exit / raise KeyboardInterrupt in the user's model code: one line, exit 2
def export_model(
    model: str | ModelCard | ModelSource | nn.Module,
    fmt: str,
    out_dir: str | Path = "artifacts",
    opts: ExportOptions | None = None,
    *,
    module: nn.Module | None = None,
    input_shape: Sequence[int] | str | None = None,
    example: torch.Tensor | None = None,
    name: str | None = None,
) -> ExportOutcome:
    """Export one model to one format and precision, check parity, write the manifest.

    ``model`` is anything :func:`edgedeploy.spec.resolve_model` takes (zoo name or card, user card, callable spec,
    ``nn.Module``, ``.onnx`` file) or a resolved :class:`~edgedeploy.spec.ModelSource`. ``input_shape`` ``(1, C,
    H, W)`` (or ``example``) is needed for a bare module or a callable without a card. ``module``: the model
    already built from this source at this size with these weights (not built again). ``opts``: the request
    (:class:`~edgedeploy.options.ExportOptions`: precision, opset, weights, input size, gates, lowering, parity,
    layout, int8 mode, calibration, progress), passed down as it is.

    The artifact is kept even when parity fails (its manifest says ``status: "parity failed"``); the caller
    decides the exit code. The artifact and its manifest are written under a hidden staging folder and renamed
    into place only when both are complete (:func:`staged_artifact`). Raises :class:`UnknownModelError`,
    :class:`UnknownFormatError`, :class:`ConfigError` (precision, unwritable folder, input shape, bad spec, opset,
    input size or thresholds out of range: :mod:`edgedeploy.limits`), :class:`ArtifactError` (spec file not
    found), :class:`OutputError` (full disk, read-only folder), :class:`ExportError` (op and node where known),
    :class:`MissingExtraError`, :class:`WeightsError`.
    """
    opts = opts or ExportOptions()
    say = opts.progress or (lambda _msg: None)
    precision, opset, weights, input_size = opts.precision, opts.opset, opts.weights, opts.input_size
    lowering, parity = opts.lowering, opts.parity
    exporter = get_exporter(fmt)
    settings = settings_for(opts)
    exporter.check_settings(settings)
    thresholds = gates_for(opts) if _custom_gates(opts) else None
    if lowering not in ("default", "none"):
        raise ConfigError(f"--lowering must be 'default' or 'none' (got {lowering!r})")
    check_opset(opset)
    check_input_size(input_size)
    check_thresholds_object(thresholds)
    if isinstance(model, ModelCard):
        src = zoo_source(model, input_size)
    else:
        src = resolve_model(model, input_shape=input_shape, example=example, name=name, input_size=input_size)
    out_dir = ensure_writable_dir(Path(out_dir))
    if src.kind == "onnx":
        return _export_onnx_source(src, fmt, out_dir, settings, thresholds, parity, say)
    shape = tuple(src.input_shape)
    _check_calibration_shape(shape, settings)
    timings: dict[str, float] = {}

    say(f"building {src.name} at {'x'.join(map(str, shape[2:]))}")
    t0 = time.perf_counter()
    if module is None:
        module = src.build(weights)
    if example is None:
        example = src.example()
    lowering_info: dict = {"mode": lowering, "rewritten": []}
    export_module = module
    if lowering == "default":
        say("lowering for export")
        export_module, rewritten = lower(module, example, target=fmt)
        check = verify_lowering(_Flat(module), _Flat(export_module), example)
        lowering_info.update(rewritten=rewritten, check=asdict(check), **lowering_report(export_module))
        if check.max_abs_error > LOWERING_TOLERANCE:
            raise ExportError(
                f"the export-time lowering changed {src.name}'s outputs (max abs error {check.max_abs_error:.3g} > "
                f"{LOWERING_TOLERANCE:g}); this is a bug in edgedeploy"
            )
    timings["build_and_lower"] = time.perf_counter() - t0

    if not src.is_zoo and settings.output_names is None:
        settings.output_names = output_names_of(module, example)
    final = out_dir / source_artifact_name(src, exporter.suffix, precision)
    # written under a hidden staging folder beside the final name, renamed into place only once the artifact
    # and its manifest are complete (publish_staged): an interrupted export leaves nothing under the final name
    with staged_artifact(final) as path, _output_errors(final):
        say(f"exporting to {fmt} ({precision})")
        t0 = time.perf_counter()
        exported = exporter.export(export_module, example, path, settings)
        timings["export"] = time.perf_counter() - t0
        # op names → module paths for `edgedeploy profile` (ONNX-based formats; adds "sourcemap" to the manifest)
        tables = exported.extra.pop("sourcemap_tables", None)
        graph = _mnn_graph_nodes if fmt == "mnn" else None
        exported.extra.update(write_sourcemap(path, fmt, module, export_module, tables, runtime_graph=graph))
        census = exporter.op_census(path)

        report: ParityReport
        if parity:
            say("checking parity against PyTorch fp32")
            t0 = time.perf_counter()
            gates = thresholds or DEFAULT_THRESHOLDS[precision]
            setup = ParitySetup(src.mean, src.std, _classifier(src), exported.output_names)
            load_kw = exported.extra.get("load_kw", {})
            report = run_parity(module, path, fmt, shape, gates, exported.input_layout, setup, load_kw)
            timings["parity"] = time.perf_counter() - t0
        else:
            report = ParityReport.not_run("skipped with --no-parity")
        bisection = None
        if report.status == "failed" and format_spec(fmt).bisectable:
            say("bisecting the parity failure")
            bisection = _bisect(export_module, path, fmt, shape, precision, exported.opset, example.numpy())
        status = {"passed": "parity passed", "failed": "parity failed", "not run": "exported"}[report.status]
        manifest = Manifest(
            model=src.name,
            family=src.family,
            format=fmt,
            precision=precision,
            artifact=path.name,
            sha256=sha256_file(path),
            size_bytes=path_size(path)
            + sum(path_size(path.with_name(n)) for n in exported.extra.get("side_files", {})),
            input=TensorSpec(
                name=exported.input_name,
                shape=exported.input_shape or list(shape),
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
            source=src.describe(),
            **{k: v for k, v in exported.extra.items() if k != "load_kw"},
        )
        write_manifest(manifest, path)
    return ExportOutcome(final, manifest_path(final), manifest, report)


def _custom_gates(opts: ExportOptions) -> bool:
    return any(v is not None for v in (opts.thresholds, opts.atol, opts.min_cosine, opts.min_top1))


def _check_calibration_shape(shape: tuple[int, ...], settings: ExportSettings) -> None:
    """int8 full-integer calibration images are square RGB crops: other inputs need weight-only int8."""
    if settings.precision == "int8" and settings.int8_mode == "full":
        if shape[1] != 3 or shape[2] != shape[3]:
            shown = ",".join(map(str, shape))
            raise ConfigError(
                f"int8 full-integer calibration needs a square RGB input (got {shown}); use --int8 weight"
            )


def _export_onnx_source(
    src: ModelSource,
    fmt: str,
    out_dir: Path,
    settings: ExportSettings,
    thresholds: Thresholds | None,
    parity: bool,
    say: Callable[[str], None],
) -> ExportOutcome:
    """An ONNX file in (:mod:`edgedeploy.export.onnx_source`): parity against onnxruntime on the source file."""
    from edgedeploy.export.onnx_source import check_can_start_from_onnx, export_onnx_file, reference_runner

    check_can_start_from_onnx(fmt)
    assert src.onnx_path is not None
    exporter = get_exporter(fmt)
    shape = tuple(src.input_shape)
    final = out_dir / source_artifact_name(src, exporter.suffix, settings.precision)
    # written under a hidden staging folder beside the final name, renamed into place only once the artifact
    # and its manifest are complete (publish_staged): an interrupted export leaves nothing under the final name
    with staged_artifact(final) as path, _output_errors(final):
        timings: dict[str, float] = {}
        say(f"converting {src.onnx_path.name} to {fmt} ({settings.precision})")
        t0 = time.perf_counter()
        exported = export_onnx_file(src.onnx_path, shape, fmt, path, settings)
        timings["export"] = time.perf_counter() - t0
        census = exporter.op_census(path)
        reference = "onnxruntime on the source ONNX file"
        if parity:
            say(f"checking parity against {reference}")
            t0 = time.perf_counter()
            setup = ParitySetup(src.mean, src.std, None, exported.output_names, reference)
            gates = thresholds or DEFAULT_THRESHOLDS[settings.precision]
            report = run_parity(
                reference_runner(src.onnx_path), path, fmt, shape, gates, exported.input_layout, setup
            )  # fmt: skip
            timings["parity"] = time.perf_counter() - t0
        else:
            report = ParityReport.not_run("skipped with --no-parity")
        status = {"passed": "parity passed", "failed": "parity failed", "not run": "exported"}[report.status]
        extra = dict(exported.extra)
        manifest = Manifest(
            model=src.name,
            format=fmt,
            precision=settings.precision,
            artifact=path.name,
            sha256=sha256_file(path),
            size_bytes=path_size(path),
            input=TensorSpec(name=exported.input_name, shape=list(shape), layout=exported.input_layout),
            outputs=exported.output_names,
            exporter=exported.exporter,
            opset=exported.opset,
            lowering=extra.pop("lowering", {}),
            tool_versions=exporter.tool_versions(),
            op_census=census,
            parity=report.to_dict(),
            status=status,
            model_fingerprint=src.describe().get("sha256"),
            notes=exported.notes,
            timings_s={k: round(v, 3) for k, v in timings.items()},
            source=src.describe(),
            parity_reference=reference,
            **extra,
        )
        write_manifest(manifest, path)
    return ExportOutcome(final, manifest_path(final), manifest, report)


def _bisect(
    module: nn.Module, path: Path, fmt: str, shape: tuple[int, ...], precision: str, opset: int | None,
    x: np.ndarray | None = None,
) -> dict:  # fmt: skip
    """Name the first module whose output drifts (see :mod:`edgedeploy.export.bisect`); errors are recorded."""
    from edgedeploy.errors import EdgeDeployError
    from edgedeploy.export.bisect import bisect_artifact

    try:
        b = bisect_artifact(module, path, fmt, shape, None, x, precision, opset)
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


@functools.cache
def code_fingerprint() -> str:
    """sha256 (16 hex digits) over the source of the edgedeploy code an artifact depends on (layers, lowering,
    exporters, runtimes): a cached artifact made by other code is not reused, even at the same version number."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = [root / "zoo.py", root / "cards.py"]
    for sub in ("nn", "export", "runtimes"):
        files += sorted((root / sub).rglob("*.py"))
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def cache_key(src: ModelSource, module: nn.Module | None, fmt: str, precision: str, opset: int | None,
              lowering: str) -> str:  # fmt: skip
    """20 hex digits of a sha256 over the weights (or the ONNX file), the export settings, the versions and
    :func:`code_fingerprint`.

    Other sources than the zoo add their description (kind, spec,
    input shape, mean / std) and the sha256 of a ``file.py`` spec's source.
    """
    fingerprint = module_fingerprint(module) if module is not None else src.describe().get("sha256")
    parts: list = [fingerprint, fmt, precision, opset, src.input_size, lowering, __version__, torch.__version__]
    parts.append(code_fingerprint())
    if not src.is_zoo:
        desc = src.describe()
        target = src.spec.rsplit(":", 1)[0] if src.kind == "callable" else None
        if target and target.endswith(".py") and Path(target).is_file():
            desc["file_sha256"] = sha256_file(Path(target))
        parts.append(desc)
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


@contain_exits(model_label)
def cached_export(
    model: str | ModelSource | nn.Module,
    fmt: str,
    opts: ExportOptions | None = None,
    *,
    input_shape: Sequence[int] | str | None = None,
    name: str | None = None,
) -> ExportOutcome:
    """Reuse an artifact exported with the same weights and settings, or export it into the cache.

    ``model`` is anything :func:`export_model` takes. The key (:func:`cache_key`) is a sha256 over the module's
    state_dict (names, shapes, bytes) or the ONNX file, the format, precision, opset, input size, lowering mode,
    edgedeploy and torch versions. A cached file whose sha256 no longer matches its manifest is exported again.
    ``opts``: precision, opset, weights, input size, lowering and progress are used (the default gates and
    format options always).
    """
    opts = opts or ExportOptions()
    precision, opset, weights, input_size, lowering = (
        opts.precision, opts.opset, opts.weights, opts.input_size, opts.lowering
    )  # fmt: skip
    src = resolve_model(model, input_shape=input_shape, name=name, input_size=input_size)
    module = None if src.kind == "onnx" else src.build(weights)
    key = cache_key(src, module, fmt, precision, opset, lowering)
    folder = cache_dir() / "artifacts" / f"{src.name}-{key}"
    exporter = get_exporter(fmt)
    path = folder / source_artifact_name(src, exporter.suffix, precision)
    if path.exists():
        try:
            manifest = read_manifest(path, verify=True)
        except Exception:  # noqa: BLE001 - any problem with a cache entry means: export again
            manifest = None
        if manifest is not None:
            report = ParityReport(**manifest.parity) if manifest.parity else ParityReport.not_run("unknown")
            return ExportOutcome(path, path.with_name(path.name + ".json"), manifest, report)
    request = ExportOptions(
        precision=precision, opset=opset, weights=weights, lowering=lowering, progress=opts.progress
    )
    return export_model(src, fmt, folder, request, module=module)


def _mnn_graph_nodes(path: Path) -> list[Any]:
    from edgedeploy.runtimes.mnn_rt import graph_nodes

    return graph_nodes(path)
