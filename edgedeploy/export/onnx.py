"""ONNX export: ``torch.onnx.export`` then onnxsim.

Exporter choice per opset (recorded in the manifest):

* opset ≥ 18 (default 20, or the ``onnx_opset`` a lowered submodule declares: :func:`module_opset`): the
  ``torch.export``-based exporter (``dynamo=True``), weights inlined into one file;
* opset ≤ 17: the TorchScript-based exporter (``dynamo=False``). LayerNorm becomes LayerNormalization at 17 and
  is decomposed (ReduceMean/Sub/Pow/Sqrt/Div) at ≤ 16. Used when the dynamo exporter fails at the default opset
  (noted in the manifest), or when asked for.

The default is measured, not guessed (onnxruntime, 2 threads, 8 interleaved blocks × 10 runs, quiet 2-vCPU Xeon,
2026-12-01, paired against torch 2.13's plain ``torch.onnx.export`` + onnxsim of the same module): the opset-17
TorchScript graph of EdgeViT-XS's lowered module ran at 1.14× of the plain export, its opset-20 graph at 0.98×;
EdgeFormer-S's opset-20 graph is op for op the plain export's (1.00×, ``naive_vs_edgedeploy_after.md``). Earlier
CPU-time rounds on a loaded host agreed (opset 20 / 17: 0.84× EdgeViT-XS, 0.94× EMO-5M, 0.96× MobileViT-S,
1.01× EdgeFormer-S).

The graph is then simplified with onnxsim (constant folding, shape inference); a failure to simplify keeps the
unsimplified graph and says so in the notes. Two exact passes of :mod:`edgedeploy.export.onnx_passes` follow
(each noted when it changed something): ``fold_attention_heads`` (opset-23 Attention on ``(B, S, C)`` tensors)
and ``fold_batchnorm_into_next_conv``. Input ``input`` is ``(1, 3, H, W)`` float32 NCHW, output ``logits``.

Precisions (:mod:`edgedeploy.export.quantize`, onnxruntime's tools, applied to the fp32 graph): fp16 (weights and
compute, float32 I/O kept) and int8 — full integer QDQ with a calibration set by default, or weight-only /
dynamic with ``ExportSettings.int8_mode = "weight"``. Input and output stay float32 in every precision.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ArtifactError, ExportError, MissingExtraError, UnsupportedOpError
from edgedeploy.export.base import ExportedFile, Exporter, ExportSettings, register_exporter
from edgedeploy.registry import DEFAULT_OPSET, FALLBACK_OPSET

_UNSUPPORTED = re.compile(
    r"(?:Exporting the operator '(?P<op1>[\w:.]+)' to ONNX opset version \d+ is not supported)"
    r"|(?:[Uu]nsupported.*?(?:operator|op)\W+'?(?P<op2>[\w:.]+)'?)"
)


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise MissingExtraError("onnx", "onnx", "ONNX export") from e
    return onnx


def torch_to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    out_path: Path,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    output_names: list[str] | None = None,
) -> ExportedFile:
    """Export ``module`` on the batch-1 NCHW ``example`` to ``out_path`` (one self-contained ``.onnx`` file).

    ``output_names``: the graph's output names (default ``["logits"]``, the zoo's single output).

    Raises :class:`UnsupportedOpError` naming the op (and node where the exporter says), :class:`ExportError`
    for other failures, :class:`MissingExtraError` without the ``[onnx]`` extra.
    """
    onnx = _import_onnx()
    notes: list[str] = []
    dynamo = opset >= 18
    names = list(output_names or ["logits"])
    log: list[str] = []
    try:
        with warnings.catch_warnings(), torch.no_grad(), captured_fd_output(log):
            warnings.simplefilter("ignore")
            if dynamo:
                program = torch.onnx.export(
                    module, (example,), dynamo=True, opset_version=opset, input_names=["input"],
                    output_names=names, verbose=False, optimize=True,
                )  # fmt: skip
                program.save(str(out_path), external_data=False)
            else:
                torch.onnx.export(
                    module, (example,), str(out_path), dynamo=False, opset_version=opset, input_names=["input"],
                    output_names=names, do_constant_folding=True,
                )  # fmt: skip
    except Exception as e:
        text = str(e) + "\n" + "".join(log)
        m = _UNSUPPORTED.search(text)
        if m:
            op = m.group("op1") or m.group("op2")
            node = torch_node_of(module, example, op)
            raise UnsupportedOpError(f"ONNX export at opset {opset} failed: {op} is not supported", op=op,
                                     node=node) from e  # fmt: skip
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise ExportError(f"ONNX export at opset {opset} failed: {first}") from e
    model = onnx.load(str(out_path))
    before_simplify = model
    if simplify:
        try:
            import onnxsim

            with captured_fd_output():
                simplified, ok = onnxsim.simplify(model)
            if ok:
                model = simplified
                onnx.save(model, str(out_path))
            else:
                notes.append("onnxsim check failed; kept the unsimplified graph")
        except ImportError:
            notes.append("onnxsim not installed; graph not simplified")
        except Exception as e:  # noqa: BLE001 - onnxsim raises bare RuntimeErrors from C++
            notes.append(f"onnxsim failed ({type(e).__name__}); kept the unsimplified graph")
    from edgedeploy.export.onnx_passes import fold_attention_heads, fold_batchnorm_into_next_conv

    model, folded = fold_attention_heads(model)
    model, bn_folded = fold_batchnorm_into_next_conv(model)
    if folded or bn_folded:
        onnx.save(model, str(out_path))
    if folded:
        notes.append(f"{len(folded)} Attention node(s) take (B, S, heads·d) tensors (head split folded in)")
    if bn_folded:
        notes.append(f"{len(bn_folded)} BatchNormalization node(s) folded into the unpadded conv after them")
    onnx.checker.check_model(model)
    from edgedeploy.export.sourcemap import module_tables

    return ExportedFile(
        path=out_path,
        exporter=f"torch.onnx.export(dynamo={dynamo})" + (" + onnxsim" if simplify else ""),
        opset=opset,
        input_name=model.graph.input[0].name,
        input_shape=[d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim],
        output_names=[o.name for o in model.graph.output],
        notes=notes,
        extra={"sourcemap_tables": module_tables(module, [before_simplify, model])},
    )


def export_default(
    module: nn.Module, example: torch.Tensor, out_path: Path, opset: int | None, output_names: list[str] | None = None
) -> ExportedFile:
    """:func:`torch_to_onnx` at ``opset``, or at :data:`DEFAULT_OPSET` falling back to :data:`FALLBACK_OPSET` (the
    TorchScript exporter) when the dynamo exporter fails; the fallback is noted in ``notes`` (manifest)."""
    if opset is not None:
        return torch_to_onnx(module, example, out_path, opset=opset, output_names=output_names)
    default = module_opset(module)
    try:
        return torch_to_onnx(module, example, out_path, opset=default, output_names=output_names)
    except ExportError as e:
        exported = torch_to_onnx(module, example, out_path, opset=FALLBACK_OPSET, output_names=output_names)
        exported.notes.append(f"the opset-{default} (dynamo) export failed ({e}); used opset {FALLBACK_OPSET}")
        return exported


def module_opset(module: nn.Module) -> int:
    """The opset to export ``module`` at when none is asked for: :data:`DEFAULT_OPSET`, raised to the largest
    ``onnx_opset`` a submodule declares (an export form that needs a newer op, e.g.
    :class:`edgedeploy.nn.forms.mobilevit.FusedAttention` and opset 23's ``Attention``), capped by ``OPSET_RANGE``."""
    from edgedeploy.registry import OPSET_RANGE

    wanted = max((int(getattr(m, "onnx_opset", 0)) for m in module.modules()), default=0)
    return min(max(DEFAULT_OPSET, wanted), OPSET_RANGE[1])


def torch_node_of(module: nn.Module, example: torch.Tensor, op: str | None) -> str | None:
    """Where ``op`` (``aten::fft_rfft2``) is called in ``module``: ``"<module path> (<file>:<line>)"``, found on a
    ``torch.jit.trace`` of the module (the exporter names the op, not the node); None when it cannot tell."""
    if not op or "::" not in op:
        return None
    try:
        with warnings.catch_warnings(), torch.no_grad(), captured_fd_output():
            warnings.simplefilter("ignore")
            graph = torch.jit.trace(module, (example,), check_trace=False, strict=False).inlined_graph
    except Exception:  # noqa: BLE001 - a best-effort hint for the error message
        return None
    for n in graph.nodes():
        if n.kind() == op:
            scope = n.scopeName().split("/")[-1].removeprefix("__module.") or "<top level>"
            where = n.sourceRange().strip().splitlines()[0] if n.sourceRange().strip() else ""
            loc = re.match(r"(?P<file>\S+)\((?P<line>\d+)\)", where)
            return f"{scope} ({Path(loc['file']).name}:{loc['line']})" if loc else scope
    return None


def onnx_op_census(path: Path) -> dict[str, int]:
    """ONNX node op_type -> count (top-level graph)."""
    onnx = _import_onnx()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ArtifactError(f"{path} is not a readable ONNX model: {str(e).splitlines()[0]}") from e
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


@register_exporter
class OnnxExporter(Exporter):
    """ONNX (see the module docstring); fp16 / int8 through :mod:`edgedeploy.export.quantize`."""

    format = "onnx"

    def export(self, module: nn.Module, example: Tensor, out_path: Path, settings: ExportSettings) -> ExportedFile:
        names = settings.output_names
        if settings.precision == "fp32":
            return export_default(module, example, out_path, settings.opset, names)
        from edgedeploy.export.calibration import calibration_set
        from edgedeploy.export.quantize import int8_mode, quantize_onnx

        mode = int8_mode(settings) if settings.precision == "int8" else "full"
        calib = None
        if settings.precision == "int8" and mode == "full":
            calib = calibration_set(int(example.shape[-1]), settings.calibration)
        with tempfile.TemporaryDirectory(prefix="edgedeploy-onnx-") as tmp:
            exported = export_default(module, example, Path(tmp) / "fp32.onnx", settings.opset, names)
            info = quantize_onnx(exported.path, out_path, settings.precision, calib, mode)
        exported.path = out_path
        exported.exporter += f" + {info['tool']}"
        exported.extra["quantization"] = info
        if "calibration" in info:
            exported.extra["calibration"] = info["calibration"]
        return exported

    def op_census(self, path: Path) -> dict[str, int]:
        return onnx_op_census(path)

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        onnx = _import_onnx()
        versions = {"torch": torch.__version__, "onnx": onnx.__version__}
        try:
            import onnxsim

            versions["onnxsim"] = getattr(onnxsim, "__version__", "?")
        except ImportError:
            pass
        return versions
