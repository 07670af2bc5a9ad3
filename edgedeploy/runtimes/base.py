"""The small protocol every inference engine implements, and the registry of engines.

A :class:`Runtime` loads an artifact with a thread count and returns a :class:`Session`; a session runs one
float32 input and returns the first output as a numpy array. For timing, :meth:`Session.prepare` binds an input
once and returns a zero-argument callable that runs only the inference call (input binding and output conversion
stay outside the timed region where the engine allows it).

Each engine module registers itself with :func:`register_runtime`; a missing optional package raises
:class:`~edgedeploy.errors.MissingExtraError` naming the extra.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgedeploy.errors import MissingExtraError, UnknownRuntimeError

RUNTIMES: dict[str, type[Runtime]] = {}
#: runtime name -> module under edgedeploy.runtimes
RUNTIME_MODULES = {
    "onnxruntime": "onnxruntime_rt",
    "mnn": "mnn_rt",
    "torch": "torch_rt",
    "litert": "litert_rt",
    "coreml": "coreml_rt",
}


class Session(ABC):
    """A loaded artifact. ``input_name``/``input_shape`` describe the single NCHW (or NHWC) input."""

    input_name: str = "input"
    input_shape: tuple[int, ...] = ()

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one input (float32, the artifact's input shape) and return the first output as float32."""

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        """Bind ``x`` and return ``infer()``, running the inference call alone (used by the timing harness)."""
        return lambda: self.run(x)


class Runtime(ABC):
    """An inference engine: ``name``, the artifact ``formats`` it runs, the pip ``extra`` that installs it."""

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    extra: ClassVar[str]
    package: ClassVar[str]

    @classmethod
    def import_engine(cls) -> Any:
        """Import and return the engine's Python package, or raise :class:`MissingExtraError`."""
        try:
            return importlib.import_module(cls.package)
        except ImportError as e:
            raise MissingExtraError(cls.package, cls.extra, f"the {cls.name} runtime") from e

    @classmethod
    @abstractmethod
    def version(cls) -> str:
        """The engine's version string."""

    @abstractmethod
    def load(self, path: Path, threads: int) -> Session:
        """Load ``path`` with ``threads`` intra-op threads; raise ArtifactError for a corrupt or unreadable file."""


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Class decorator adding a runtime to :data:`RUNTIMES`."""
    RUNTIMES[cls.name] = cls
    return cls


def get_runtime(name: str) -> Runtime:
    """An instance of the runtime called ``name`` (raises :class:`UnknownRuntimeError`)."""
    if name not in RUNTIME_MODULES:
        raise UnknownRuntimeError(name, RUNTIME_MODULES)
    importlib.import_module(f"edgedeploy.runtimes.{RUNTIME_MODULES[name]}")
    return RUNTIMES[name]()


def default_runtime(fmt: str) -> str:
    """The runtime used for parity and benchmarks of a format unless the user picks one."""
    return {"onnx": "onnxruntime", "mnn": "mnn", "tflite": "litert", "coreml": "coreml", "torch": "torch"}[fmt]
