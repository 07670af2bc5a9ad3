"""Board-side parity I/O: the reference inputs / outputs for an artifact, pushing the inputs, pulling the outputs.

The steps of :mod:`edgedeploy.devices.board_parity` that touch files and the device; the remote bench
(:mod:`edgedeploy.devices.remote`) calls :func:`push_inputs` and :func:`collect`, :mod:`.board_parity` (above it)
drives whole runs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgedeploy.devices.push import artifact_digest, push_cached
from edgedeploy.errors import ConfigError

if TYPE_CHECKING:
    from edgedeploy.devices.transport import Transport
    from edgedeploy.export.parity import ParityReport, Thresholds


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
