"""TFLite export: PyTorch → ``.tflite`` with litert-torch (``torch.export`` → StableHLO/TFL MLIR → flatbuffer).

``litert_torch.convert(module, (example,)).export(path)`` converts the lowered module directly (no ONNX step,
no TensorFlow): depthwise circular convs become DEPTHWISE_CONV_2D, GELU the builtin op. Inputs:

* layout NCHW (default): input ``(1, 3, H, W)`` float32, TRANSPOSE ops inserted by the converter where it works
  channels-last;
* layout NHWC (``--layout NHWC``): the module is wrapped with ``litert_torch.to_channel_last_io`` so the input is
  ``(1, H, W, 3)`` float32, as TFLite image pipelines feed it; the manifest records ``input.layout = "NHWC"`` and
  parity transposes its NCHW inputs.

The output is ``(1, num_classes)`` float32 logits in both layouts. Precisions: fp32; fp16 and int8 are applied
to the fp32 flatbuffer by :func:`edgedeploy.export.quantize.quantize_tflite` (ai-edge-quantizer): fp16 weights,
int8 weight-only or full integer with a calibration set (``ExportSettings.int8_mode``, default "full";
``ExportSettings.calibration`` a folder, else the default set).

A conversion is checked, not trusted: the written file must load and allocate in LiteRT with the expected
input shape, and no Flex (SELECT_TF_OPS) or custom op may remain — a converter that "succeeds" with an
unrunnable model raises :class:`UnsupportedOpError` naming the op. Conversion of a full model takes ~0.5–2 min
on 2 cores (measured: EdgeFormer-S 130 s wall on a shared 2-vCPU host).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ConfigError, ExportError, MissingExtraError, UnsupportedOpError
from edgedeploy.export.base import ExportedFile, Exporter, ExportSettings, register_exporter
from edgedeploy.runtimes.litert_rt import LiteRtRuntime, tflite_op_census

_ATEN_OP = re.compile(r"(aten[.:]{1,2}[A-Za-z_][\w.]*)")
_BAD_OPS = ("FlexDelegate", "DELEGATE", "CUSTOM")


def import_litert_torch() -> Any:
    """``import litert_torch`` (quietly) or :class:`MissingExtraError` naming the ``[tflite]`` extra."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with warnings.catch_warnings(), captured_fd_output():
            warnings.simplefilter("ignore")
            import litert_torch
    except ImportError as e:
        raise MissingExtraError("litert-torch", "tflite", "TFLite export") from e
    for name in ("litert_torch", "absl", "jax"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return litert_torch


def torch_to_tflite(module: nn.Module, example: torch.Tensor, out_path: Path, layout: str = "NCHW") -> list[str]:
    """Convert ``module`` (NCHW ``example``) to ``out_path``; returns notes. See the module docstring for layouts.

    Raises :class:`UnsupportedOpError` (an aten op the converter rejects, or a Flex/custom op left in the file),
    :class:`ExportError` (other failures, including a file LiteRT cannot load), :class:`MissingExtraError`.
    """
    if layout not in ("NCHW", "NHWC"):
        raise ConfigError(f"--layout must be NCHW or NHWC (got {layout!r})")
    lt = import_litert_torch()
    module = module.eval()
    sample = example
    if layout == "NHWC":
        module = lt.to_channel_last_io(module, args=[0]).eval()
        sample = example.permute(0, 2, 3, 1).contiguous()
    log: list[str] = []
    try:
        with warnings.catch_warnings(), torch.no_grad(), captured_fd_output(log):
            warnings.simplefilter("ignore")
            edge_model = lt.convert(module, (sample,))
            edge_model.export(str(out_path))
    except Exception as e:
        text = f"{e}\n{''.join(log)}"
        m = _ATEN_OP.search(text)
        if m:
            raise UnsupportedOpError(f"TFLite conversion failed: {_first(e)}", op=m.group(1)) from e
        raise ExportError(f"TFLite conversion failed: {_first(e)}") from e
    check_tflite(out_path, tuple(sample.shape))
    return [f"input layout {layout}"]


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def check_tflite(path: Path, input_shape: tuple[int, ...]) -> str:
    """Prove ``path`` is runnable: loads and allocates in LiteRT, has ``input_shape``, and holds no Flex/custom op.

    Returns the input tensor's name. Raises :class:`ExportError` / :class:`UnsupportedOpError`.
    """
    if not path.is_file() or path.stat().st_size == 0:
        raise ExportError(f"TFLite conversion reported success but wrote no file at {path}")
    census = tflite_op_census(path)
    bad = [op for op in census if any(b in op.upper() for b in _BAD_OPS) or op.startswith("Flex")]
    if bad:
        raise UnsupportedOpError("TFLite conversion left ops the builtin runtime cannot run", op=", ".join(bad))
    try:
        session = LiteRtRuntime().load(path, threads=1)
    except Exception as e:
        raise ExportError(f"TFLite conversion wrote a file LiteRT cannot run: {_first(e)}") from e
    if tuple(session.input_shape) != tuple(input_shape):
        raise ExportError(f"TFLite input shape {session.input_shape} differs from the expected {input_shape}")
    return session.input_name


@register_exporter
class TfliteExporter(Exporter):
    """TFLite via litert-torch (see the module docstring)."""

    format = "tflite"

    def export(self, module: nn.Module, example: Tensor, out_path: Path, settings: ExportSettings) -> ExportedFile:
        from edgedeploy.export.quantize import int8_mode, quantize_tflite

        layout = settings.layout
        shape = list(example.shape) if layout == "NCHW" else [int(example.shape[i]) for i in (0, 2, 3, 1)]
        extra: dict[str, Any] = {}
        if settings.precision == "fp32":
            notes = torch_to_tflite(module, example, out_path, layout)
            exporter = "litert_torch.convert"
        else:
            with tempfile.TemporaryDirectory(prefix="edgedeploy-tflite-") as tmp:
                fp32 = Path(tmp) / "fp32.tflite"
                notes = torch_to_tflite(module, example, fp32, layout)
                calib = None
                mode = int8_mode(settings) if settings.precision == "int8" else None
                if mode == "full":
                    from edgedeploy.export.calibration import calibration_set

                    calib = calibration_set(int(example.shape[-1]), settings.calibration)
                info = quantize_tflite(fp32, out_path, settings.precision, calib, mode or "full", layout)
            extra["quantization"] = info
            if "calibration" in info:
                extra["calibration"] = info["calibration"]
            exporter = f"litert_torch.convert + {info['tool']}"
        input_name = check_tflite(out_path, tuple(shape))
        return ExportedFile(
            path=out_path,
            exporter=exporter,
            opset=None,
            input_name=input_name,
            input_layout=layout,
            input_shape=shape,
            output_names=["output_0"],
            notes=notes,
            extra=extra,
        )

    def op_census(self, path: Path) -> dict[str, int]:
        return tflite_op_census(path)

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        versions = {"torch": torch.__version__}
        for pkg in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer"):
            try:
                versions[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
        return versions
