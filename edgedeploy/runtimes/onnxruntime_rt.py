"""onnxruntime (CPU execution provider) behind the :class:`~edgedeploy.runtimes.base.Runtime` protocol."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.errors import ArtifactError
from edgedeploy.runtimes.base import Runtime, Session, register_runtime


class OrtSession(Session):
    def __init__(self, sess: Any) -> None:
        self.sess = sess
        inp = sess.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in inp.shape)
        self.output_names = [o.name for o in sess.get_outputs()]

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.sess.run(self.output_names[:1], {self.input_name: x})[0], dtype=np.float32)

    def run_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(y, dtype=np.float32) for y in self.sess.run(self.output_names, {self.input_name: x})]

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        names = self.output_names[:1]
        run = self.sess.run
        return lambda: run(names, feed)


@register_runtime
class OnnxRuntime(Runtime):
    """onnxruntime ``InferenceSession`` with ``intra_op_num_threads = threads``, sequential execution."""

    name = "onnxruntime"

    @classmethod
    def version(cls) -> str:
        return cls.import_engine().__version__

    def load(self, path: Path, threads: int) -> Session:
        ort = self.import_engine()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ArtifactError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}") from e
        return OrtSession(sess)
