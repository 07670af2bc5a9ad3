"""CoreML (``coremltools`` ``MLModel.predict``) behind the :class:`~edgedeploy.runtimes.base.Runtime` protocol.

Prediction needs macOS (the Core ML framework); coremltools on Linux converts and saves but cannot run a model.
On any other system :meth:`CoreMlRuntime.load` raises :class:`~edgedeploy.errors.RuntimeUnavailableError`, which
the parity step records as ``status: "not run"`` with the reason and ``passed: null`` — never a pass that did not
run. On macOS the model runs with ``compute_units`` (default ``CPU_ONLY``, so fp32 parity is not blurred by the
Neural Engine's fp16) and the input is fed as a ``(1, 3, H, W)`` float32 NCHW array named by the model's spec.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.errors import ArtifactError, MissingExtraError, RuntimeUnavailableError
from edgedeploy.runtimes.base import Runtime, Session, register_runtime

NEEDS_MACOS = "CoreML prediction needs macOS (this host runs {system})"


def import_coremltools() -> Any:
    """``import coremltools`` quietly, or :class:`MissingExtraError` naming the ``[coreml]`` extra."""
    import logging
    import warnings

    from edgedeploy._util import captured_fd_output

    try:
        with warnings.catch_warnings(), captured_fd_output():
            warnings.simplefilter("ignore")
            import coremltools
    except ImportError as e:
        raise MissingExtraError("coremltools", "coreml", "CoreML export") from e
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    return coremltools


def can_predict() -> bool:
    """True on macOS, where Core ML can run a model."""
    return platform.system() == "Darwin"


class CoreMlSession(Session):
    def __init__(self, model: Any) -> None:
        self.model = model
        spec = model.get_spec()
        self.input_name = spec.description.input[0].name
        shape = spec.description.input[0].type.multiArrayType.shape
        self.input_shape = tuple(int(d) for d in shape)
        self.output_names = [o.name for o in spec.description.output]

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.model.predict({self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out[self.output_names[0]], dtype=np.float32)

    def run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = self.model.predict({self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


@register_runtime
class CoreMlRuntime(Runtime):
    """Core ML on macOS; ``threads`` is ignored (Core ML schedules its own), ``compute_units`` picks CPU/GPU/ANE."""

    name = "coreml"

    @classmethod
    def runs_here(cls) -> bool:
        return can_predict()

    @classmethod
    def version(cls) -> str:
        return import_coremltools().__version__

    def load(self, path: Path, threads: int, compute_units: str = "CPU_ONLY") -> Session:
        ct = import_coremltools()
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"CoreML model not found: {path}")
        if not can_predict():
            raise RuntimeUnavailableError(NEEDS_MACOS.format(system=platform.system()))
        try:
            model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        except Exception as e:
            raise ArtifactError(f"CoreML cannot load {path}: {str(e).splitlines()[0] if str(e) else e}") from e
        return CoreMlSession(model)
