"""onnxruntime (CPU execution provider) behind the :class:`~edgedeploy.runtimes.base.Runtime` protocol.

Session settings (:func:`session_options`, :func:`create_session`; the profiler uses the same): ``intra_op_num_threads
= threads``, one inter-op thread, sequential execution, onnxruntime's default (full) graph optimization, except
the fusions in :data:`DISABLED_OPTIMIZERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.errors import ArtifactError
from edgedeploy.runtimes.base import Runtime, Session, register_runtime

#: onnxruntime graph fusions edgedeploy's sessions turn off (``InferenceSession(disabled_optimizers=...)``), each
#: because it measured slower here. ``SkipLayerNormFusion`` (Add → LayerNormalization into one
#: SkipLayerNormalization kernel): onnxruntime 1.32's CPU SkipLayerNormalization took 0.42 ms where the Add +
#: LayerNormalization it replaced took 0.14 ms (MobileViT-S's last LayerNorm per block, ``edgedeploy profile``);
#: with the fusion off MobileViT-S ran at 0.98× and EMO-5M at 0.95× of the latency with it on (the same artifact,
#: 2 threads, 8 interleaved blocks × 10 runs, quiet 2-vCPU Xeon with AVX-512, 2026-12-01). Graphs without an
#: Add → LayerNorm pair are unaffected. Measured on x86 only: the board runner keeps onnxruntime's defaults.
DISABLED_OPTIMIZERS: tuple[str, ...] = ("SkipLayerNormFusion",)


def session_options(ort: Any, threads: int) -> Any:
    """edgedeploy's ``SessionOptions``: ``threads`` intra-op threads, 1 inter-op thread, sequential, quiet log."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return opts


def create_session(ort: Any, path: Path, opts: Any) -> Any:
    """``InferenceSession`` on the CPU execution provider with :data:`DISABLED_OPTIMIZERS` off.

    Raises :class:`ArtifactError` (first line of onnxruntime's message) when the file cannot be loaded.
    """
    try:
        return ort.InferenceSession(
            str(path),
            sess_options=opts,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(DISABLED_OPTIMIZERS),
        )
    except Exception as e:
        raise ArtifactError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}") from e


#: onnxruntime's input type names → the numpy dtype an image is fed as
FLOAT_INPUTS = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OrtSession(Session):
    def __init__(self, sess: Any) -> None:
        self.sess = sess
        inp = sess.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in inp.shape)
        self.output_names = [o.name for o in sess.get_outputs()]
        if inp.type not in FLOAT_INPUTS:  # the inputs are images: a float tensor; say so instead of failing in run
            kind = str(inp.type).removeprefix("tensor(").removesuffix(")")
            raise ArtifactError(
                f"input '{inp.name}' of this ONNX model is {kind}: edgedeploy feeds images as float tensors "
                f"(NCHW), so it times and checks models with a float32 / float16 / float64 input only"
            )
        self.input_dtype = FLOAT_INPUTS[inp.type]

    def run(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.asarray(x, dtype=self.input_dtype)}
        return np.asarray(self.sess.run(self.output_names[:1], feed)[0], dtype=np.float32)

    def run_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        feed = {self.input_name: np.asarray(x, dtype=self.input_dtype)}
        return [np.asarray(y, dtype=np.float32) for y in self.sess.run(self.output_names, feed)]

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        names = self.output_names[:1]
        run = self.sess.run
        return lambda: run(names, feed)


@register_runtime
class OnnxRuntime(Runtime):
    """onnxruntime ``InferenceSession`` with edgedeploy's settings (module docstring)."""

    name = "onnxruntime"

    @classmethod
    def version(cls) -> str:
        return cls.import_engine().__version__

    def load(self, path: Path, threads: int) -> Session:
        ort = self.import_engine()
        try:
            return OrtSession(create_session(ort, path, session_options(ort, threads)))
        except ArtifactError as e:
            if str(e).startswith("input '"):
                raise ArtifactError(f"{path}: {e}") from None
            raise
