"""Reduced precisions per format: fp16 and int8 (weight-only or full-integer with a calibration set).

Each function takes an fp32 artifact written by the format's exporter and writes the reduced-precision artifact;
it returns a dict for the manifest's ``quantization`` field (method, tool, calibration set). ``mode`` for int8 is
``"full"`` (weights and activations int8, activation ranges from :mod:`edgedeploy.export.calibration`) or
``"weight"`` (int8 weights, float activations). Inputs and outputs stay float32, except TFLite full integer
(below).

* ONNX (onnxruntime.quantization): fp16 — ``onnxruntime.transformers.float16.convert_float_to_float16`` with
  float32 I/O kept; int8 full — ``quantize_static``, QDQ format, per-channel symmetric int8 weights, uint8
  activations, MinMax calibration; int8 weight — ``quantize_dynamic`` (int8 weights, activations quantized at run
  time).
* MNN: fp16 — converter ``--fp16`` (fp16 weights); int8 weight — converter ``--weightQuantBits 8``; int8 full —
  the compiled quantizer ``_tools.mnnquant(["quantized.out", src, dst, config_json])`` (EMA feature ranges,
  MAX_ABS weights) on PNG calibration images, in a child process so a C++ crash cannot kill the caller.
  ``MNN.tools`` is never imported (it pip-installs a logging SDK and sends a usage log; TOOLCHAIN_NOTES.md).
* TFLite (ai-edge-quantizer on the fp32 ``.tflite``): fp16 — float casting of weights (compute stays fp32 unless
  the delegate chooses fp16); int8 weight — weight-only int8 channel-wise (explicit dequantize); int8 full —
  ``static_wi8_ai8`` with the calibration set. Full integer may make the model's input and output int8 (when the
  first / last op is quantized; the quantizer inserts QUANTIZE / DEQUANTIZE otherwise): the info records
  ``input_dtype`` / ``output_dtype``, and the LiteRT runtime quantizes the float input and dequantizes the output
  with the tensors' own scale and zero point.
* CoreML: see :mod:`edgedeploy.export.coreml` (fp16 compute precision; int8 linear weight quantization).

Errors: :class:`ExportError` when a quantizer fails or writes nothing; :class:`MissingExtraError` for missing tools.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ConfigError, ExportError, MissingExtraError
from edgedeploy.export.calibration import CalibrationSet

if TYPE_CHECKING:
    from edgedeploy.export.base import ExportSettings

INT8_MODES = ("full", "weight")


def int8_mode(settings: ExportSettings) -> str:
    """``settings.int8_mode`` ("full" by default); :class:`ConfigError` for anything else."""
    mode = str(settings.int8_mode)
    if mode not in INT8_MODES:
        raise ConfigError(f"int8 mode must be one of {', '.join(INT8_MODES)} (got {mode!r})")
    return mode


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ------------------------------------------------------------------------------------------------------ ONNX
def quantize_onnx(
    src: Path, dst: Path, precision: str, calib: CalibrationSet | None = None, mode: str = "full"
) -> dict[str, Any]:
    """fp32 ONNX ``src`` → ``dst`` at ``precision`` ("fp16" or "int8"); see the module docstring."""
    try:
        import onnx
        from onnxruntime import quantization as q
    except ImportError as e:
        raise MissingExtraError("onnxruntime", "onnx", "ONNX quantization") from e
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
            onnx.save(model, str(dst))
        except Exception as e:
            raise ExportError(f"ONNX fp16 conversion failed: {_first_line(e)}") from e
        return {"method": "fp16 weights and compute, float32 I/O", "tool": "onnxruntime.transformers.float16"}
    if precision != "int8":
        raise ConfigError(f"quantize_onnx: unsupported precision {precision}")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    tmp = tempfile.TemporaryDirectory(prefix="edgedeploy-onnxq-")
    try:
        return _quantize_onnx_int8(onnx, q, src, dst, calib, mode, Path(tmp.name))
    finally:
        tmp.cleanup()


def ort_calibration_reader(input_name: str, arrays: Iterable[np.ndarray]) -> Any:
    """An onnxruntime ``CalibrationDataReader`` feeding each array of ``arrays`` (float32, the model's input
    shape and layout, e.g. ``(1, 3, H, W)`` NCHW) as ``{input_name: array}``, once; needs onnxruntime."""
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(arrays)

        def get_next(self) -> dict[str, np.ndarray] | None:
            a = next(self.it, None)
            return None if a is None else {input_name: a}

    return Reader()


def _quantize_onnx_int8(
    onnx: Any, q: Any, src: Path, dst: Path, calib: CalibrationSet | None, mode: str, tmp: Path
) -> dict[str, Any]:
    src, excluded = prepare_for_quantization(onnx, src, tmp, mode)
    try:
        with warnings.catch_warnings(), captured_fd_output():
            warnings.simplefilter("ignore")
            if mode == "weight":
                q.quantize_dynamic(
                    str(src), str(dst), weight_type=q.QuantType.QInt8, per_channel=True, nodes_to_exclude=excluded
                )
                return {
                    "method": "int8 weights, dynamic int8 activations",
                    "tool": "onnxruntime quantize_dynamic",
                    "kept_float": excluded,
                }
            if calib is None:
                raise ConfigError("full-integer ONNX quantization needs a calibration set")
            name = onnx.load(str(src), load_external_data=False).graph.input[0].name
            reader = ort_calibration_reader(name, calib.arrays("NCHW"))
            q.quantize_static(
                str(src), str(dst), reader, quant_format=q.QuantFormat.QDQ, per_channel=True,
                activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                calibrate_method=q.CalibrationMethod.MinMax, nodes_to_exclude=excluded,
            )  # fmt: skip
    except ConfigError:
        raise
    except Exception as e:
        raise ExportError(f"ONNX int8 quantization failed: {_first_line(e)}") from e
    return {
        "method": "full integer: QDQ, per-channel int8 weights, uint8 activations (MinMax); SiLU as float "
        "com.microsoft.QuickGelu",
        "tool": "onnxruntime quantize_static",
        "calibration": calib.describe(),
        "kept_float": excluded,
    }


def prepare_for_quantization(onnx: Any, src: Path, folder: Path, mode: str = "full") -> tuple[Path, list[str]]:
    """Turn ``Constant`` nodes into initializers and list the Conv/MatMul/Gemm nodes whose weight is still computed
    at run time (onnxruntime's quantizer requires initializer weights; those nodes stay float). In ``"full"`` mode
    a conv reading the graph input with ≤ 4 input channels (the stem on the RGB image) stays float. In ``"weight"``
    mode MatMuls whose constant weight is not 2-D stay float too: onnxruntime 1.32's DynamicQuantizeMatMul
    rejects the per-channel zero point of a batched ``(heads, C, d)`` weight ("b zero point is not valid"), and an
    opset-23 ``Attention`` stays float (the quantizer mistakes it for com.microsoft's).
    In ``"full"`` mode every SiLU ``x · sigmoid(x)`` becomes one float ``com.microsoft.QuickGelu`` (:func:`fuse_silu`).
    Returns the path of the prepared model (in ``folder``) and the excluded node names."""
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    if mode == "full":
        fuse_silu(model)
    inits = {i.name for i in graph.initializer}
    excluded = [
        n.name
        for n in graph.node
        if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")
        and len(n.input) > 1
        and n.input[1] not in inits
        and n.op_type != "MatMul"  # activation x activation MatMul (attention) is handled by the quantizer
    ]
    dims = {i.name: list(i.dims) for i in graph.initializer}
    if mode == "full":
        # the stem conv on the raw image (≤ 4 input channels) stays float: onnxruntime's QLinearConv with K =
        # 3·k·k in NHWC took 0.46 ms for EdgeFormer-S's 3 → 16 stem where the fp32 NCHWc conv takes 0.13 ms, and
        # the quantize of the input goes with it (int8 / fp32 time 0.701 → 0.684 paired, 12 blocks, 2-vCPU Xeon)
        inputs = {i.name for i in graph.input} - inits
        excluded += [
            n.name for n in graph.node
            if n.op_type == "Conv" and n.input[0] in inputs and len(dims.get(n.input[1], [])) >= 2
            and dims[n.input[1]][1] * next((a.i for a in n.attribute if a.name == "group"), 1) <= 4
        ]  # fmt: skip
    if mode == "weight":
        excluded += [
            n.name for n in graph.node
            if n.op_type == "MatMul" and len(n.input) > 1 and len(dims.get(n.input[1], [0, 0])) != 2
        ]  # fmt: skip
        # the ONNX (opset 23) Attention op: quantize_dynamic takes any "Attention" for com.microsoft's and writes
        # a QAttention with the standard op's attributes, which onnxruntime 1.32 refuses to load
        excluded += [n.name for n in graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
    prepared = folder / "prepared.onnx"
    onnx.save(model, str(prepared))
    return prepared, excluded


def fuse_silu(model: Any) -> int:
    """Rewrite each SiLU ``Mul(x, Sigmoid(x))`` of ``model`` (an ``onnx.ModelProto``, in place) into one
    ``com.microsoft.QuickGelu(x, alpha=1)`` node (``x · sigmoid(1 · x)``, the same function), named as the Mul;
    returns how many. The quantizer leaves the op float (DequantizeLinear in, QuantizeLinear out), computed by one
    vectorised onnxruntime kernel — what onnxruntime's own fp32 graph does (``QuickGeluFusion``). Left to the
    quantizer, each SiLU became QLinearSigmoid + QLinearMul: 5.3 of EdgeFormer-S's 13.3 ms at 1 thread (int8
    profile) against 1.7 ms of QuickGelu in fp32; fused, int8 ran 1.77× fp32 instead of 1.48× (10 interleaved
    blocks, CPU time, AMD EPYC), top-1 vs fp32 1.000 on 200 inputs
    (``benchmarks/results/int8_per_runtime_onnx_silu.md``, ``int8_onnx_edgeformer_s.md``). Keeping the
    Sigmoid and Mul float without fusing them was slower (1.19×: two float ops and their Q/DQ). A Sigmoid whose
    output feeds anything else is left alone.
    """
    from onnx import helper

    from edgedeploy.export.onnx_passes import _readers

    graph = model.graph
    nodes = list(graph.node)
    made_by = {o: i for i, n in enumerate(nodes) for o in n.output}
    readers = {name: len(nodes_reading) for name, nodes_reading in _readers(graph).items()}
    graph_outputs = {o.name for o in graph.output}
    fused: dict[int, Any] = {}  # index of a Mul node → its QuickGelu (node names may be empty)
    dropped: set[int] = set()  # indices of the Sigmoids folded in
    for i, n in enumerate(nodes):
        if n.op_type != "Mul" or len(n.input) != 2:
            continue
        for x, s in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
            j = made_by.get(s)
            sig = nodes[j] if j is not None else None
            if (
                sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == x and readers.get(s) == 1
                and s not in graph_outputs and j not in dropped
            ):  # fmt: skip
                fused[i] = helper.make_node(
                    "QuickGelu", [x], [n.output[0]], name=n.name, domain="com.microsoft", alpha=1.0
                )
                dropped.add(j)
                break
    if not fused:
        return 0
    kept = [fused.get(i, n) for i, n in enumerate(nodes) if i not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(fused)


# ------------------------------------------------------------------------------------------------------- MNN
_MNNQUANT_CHILD = """
import sys
import MNN  # the runtime package only; never MNN.tools (pip install + usage log)
import _tools
ok = _tools.mnnquant(["quantized.out", sys.argv[1], sys.argv[2], sys.argv[3]])
sys.exit(0 if ok is None or ok else 1)
"""


def mnn_full_int8(src: Path, dst: Path, calib: CalibrationSet, timeout: float = 1800) -> dict[str, Any]:
    """fp32 MNN ``src`` → full-integer ``dst`` with the compiled quantizer (never ``MNN.tools``).

    The calibration images are written as ``size × size`` PNGs; the quantizer's preprocessing
    ``(pixel - mean) * normal`` with ``mean = 255 · ImageNet mean`` and ``normal = 1 / (255 · ImageNet std)``
    reproduces :mod:`edgedeploy.data`'s normalisation exactly (no resize happens at that size). Feature ranges:
    EMA (MNN's KL method crashes with SIGSEGV on the transformer models of the zoo in MNN 3.6.1, and MNN itself
    switches to EMA for any model with a BatchNorm left); weights: MAX_ABS, per channel.

    ``_tools.mnnquant`` is called with an argv list (``["quantized.out", src, dst, config]``; three plain strings
    abort in C++) in a child Python process that imports only ``MNN`` and ``_tools``: a crash of the C++ tool
    becomes an :class:`ExportError` instead of killing the caller. ``PIP_NO_INDEX=1`` is set for the child as a
    second guard; nothing is installed and nothing is sent.
    """
    import os
    import signal
    import subprocess
    import sys

    from edgedeploy.data import IMAGENET_MEAN, IMAGENET_STD
    from edgedeploy.runtimes.mnn_rt import import_mnn

    import_mnn()  # MissingExtraError naming [mnn] when absent
    with tempfile.TemporaryDirectory(prefix="edgedeploy-mnnquant-") as tmp:
        folder = Path(tmp) / "images"
        calib.write_images(folder)
        config = {
            "format": "RGB",
            "mean": [float(v) for v in IMAGENET_MEAN * 255.0],
            "normal": [float(v) for v in 1.0 / (IMAGENET_STD * 255.0)],
            "width": calib.size,
            "height": calib.size,
            "path": str(folder) + "/",
            "used_image_num": len(calib.images),
            "feature_quantize_method": "EMA",
            "weight_quantize_method": "MAX_ABS",
        }
        cfg = Path(tmp) / "quant.json"
        cfg.write_text(json.dumps(config))
        if dst.exists():
            dst.unlink()
        env = {**os.environ, "PIP_NO_INDEX": "1"}
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _MNNQUANT_CHILD, str(src), str(dst), str(cfg)],
                capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp,
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise ExportError(f"MNN int8 quantization did not finish in {timeout:.0f} s") from e
    if proc.returncode != 0 or not dst.is_file() or dst.stat().st_size == 0:
        how = f"exit status {proc.returncode}"
        if proc.returncode < 0:
            how = f"crashed with {signal.Signals(-proc.returncode).name}"
        lines = [ln for ln in (proc.stdout + proc.stderr).strip().splitlines() if ln.strip()]
        raise ExportError(f"MNN int8 quantization failed ({how}): {lines[-1] if lines else 'no output'}")
    return {
        "method": "full integer: int8 weights (MAX_ABS) and activations (EMA ranges)",
        "tool": "MNN quantizer (compiled _tools.mnnquant in a child process; not MNN.tools)",
        "calibration": calib.describe(),
    }


# ---------------------------------------------------------------------------------------------------- TFLite
def _aeq() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from ai_edge_quantizer import quantizer, recipe
    except ImportError as e:
        raise MissingExtraError("ai-edge-quantizer", "tflite", "TFLite fp16/int8") from e
    return quantizer, recipe


def quantize_tflite(
    src: Path,
    dst: Path,
    precision: str,
    calib: CalibrationSet | None = None,
    mode: str = "full",
    layout: str = "NCHW",
) -> dict[str, Any]:
    """fp32 ``.tflite`` ``src`` → ``dst`` at ``precision`` with ai-edge-quantizer (see the module docstring).

    ``layout`` is the artifact's input layout (the calibration arrays are fed in it).
    """
    quantizer, recipe = _aeq()
    from ai_edge_quantizer import qtyping

    q = quantizer.Quantizer(str(src))
    if precision == "fp16":
        q.add_weight_only_config(
            regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
            algorithm_key="float_casting",
        )  # fmt: skip
        info: dict[str, Any] = {"method": "fp16 weights (float casting), float32 compute", "tool": "ai-edge-quantizer"}
    elif precision == "int8" and mode == "weight":
        q.load_quantization_recipe(recipe.weight_only_wi8_afp32())
        info = {"method": "int8 weights (channel-wise), float32 compute", "tool": "ai-edge-quantizer"}
    elif precision == "int8":
        if calib is None:
            raise ConfigError("full-integer TFLite quantization needs a calibration set")
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        info = {
            "method": "full integer: int8 weights (channel-wise) and activations (min/max), float32 I/O",
            "tool": "ai-edge-quantizer static_wi8_ai8",
            "calibration": calib.describe(),
        }
    else:
        raise ConfigError(f"quantize_tflite: unsupported precision {precision}")
    try:
        with warnings.catch_warnings(), captured_fd_output():
            warnings.simplefilter("ignore")
            result_calib = None
            if q.need_calibration:
                from ai_edge_litert.interpreter import Interpreter

                it = Interpreter(model_path=str(src))
                sig = next(iter(it.get_signature_list()))
                in_name = it.get_signature_list()[sig]["inputs"][0]
                data = {sig: [{in_name: a} for a in calib.arrays(layout)]}  # type: ignore[union-attr]
                result_calib = q.calibrate(data, num_threads=1)
            result = q.quantize(result_calib, enable_progress_report=False)
        dst.write_bytes(bytes(result.quantized_model))
    except (ConfigError, MissingExtraError):
        raise
    except Exception as e:
        raise ExportError(f"TFLite {precision} quantization failed: {_first_line(e)}") from e
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(dst))
    info["input_dtype"] = it.get_input_details()[0]["dtype"].__name__
    info["output_dtype"] = it.get_output_details()[0]["dtype"].__name__
    return info
