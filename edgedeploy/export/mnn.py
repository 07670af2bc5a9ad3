"""MNN export: PyTorch → ONNX (torch.export-based exporter, opset 20 by default) → MNN converter, in-process.

The converter is the compiled ``_tools.mnnconvert`` entry point shipped in the MNN wheel, called directly. The
``mnnconvert`` console script and ``MNN.tools`` are never imported: that import path runs
``pip install -U aliyun-log-python-sdk`` and sends a usage log (TOOLCHAIN_NOTES.md, "MNN"); a test proves the
installed package set is unchanged and no socket is opened during conversion.

Exporter and opset, measured, not guessed: the ``torch.export``-based exporter at opset 20 (what torch 2.13's plain
``torch.onnx.export`` uses) is the default, because MNN runs its graphs faster than the TorchScript exporter's
opset-17 graphs of the same module: EMO-5M was 1.07× and EdgeViT-XS 1.25× slower on MNN with the opset-17 export
than with the plain default export (issue 13, quiet host); on the quiet host of 2026-12-01 (2 threads, 12
interleaved blocks, ``benchmarks/results/naive_vs_edgedeploy_before_quiet.md``) the opset-17 exports of the lowered
modules ran at 1.16× (EdgeViT-XS), 1.05× (EMO-5M), 1.02× (EdgeFormer-S) of the plain export on MNN. When the dynamo
exporter fails on a module, opset 17 (TorchScript exporter) is used and the manifest's notes say so; ``--opset``
picks one explicitly. LayerNorm: MNN 3.6.1 runs the LayerNormalization op (opset ≥ 17) correctly (max abs error
3.6e-7 on MobileViT-S) and faster than the decomposed form (1.028× slower on MobileViT-S, 1.035× on EdgeViT-XXS,
``benchmarks/results/lowering_ablation.md``); ``--opset 13`` keeps the decomposed form for older MNN builds.

Precisions: ``fp32``; ``fp16`` stores fp16 weights
(``--fp16``, compute stays fp32 on CPU with precision "high"); ``int8`` full integer by default (the compiled
quantizer ``_tools.mnnquant`` in-process on a calibration set, :func:`edgedeploy.export.quantize.mnn_full_int8`)
or weight-only with ``ExportSettings.int8_mode = "weight"`` (converter ``--weightQuantBits 8``: int8 weights,
float compute).
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ArtifactError, ExportError, MissingExtraError, UnsupportedOpError
from edgedeploy.export.base import ExportedFile, Exporter, ExportSettings, register_exporter
from edgedeploy.export.onnx import export_default
from edgedeploy.runtimes.mnn_rt import import_mnn

# the converter prints e.g. "These Op Not Support: ONNX::DFT ONNX::STFT"
_NOT_SUPPORTED = re.compile(r"Op Not Support:\s*(?P<ops>[^\n]+)", re.IGNORECASE)


def _converter() -> Any:
    import_mnn()  # raises MissingExtraError naming the [mnn] extra
    try:
        with captured_fd_output():
            import _tools  # the compiled converter inside the MNN wheel; NOT MNN.tools
    except ImportError as e:
        raise MissingExtraError("MNN (_tools converter)", "mnn", "MNN conversion") from e
    return _tools


def onnx_to_mnn(onnx_path: Path, mnn_path: Path, extra_args: list[str] | None = None) -> str:
    """Convert ``onnx_path`` to ``mnn_path`` in-process; returns the converter's log.

    Raises :class:`UnsupportedOpError` (op named from the converter's log) or :class:`ExportError`.
    """
    tools = _converter()
    argv = ["mnnconvert", "-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(mnn_path)]
    argv += ["--bizCode", "edgedeploy", *(extra_args or [])]
    log: list[str] = []
    ok: Any = False
    with captured_fd_output(log):
        try:
            ok = tools.mnnconvert(argv)
        except Exception as e:  # noqa: BLE001 - the binding raises plain errors from C++
            log.append(f"\n{type(e).__name__}: {e}")
    text = "".join(log)
    if not ok or not mnn_path.is_file() or mnn_path.stat().st_size == 0 or "Converted Success" not in text:
        m = _NOT_SUPPORTED.search(text)
        if m:
            ops = [tok.split("::")[-1] for tok in m.group("ops").split()]
            node = _first_node_of(onnx_path, ops[0]) if ops else None
            more = f" (unsupported by MNN: {', '.join(ops)})" if len(ops) > 1 else ""
            raise UnsupportedOpError(f"MNN conversion failed{more}", op=ops[0] if ops else None, node=node)
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        raise ExportError(f"MNN conversion failed: {last[0].strip()}")
    return text


def _first_node_of(onnx_path: Path, op_type: str) -> str | None:
    """Name of the first ONNX node of ``op_type`` (the MNN converter names the op, not the node)."""
    try:
        import onnx

        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - a best-effort hint for the error message
        return None
    return next((n.name or n.output[0] for n in graph.node if n.op_type == op_type), None)


def mnn_op_census(path: Path) -> dict[str, int]:
    """MNN op type -> count, read with ``MNN.expr.load_as_dict`` (includes Const and Input entries)."""
    mnn = import_mnn()
    try:
        with captured_fd_output():
            variables = mnn.expr.load_as_dict(str(path))
    except Exception as e:
        raise ArtifactError(f"{path} is not a readable MNN model ({type(e).__name__})") from e
    return dict(sorted(Counter(v.op_type for v in variables.values()).items()))


@register_exporter
class MnnExporter(Exporter):
    """MNN via ONNX (see module docstring)."""

    format = "mnn"

    def export(self, module: nn.Module, example: Tensor, out_path: Path, settings: ExportSettings) -> ExportedFile:
        from edgedeploy.export.quantize import int8_mode, mnn_full_int8

        mode = int8_mode(settings) if settings.precision == "int8" else None
        extra_args = {"fp16": ["--fp16"], "int8": ["--weightQuantBits", "8"] if mode == "weight" else []}.get(
            settings.precision, []
        )
        extra: dict[str, Any] = {}
        quant_tool = ""
        with tempfile.TemporaryDirectory(prefix="edgedeploy-mnn-") as tmp:
            onnx_file = export_default(module, example, Path(tmp) / "model.onnx", settings.opset, settings.output_names)
            opset = onnx_file.opset  # the one actually used (the default, its fallback, or --opset)
            if mode == "full":
                from edgedeploy.export.calibration import calibration_set

                fp32 = Path(tmp) / "fp32.mnn"
                onnx_to_mnn(onnx_file.path, fp32)
                calib = calibration_set(int(example.shape[-1]), settings.calibration)
                info = mnn_full_int8(fp32, out_path, calib)
                extra = {"quantization": info, "calibration": info["calibration"]}
                quant_tool = f" + {info['tool']}"
            else:
                onnx_to_mnn(onnx_file.path, out_path, extra_args)
                if settings.precision == "fp16":
                    extra = {"quantization": {"method": "fp16 weights, fp32 compute", "tool": "MNN converter --fp16"}}
                elif mode == "weight":
                    extra = {
                        "quantization": {
                            "method": "int8 weights (weight-only), float compute",
                            "tool": "MNN converter --weightQuantBits 8",
                        }
                    }
        extra["sourcemap_tables"] = onnx_file.extra.get("sourcemap_tables")  # ONNX names → modules, for MNN ops
        return ExportedFile(
            path=out_path,
            exporter=f"{onnx_file.exporter} -> MNN converter (in-process _tools.mnnconvert"
            + (f", {' '.join(extra_args)}" if extra_args else "")
            + ")"
            + quant_tool,
            opset=opset,
            input_name=onnx_file.input_name,
            input_shape=onnx_file.input_shape,
            output_names=onnx_file.output_names,
            notes=onnx_file.notes,
            extra=extra,
        )

    def op_census(self, path: Path) -> dict[str, int]:
        return mnn_op_census(path)

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        import onnx

        return {"torch": torch.__version__, "onnx": onnx.__version__, "MNN": import_mnn().version()}
