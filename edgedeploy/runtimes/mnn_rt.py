"""MNN (CPU backend, Express ``Module`` API) behind the :class:`~edgedeploy.runtimes.base.Runtime` protocol.

Only ``import MNN`` is used: never ``MNN.tools``, whose import pip-installs a logging SDK and sends a usage log
(see TOOLCHAIN_NOTES.md). Precision ``"high"`` keeps fp32 compute on CPU (MNN's own benchmark defaults to fp16
compute on ARM; that is a separate setting, ``precision="low"``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedeploy._util import captured_fd_output
from edgedeploy.errors import ArtifactError, MissingExtraError
from edgedeploy.runtimes.base import Runtime, Session, register_runtime

if TYPE_CHECKING:
    from edgedeploy.export.sourcemap import GraphNode

_MNN: Any = None


def import_mnn() -> Any:
    """``import MNN`` with its banner (printed to fd 1 on import) kept out of stdout."""
    global _MNN
    if _MNN is None:
        try:
            with captured_fd_output():
                import MNN
                import MNN.expr
                import MNN.nn
        except ImportError as e:
            raise MissingExtraError("MNN", "mnn", "the MNN runtime and converter") from e
        _MNN = MNN
    return _MNN


class MnnSession(Session):
    def __init__(self, module: Any, info: dict[str, Any], input_shape: tuple[int, ...]) -> None:
        self.module = module
        self.input_name = (info.get("inputNames") or ["input"])[0]
        self.input_shape = input_shape

    def _var(self, x: np.ndarray) -> Any:
        F = import_mnn().expr
        x = np.ascontiguousarray(x, dtype=np.float32)
        return F.const(x, list(x.shape), F.NCHW)

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.module.forward(self._var(x))
        if isinstance(out, list):
            out = out[0]
        return np.array(out.read(), dtype=np.float32)

    def run_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        out = self.module.forward([self._var(x)])  # a list in: every output, in the file's outputNames order
        outs = out if isinstance(out, list) else [out]
        return [np.array(o.read(), dtype=np.float32) for o in outs]

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        var = self._var(x)
        forward = self.module.forward
        # read() waits for the result: the timed region ends when the output is ready (1000 floats copied)
        return lambda: forward(var).read()


@register_runtime
class MnnRuntime(Runtime):
    """MNN CPU runtime with ``numThread = threads`` and ``precision = "high"`` (fp32 compute)."""

    name = "mnn"

    @classmethod
    def version(cls) -> str:
        return import_mnn().version()

    def load(self, path: Path, threads: int, precision: str = "high", input_shape: tuple[int, ...] = ()) -> Session:
        mnn = import_mnn()
        with open(path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8:
            raise ArtifactError(f"{path} is not an MNN model (file too short)")
        log: list[str] = []
        module = None
        error = ""
        with captured_fd_output(log):
            rt = mnn.nn.create_runtime_manager(({"backend": "CPU", "numThread": threads, "precision": precision},))
            try:
                module = mnn.nn.load_module_from_file(str(path), [], [], runtime_manager=rt)
            except (SystemError, RuntimeError, ValueError) as e:
                error = f"{type(e).__name__}"
        if module is None:
            said = log[0].strip().splitlines()[-1] if log and log[0].strip() else error
            raise ArtifactError(f"MNN cannot load {path}: not a valid MNN model ({said or 'no detail'})")
        info = module.get_info() if hasattr(module, "get_info") else {}
        return MnnSession(module, info, input_shape)


def graph_nodes(path: Path) -> list[GraphNode]:
    """The ops of an MNN model (``MNN.expr.load_as_dict``: variable name = op name, with its input variables)."""
    from edgedeploy.export.sourcemap import GraphNode

    mnn = import_mnn()
    with captured_fd_output():
        variables = mnn.expr.load_as_dict(str(path))
    out = []
    for name, var in variables.items():
        try:
            inputs = [i.name for i in var.inputs]
        except Exception:  # noqa: BLE001 - Input / Const variables have no inputs to read
            inputs = []
        out.append(GraphNode(name, var.op_type, inputs, [name]))
    return out
