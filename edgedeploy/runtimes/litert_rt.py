"""LiteRT (the TFLite interpreter shipped as ``ai-edge-litert``) behind the :class:`~edgedeploy.runtimes.base.Runtime`
protocol.

``ai_edge_litert.interpreter.Interpreter(model_path=..., num_threads=N)`` runs ``.tflite`` files with the default
XNNPACK CPU delegate. ``tflite-runtime`` is not used: its last release (2.14) does not import under numpy 2
(TOOLCHAIN_NOTES.md). The input is whatever layout the artifact was exported with: NCHW ``(1, 3, H, W)`` by default,
NHWC ``(1, H, W, 3)`` for ``--layout NHWC`` (the manifest's ``input.layout`` says which; parity transposes for it).
Quantized artifacts keep float32 input and output (the quantizer inserts QUANTIZE / DEQUANTIZE at the boundaries);
an artifact with integer input is fed by quantizing with the input tensor's own scale and zero point.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ArtifactError, MissingExtraError
from edgedeploy.runtimes.base import Runtime, Session, register_runtime


def import_interpreter() -> Any:
    """``ai_edge_litert.interpreter.Interpreter`` or :class:`MissingExtraError` naming the ``[tflite]`` extra."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise MissingExtraError("ai-edge-litert", "tflite", "the LiteRT runtime") from e
    return Interpreter


def _quantize_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return np.ascontiguousarray(x, dtype=np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return np.asarray(y, dtype=np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


class LiteRtSession(Session):
    """One allocated interpreter; ``run`` copies the input in, invokes, and copies the first output out."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.input_detail = interpreter.get_input_details()[0]
        self.output_details = interpreter.get_output_details()
        self.input_name = self.input_detail["name"]
        self.input_shape = tuple(int(d) for d in self.input_detail["shape"])
        self.output_names = [d["name"] for d in self.output_details]

    def _set(self, x: np.ndarray) -> None:
        if tuple(x.shape) != self.input_shape:
            raise ValueError(f"input shape {tuple(x.shape)} does not match the artifact's {self.input_shape}")
        self.interpreter.set_tensor(self.input_detail["index"], _quantize_input(x, self.input_detail))

    def run(self, x: np.ndarray) -> np.ndarray:
        self._set(x)
        self.interpreter.invoke()
        out = self.output_details[0]
        return _dequantize_output(self.interpreter.get_tensor(out["index"]), out)

    def run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self._set(x)
        self.interpreter.invoke()
        return {d["name"]: _dequantize_output(self.interpreter.get_tensor(d["index"]), d) for d in self.output_details}

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        self._set(x)
        # invoke() is synchronous: the outputs are ready when it returns
        return self.interpreter.invoke


@register_runtime
class LiteRtRuntime(Runtime):
    """LiteRT CPU interpreter (XNNPACK delegate) with ``num_threads = threads``."""

    name = "litert"

    @classmethod
    def version(cls) -> str:
        try:
            from importlib.metadata import version

            return version("ai-edge-litert")
        except Exception:  # noqa: BLE001 - metadata missing in odd installs
            return getattr(cls.import_engine(), "__version__", "?")

    def load(self, path: Path, threads: int) -> Session:
        interpreter_cls = import_interpreter()
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"TFLite model not found: {path}")
        log: list[str] = []
        try:
            with captured_fd_output(log):
                interpreter = interpreter_cls(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
        except Exception as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"LiteRT cannot load {path}: {detail}") from e
        return LiteRtSession(interpreter)


def tflite_op_census(path: Path) -> dict[str, int]:
    """TFLite builtin (or custom) op name -> count in the primary subgraph, read by the interpreter itself.

    Raises :class:`ArtifactError` when the file does not load.
    """
    interpreter_cls = import_interpreter()
    try:
        with captured_fd_output():
            interpreter = interpreter_cls(model_path=str(path))
            ops = interpreter._get_ops_details()
    except Exception as e:
        raise ArtifactError(f"{path} is not a readable TFLite model: {str(e).splitlines()[0] if str(e) else e}") from e
    return dict(sorted(Counter(op["op_name"] for op in ops).items()))
