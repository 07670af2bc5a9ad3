"""Board-side parity: run the reference inputs ON THE DEVICE and compare its outputs with PyTorch fp32 on the host.

A latency measured on a board is only worth something if the board computed the right thing, so
``edgedeploy bench … --device PROFILE --parity`` and ``edgedeploy parity ARTIFACT --device PROFILE`` do this:

1. the host builds the reference inputs of :mod:`edgedeploy.export.parity` — the embedded photo (with the model's
   mean / std) and 4 seeded standard-normal tensors, ``(1, C, H, W)`` float32 NCHW, transposed to ``(1, H, W, C)``
   for an NHWC artifact — and the reference outputs: the original (un-lowered) PyTorch module in fp32, or
   onnxruntime on the source file for an artifact exported from ONNX (model, source, input shape, weights,
   precision and layout from the artifact's manifest; from the zoo card when the artifact has none);
2. the inputs travel to the board as ``in-<i>.npy`` files (cached there by sha256, like the artifact); the board's
   runner (:mod:`edgedeploy.devices.runner`, or a native runner printing the same protocol) runs each once and writes
   ``out-<i>.npy``; the host pulls them;
3. :func:`edgedeploy.export.parity.compare_outputs` compares them under the same gates as the host
   (:data:`~edgedeploy.export.parity.DEFAULT_THRESHOLDS` for the artifact's precision, overridable) and the
   :class:`~edgedeploy.results.result.BenchResult` carries the verdict as ``board_parity`` (a ParityReport dict whose
   ``runtime`` names the runtime, its version and the device's architecture).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedeploy.errors import ConfigError

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile
    from edgedeploy.devices.transport import Transport
    from edgedeploy.export.parity import ParityReport, Thresholds
    from edgedeploy.results.result import BenchResult


@dataclass
class ParityRequest:
    """What the board must run: ``inputs`` (name → array in the artifact's input layout, float32) in order, the
    ``reference`` first outputs (name → e.g. ``(1, num_classes)`` logits), the gates, and ``classifier`` (top-1
    gated: True, by the output's shape: None, not: False; see :func:`edgedeploy.export.parity.compare_outputs`)."""

    model: str
    precision: str
    layout: str
    inputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    thresholds: Thresholds
    classifier: bool | None = True

    def files(self, folder: Path) -> list[Path]:
        """Write ``in-<i>.npy`` for each input into ``folder``; returns the paths, in input order."""
        out = []
        for i, x in enumerate(self.inputs.values()):
            p = folder / f"in-{i}.npy"
            np.save(p, np.ascontiguousarray(x, dtype=np.float32))
            out.append(p)
        return out


def prepare(
    artifact: str | Path,
    model: str | None = None,
    weights: str | None = None,
    thresholds: Thresholds | None = None,
) -> ParityRequest:
    """The reference inputs and outputs for ``artifact`` (see the module docstring).

    The reference comes from the manifest's ``source``: a zoo model or a user's model rebuilt in PyTorch fp32
    (its mean / std preprocess the photo), or onnxruntime on the source ONNX file. Only the first output is
    compared (the runner dumps the first output). Raises :class:`ConfigError` when the artifact has no manifest and
    no ``model`` is named, :class:`~edgedeploy.errors.ArtifactError` for a manifest that does not match the
    artifact, :class:`~edgedeploy.errors.UnknownModelError` for a model not in the zoo.
    """
    from edgedeploy.export.manifest import read_manifest
    from edgedeploy.export.parity import DEFAULT_THRESHOLDS, parity_inputs, torch_reference
    from edgedeploy.spec import resolve_model, zoo_source

    path = Path(artifact)
    manifest = read_manifest(path, verify=True)
    if manifest is None and model is None:
        raise ConfigError(
            f"{path} has no manifest beside it: board-side parity needs the model it was exported from "
            "(export it with edgedeploy, or name it: edgedeploy parity ARTIFACT --model NAME --device PROFILE)"
        )
    precision = manifest.precision if manifest else "fp32"
    layout = manifest.input.layout if manifest else "NCHW"
    weights = weights or (manifest.weights if manifest else None)
    info = (getattr(manifest, "source", None) or {}) if model is None else {}
    if info.get("kind") == "module":
        raise ConfigError(
            f"{path} was exported from an in-memory nn.Module ({info.get('spec')}): board-side parity cannot rebuild "
            "it; export from a zoo name, a card or a file.py:callable spec"
        )
    if info.get("kind") not in (None, "zoo"):
        assert manifest is not None
        src = resolve_model(info["spec"], input_shape=tuple(info["input_shape"]), name=manifest.model)
    else:
        name = model or manifest.model  # type: ignore[union-attr]
        if manifest is not None and model is None:
            shape = manifest.input.shape
            size = int(shape[2] if layout == "NCHW" else shape[1])
        else:
            size = None
        src = zoo_source(name, size)
    shape = tuple(src.input_shape)
    inputs = parity_inputs(shape, mean=src.mean, std=src.std)
    if src.kind == "onnx":
        from edgedeploy.export.onnx_source import reference_runner

        run = reference_runner(src.onnx_path)  # type: ignore[arg-type]
        reference = {k: np.asarray(run(v)[0]) for k, v in inputs.items()}
    else:
        reference = {k: v[0] for k, v in torch_reference(src.build(weights), inputs).items()}
    if layout == "NHWC":
        inputs = {k: np.ascontiguousarray(v.transpose(0, 2, 3, 1)) for k, v in inputs.items()}
    classifier = {"classifier": True, "auto": None}.get(src.output, False)
    return ParityRequest(src.name, precision, layout, inputs, reference, thresholds or DEFAULT_THRESHOLDS[precision],
                         classifier)  # fmt: skip


def push_inputs(transport: Transport, request: ParityRequest, workdir: str) -> str:
    """Push the inputs into ``<workdir>/inputs/<sha256>/`` (skipped when the device has them); returns that folder."""
    from edgedeploy.devices.remote import artifact_digest, push_cached

    with tempfile.TemporaryDirectory(prefix="edgedeploy-parity-") as tmp:
        files = request.files(Path(tmp))
        remote_dir = f"{workdir}/inputs/{artifact_digest(files)}"
        push_cached(transport, files, remote_dir)
    return remote_dir


def collect(
    transport: Transport, request: ParityRequest, remote_out: str, written: list[str], runtime_label: str
) -> ParityReport:
    """Pull ``out-<i>.npy`` from ``remote_out``, compare with the reference and remove the folder on the device.

    ``written``: the file names the runner reported. A missing output or a shape mismatch gives a failed report
    with the reason (never an exception: the latency samples are kept either way).
    """
    from edgedeploy.export.parity import ParityReport, compare_outputs

    names = list(request.inputs)
    candidate: dict[str, np.ndarray] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="edgedeploy-parity-") as tmp:
            for i, name in enumerate(names):
                fname = f"out-{i}.npy"
                if fname not in written:
                    raise ValueError(f"the device wrote no output for input {name} ({fname})")
                local = Path(tmp) / fname
                transport.pull(f"{remote_out}/{fname}", local)
                candidate[name] = np.load(local)
        report = compare_outputs(request.reference, candidate, request.thresholds, classifier=request.classifier)
    except ValueError as e:
        report = ParityReport(status="failed", passed=False, inputs=names, failures=[str(e)])
    finally:
        transport.run(["rm", "-rf", remote_out], check=False, timeout=60)
    report.runtime = runtime_label
    return report


def verdict_line(result: BenchResult) -> str | None:
    """One line saying why board-side parity failed, or ``None`` when it passed or was not run."""
    bp = getattr(result, "board_parity", None)
    if not bp or bp.get("passed") is not False:
        return None
    return (
        f"board-side parity failed on {result.device} ({bp.get('runtime')}) for {result.model} "
        f"{result.format} {result.precision}: {'; '.join(bp.get('failures') or ['no detail'])}"
    )


def parity_on_device(
    profile: DeviceProfile,
    artifact: str | Path,
    runtime: str | None = None,
    model: str | None = None,
    weights: str | None = None,
    thresholds: Thresholds | None = None,
    threads: int | None = 1,
    **options: Any,
) -> BenchResult:
    """Board-side parity of ``artifact`` on ``profile``'s device (one timed run besides the parity inputs).

    ``runtime``: a runner runtime or native tool (default: the format's default runtime). Returns the
    :class:`BenchResult` whose ``board_parity`` holds the verdict. Raises what
    :func:`~edgedeploy.devices.remote.bench_on_device` and :func:`prepare` raise.
    """
    from edgedeploy import registry
    from edgedeploy.devices.remote import bench_on_device

    path = Path(artifact)
    fmt = registry.format_of(path)
    rt = runtime or registry.default_runtime(fmt)
    request = prepare(path, model, weights, thresholds)
    shape = list(next(iter(request.inputs.values())).shape)
    return bench_on_device(
        profile, path, rt, iterations=1, warmup=0, threads=threads, model=request.model, fmt=fmt,
        precision=request.precision, input_shape=shape, parity=request, **options,
    )  # fmt: skip


def summary_line(bp: dict[str, Any]) -> str:
    """``passed/FAILED  max abs …, max rel …, cosine …, top-1 … (N inputs, runtime)`` for a board_parity dict."""
    if bp.get("max_abs_error") is None:
        return f"{bp.get('status')}: {'; '.join(bp.get('failures') or [bp.get('reason') or ''])}"
    return (
        f"{'passed' if bp.get('passed') else 'FAILED'}  max abs {bp['max_abs_error']:.2e}, "
        f"max rel {bp['max_rel_error']:.2e}, cosine {bp['cosine_similarity']:.6f}, top-1 {bp['top1_agreement']:.2f} "
        f"({len(bp.get('inputs') or [])} inputs, {bp.get('runtime')})"
    )


def attach_local(result: BenchResult, target: Any, weights: str | None = None) -> None:
    """``--parity`` on the local device: the host's own parity check of the artifact, as ``result.board_parity``."""
    from edgedeploy.export.parity import ParityReport

    if target.artifact is None:
        report = ParityReport.not_run("the torch runtime is the reference itself")
    else:
        from edgedeploy.export.cli import check_artifact

        report = check_artifact(target.artifact, target.model, bisect=False, weights=weights)["parity"]
    result.board_parity = report.to_dict()  # type: ignore[attr-defined]
