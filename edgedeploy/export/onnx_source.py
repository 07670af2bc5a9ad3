"""Export from an ONNX file a user brings (``edgedeploy export model.onnx --to mnn``).

Steps: read the file; fix its input shape (the file's static dims, or ``--input-shape`` for dynamic ones); apply
the ONNX-level lowering the target needs (:attr:`~edgedeploy.registry.FormatSpec.onnx_passes`, from
:mod:`edgedeploy.export.onnx_passes`: wrap Pad → Slice + Concat for MNN, the 5-D qkv split → 4-D for ncnn), proven
equal with onnxruntime; simplify with onnxsim (input shape overwritten, constant folding) and check with
``onnx.checker``; then convert (MNN's converter, saving a static model: no ``Shape`` / ``Rank`` ops left), write it
(``--to onnx``; fp16 / int8 with onnxruntime's tools), or hand it to the format's exporter (``export_onnx``: ncnn
through pnnx's ONNX front end). Only formats whose :attr:`~edgedeploy.registry.FormatSpec.from_onnx` is true can
start from ONNX; others (TFLite via litert-torch and CoreML via coremltools convert PyTorch modules) raise
:class:`ConfigError`.

The parity reference is onnxruntime running the *source* file (:func:`reference_runner`), recorded in the manifest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ArtifactError, ConfigError, ExportError
from edgedeploy.spec import graph_inputs, import_onnx

#: a rewrite must not change outputs by more than this (max abs, fp32)
PASS_TOLERANCE = 1e-5


def load_onnx(path: Path) -> Any:
    """The ONNX model (external data loaded); :class:`ArtifactError` for an unreadable file."""
    onnx = import_onnx()
    try:
        return onnx.load(str(path))
    except Exception as e:
        raise ArtifactError(f"{path} is not a readable ONNX model: {str(e).strip().splitlines()[0]}") from e


def check_can_start_from_onnx(fmt: str) -> None:
    """:class:`ConfigError` (exit 2) when format ``fmt`` cannot be produced from an ONNX file here."""
    from edgedeploy.registry import format_spec, formats

    spec = format_spec(fmt)
    if not spec.from_onnx:
        able = ", ".join(f.name for f in formats().values() if f.from_onnx)
        raise ConfigError(f"format {fmt} cannot start from an ONNX file ({spec.description or spec.module} converts "
                          f"PyTorch modules); from ONNX edgedeploy makes: {able}")  # fmt: skip


def prepare(src: Path, shape: tuple[int, ...], fmt: str, work: Path) -> tuple[Path, dict[str, Any]]:
    """Fix the input shape, lower for ``fmt``, simplify and check; returns ``(prepared .onnx, lowering info)``.

    Raises :class:`ExportError` when a rewrite changes the outputs (max abs > :data:`PASS_TOLERANCE`) or the
    result fails ``onnx.checker``.
    """
    from edgedeploy.export.onnx_passes import ONNX_FILE_PASSES, prove_equal
    from edgedeploy.registry import format_spec

    onnx = import_onnx()
    model = load_onnx(src)
    inp = graph_inputs(model)[0]
    info: dict[str, Any] = {"mode": "onnx", "rewritten": [], "passes": [], "notes": []}
    fixed = work / "fixed.onnx"
    _set_input_shape(model, inp.name, shape)
    onnx.save(model, str(fixed))
    current = fixed
    for pass_name in format_spec(fmt).onnx_passes:
        rewrite, what, op = ONNX_FILE_PASSES[pass_name]
        model, names = rewrite(model)
        if names:
            rewritten = work / f"lowered_{pass_name}.onnx"
            onnx.save(model, str(rewritten))
            err = prove_equal(current, rewritten, shape)
            if err > PASS_TOLERANCE:
                raise ExportError(f"the {what} rewrite changed the outputs (max abs error {err:.3g}); "
                                  "this is a bug in edgedeploy", op=op, node=names[0])  # fmt: skip
            info["passes"].append({"pass": what, "nodes": names, "max_abs_error": err})
            info["rewritten"] += names
            current = rewritten
    simplified = work / "simplified.onnx"
    model = onnx.load(str(current))
    try:
        import onnxsim

        with captured_fd_output():
            out, ok = onnxsim.simplify(model, overwrite_input_shapes={inp.name: list(shape)})
        if ok:
            model = out
            info["notes"].append("simplified with onnxsim")
        else:
            info["notes"].append("onnxsim check failed; kept the unsimplified graph")
    except ImportError:
        info["notes"].append("onnxsim not installed; graph not simplified")
    except Exception as e:  # noqa: BLE001 - onnxsim raises bare RuntimeErrors from C++
        info["notes"].append(f"onnxsim failed ({type(e).__name__}: {str(e)[:120]}); kept the unsimplified graph")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ExportError(f"{src} does not pass onnx.checker: {str(e).strip().splitlines()[0]}") from e
    onnx.save(model, str(simplified))
    return simplified, info


def _set_input_shape(model: Any, name: str, shape: tuple[int, ...]) -> None:
    for i in model.graph.input:
        if i.name == name:
            for d, v in zip(i.type.tensor_type.shape.dim, shape, strict=True):
                d.Clear()
                d.dim_value = int(v)


def export_onnx_file(src: Path, shape: tuple[int, ...], fmt: str, out_path: Path, settings: Any) -> Any:
    """Produce ``out_path`` in ``fmt`` from the ONNX file ``src``; returns an :class:`ExportedFile`.

    ``settings`` is the pipeline's :class:`~edgedeploy.export.base.ExportSettings` (precision, options).
    """
    from edgedeploy.export.base import ExportedFile

    check_can_start_from_onnx(fmt)
    onnx = import_onnx()
    precision = settings.precision
    notes: list[str] = []
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgedeploy-onnxsrc-") as tmp:
        prepared, info = prepare(src, shape, fmt, Path(tmp))
        notes += info.pop("notes")
        extra["lowering"] = info
        model = onnx.load(str(prepared), load_external_data=False)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        tool = "onnx file + onnxsim"
        if fmt == "onnx":
            if precision == "fp32":
                onnx.save(onnx.load(str(prepared)), str(out_path))
            else:
                from edgedeploy.export.quantize import int8_mode, quantize_onnx

                mode = int8_mode(settings) if precision == "int8" else "full"
                calib = _calibration(shape, settings) if precision == "int8" and mode == "full" else None
                q = quantize_onnx(prepared, out_path, precision, calib, mode)
                tool += f" + {q['tool']}"
                extra["quantization"] = q
        elif fmt == "mnn":
            from edgedeploy.export.mnn import onnx_to_mnn

            args = {"fp16": ["--fp16"], "int8": ["--weightQuantBits", "8"]}.get(precision, [])
            if precision == "int8":
                from edgedeploy.export.quantize import int8_mode

                if int8_mode(settings) == "full":
                    raise ConfigError("int8 full-integer MNN from an ONNX file is not supported; use --int8 weight")
            # the input shape is fixed here, so the converter folds the shape computations it would otherwise
            # insert (Shape / Rank ops from Gemm, Flatten, Squeeze ...; PP-OCRv4 rec: 12 + 9) into a static model
            args = [*args, "--saveStaticModel"]
            onnx_to_mnn(prepared, out_path, args)
            notes.append("MNN static model (--saveStaticModel): shape computations folded for the fixed input shape")
            tool += " -> MNN converter (in-process _tools.mnnconvert" + (f", {' '.join(args)})" if args else ")")
        else:  # a third-party from_onnx format: its exporter takes an ONNX file
            from edgedeploy.export.base import get_exporter

            exporter = get_exporter(fmt)
            if not hasattr(exporter, "export_onnx"):
                raise ConfigError(f"format {fmt} says from_onnx but its exporter has no export_onnx(path, out)")
            made = exporter.export_onnx(prepared, out_path, settings)
            if isinstance(made, ExportedFile):  # the exporter's own names (ncnn: in0 / out0), notes, side files
                return replace(made, exporter=f"{tool} -> {made.exporter}", opset=opset, input_shape=list(shape),
                               notes=notes + made.notes, extra={**extra, **made.extra})  # fmt: skip
            tool += f" -> {fmt} exporter"
        final = onnx.load(str(prepared), load_external_data=False)
    return ExportedFile(
        path=out_path,
        exporter=tool,
        opset=opset,
        input_name=graph_inputs(final)[0].name,
        input_shape=list(shape),
        output_names=[o.name for o in final.graph.output],
        notes=notes,
        extra=extra,
    )


def _calibration(shape: tuple[int, ...], settings: Any) -> Any:
    from edgedeploy.export.calibration import calibration_set

    if shape[1] != 3 or shape[2] != shape[3]:
        raise ConfigError("int8 full-integer calibration needs a square RGB input; use --int8 weight")
    return calibration_set(int(shape[-1]), settings.calibration)


def reference_runner(src: Path) -> Callable[[np.ndarray], list[np.ndarray]]:
    """onnxruntime (CPU, one thread) running the source file: NCHW float32 → every output, float32."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ArtifactError(f"onnxruntime cannot run the source file {src}: {str(e).splitlines()[0]}") from e
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(y, dtype=np.float32) for y in sess.run(None, {name: x})]

    return run
