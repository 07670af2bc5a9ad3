"""CoreML export: ``torch.export`` → coremltools ML program → ``.mlpackage`` (a folder).

Route: ``torch.export.export(module, (example,)).run_decompositions({})`` then ``coremltools.convert(...,
convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16)``. The ``torch.jit.trace`` route fails on shape
arithmetic under numpy 2 (TOOLCHAIN_NOTES.md), so it is not used.

Minimum deployment target: **iOS 16 / macOS 13** (``ct.target.iOS16``), the first that runs ML programs with
int8 weight compression (``constexpr_affine_dequantize``) and the target the EMO paper's iPhone 14 figures assume.

Input ``input``: ``(1, 3, H, W)`` float32 NCHW tensor (not an image type: normalisation stays the caller's, as for
every other format); output ``logits``: ``(1, num_classes)`` float32.

Precisions:

* fp32 — ``compute_precision=FLOAT32`` (every op in fp32);
* fp16 — ``compute_precision=FLOAT16`` (fp16 weights and compute, float32 I/O; the ANE's native precision —
  the fp16-overflow risk the parity check exists to catch);
* int8 — fp16 compute with weights compressed by ``ct.optimize.coreml.linear_quantize_weights`` (int8, symmetric,
  per-channel; coremltools' default threshold leaves tensors under 2048 elements in fp16); activations stay float
  (Core ML has no calibrated full-integer path for ML programs).

Input and output are declared float32 in every precision (with fp16 compute coremltools would otherwise make the
I/O fp16 on iOS16); the ML program casts at its boundaries.

Validation on any OS: the saved package loads as a spec (``ct.utils.load_spec``), is an ML program with one
``main`` function, and its MIL op census is read from that spec. Prediction (parity) needs macOS: elsewhere the
manifest says ``parity.status: "not run"``, ``passed: null``, with the reason.
"""

from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ArtifactError, ExportError, UnsupportedOpError
from edgedeploy.export.base import ExportedFile, Exporter, ExportSettings, register_exporter
from edgedeploy.runtimes.coreml_rt import can_predict, import_coremltools

MINIMUM_DEPLOYMENT_TARGET = "iOS16"


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def torch_to_coreml(module: nn.Module, example: torch.Tensor, out_path: Path, precision: str = "fp32") -> Any:
    """Convert and save ``out_path`` (``.mlpackage``); returns the in-memory ``MLModel``.

    Raises :class:`UnsupportedOpError` (an op coremltools cannot convert, named from its message),
    :class:`ExportError` (other failures), :class:`MissingExtraError`.
    """
    ct = import_coremltools()
    log: list[str] = []
    try:
        with warnings.catch_warnings(), torch.no_grad(), captured_fd_output(log):
            warnings.simplefilter("ignore")
            program = torch.export.export(module.eval(), (example,)).run_decompositions({})
            model = ct.convert(
                program,
                convert_to="mlprogram",
                minimum_deployment_target=getattr(ct.target, MINIMUM_DEPLOYMENT_TARGET),
                compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
                inputs=[ct.TensorType(name="input", shape=tuple(example.shape), dtype=np.float32)],
                outputs=[ct.TensorType(name="logits", dtype=np.float32)],
                skip_model_load=not can_predict(),
            )
            if precision == "int8":
                cfg = ct.optimize.coreml.OptimizationConfig(
                    global_config=ct.optimize.coreml.OpLinearQuantizerConfig(
                        mode="linear_symmetric", dtype="int8", granularity="per_channel"
                    )
                )
                model = ct.optimize.coreml.linear_quantize_weights(model, cfg)
    except Exception as e:
        text = _first(e)
        op = None
        for marker in ("Unsupported fx node ", "PyTorch convert function for op '", "unsupported op "):
            if marker in str(e):
                op = str(e).split(marker, 1)[1].split("'")[0].split()[0].strip("'\".,")
                break
        if op:
            raise UnsupportedOpError(f"CoreML conversion failed: {text}", op=op) from e
        raise ExportError(f"CoreML conversion failed: {text}") from e
    if out_path.exists():
        shutil.rmtree(out_path) if out_path.is_dir() else out_path.unlink()
    try:
        with captured_fd_output():
            model.save(str(out_path))
    except Exception as e:
        raise ExportError(f"CoreML save failed: {_first(e)}") from e
    return model


def load_spec(path: Path) -> Any:
    """The protobuf spec of a saved ``.mlpackage``/``.mlmodel``; :class:`ArtifactError` when it does not load."""
    ct = import_coremltools()
    try:
        with captured_fd_output():
            return ct.utils.load_spec(str(path))
    except Exception as e:
        raise ArtifactError(f"{path} is not a loadable CoreML model: {_first(e)}") from e


def _count_block(block: Any, counts: Counter) -> None:
    for op in block.operations:
        counts[op.type] += 1
        for inner in op.blocks:
            _count_block(inner, counts)


def coreml_op_census(path: Path) -> dict[str, int]:
    """MIL op type -> count over the ``main`` function of the saved ML program (nested blocks included)."""
    spec = load_spec(path)
    if spec.WhichOneof("Type") != "mlProgram":
        raise ArtifactError(f"{path} is not an ML program (type {spec.WhichOneof('Type')})")
    counts: Counter = Counter()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            _count_block(block, counts)
    return dict(sorted(counts.items()))


def validate_package(path: Path) -> dict[str, Any]:
    """What Linux can check of a saved package: loads as a spec, ML program, I/O names and shapes, spec version."""
    spec = load_spec(path)
    if spec.WhichOneof("Type") != "mlProgram":
        raise ArtifactError(f"{path} is not an ML program")
    if "main" not in spec.mlProgram.functions:
        raise ArtifactError(f"{path} has no main function")
    inp = spec.description.input[0]
    return {
        "spec_version": int(spec.specificationVersion),
        "input": {"name": inp.name, "shape": [int(d) for d in inp.type.multiArrayType.shape]},
        "outputs": [o.name for o in spec.description.output],
    }


@register_exporter
class CoreMlExporter(Exporter):
    """CoreML ML program (see the module docstring)."""

    format = "coreml"

    def export(self, module: nn.Module, example: Tensor, out_path: Path, settings: ExportSettings) -> ExportedFile:
        torch_to_coreml(module, example, out_path, settings.precision)
        info = validate_package(out_path)
        if info["input"]["shape"] != list(example.shape):
            raise ExportError(f"CoreML input shape {info['input']['shape']} differs from {list(example.shape)}")
        notes = [f"minimum deployment target {MINIMUM_DEPLOYMENT_TARGET}"]
        if not can_predict():
            notes.append("validated on this OS: package loads as a spec, ML program, op census; prediction needs macOS")
        method = {
            "fp32": "fp32 compute",
            "fp16": "fp16 weights and compute, float32 I/O",
            "int8": "int8 weights (linear symmetric, per-channel), fp16 compute",
        }[settings.precision]
        return ExportedFile(
            path=out_path,
            exporter=f"torch.export + coremltools.convert(mlprogram, {MINIMUM_DEPLOYMENT_TARGET})",
            opset=None,
            input_name=info["input"]["name"],
            input_shape=info["input"]["shape"],
            output_names=info["outputs"],
            notes=notes,
            extra={
                "minimum_deployment_target": MINIMUM_DEPLOYMENT_TARGET,
                "coreml_spec_version": info["spec_version"],
                "quantization": {"method": method, "tool": "coremltools"},
            },
        )

    def op_census(self, path: Path) -> dict[str, int]:
        return coreml_op_census(path)

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        return {"torch": torch.__version__, "coremltools": import_coremltools().__version__}
