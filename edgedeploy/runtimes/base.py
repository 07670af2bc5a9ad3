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

from edgedeploy import registry
from edgedeploy.errors import ConfigError, MissingExtraError

RUNTIMES: dict[str, type[Runtime]] = {}


class Session(ABC):
    """A loaded artifact. ``input_name``/``input_shape`` describe the single NCHW (or NHWC) input."""

    input_name: str = "input"
    input_shape: tuple[int, ...] = ()

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one input (float32, the artifact's input shape) and return the first output as float32."""

    def run_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one input and return every output (float32), in the artifact's output order.

        Engines with a ``run_all`` returning ``{name: array}`` give its values; otherwise the first output alone.
        """
        run_all = getattr(self, "run_all", None)
        if run_all is not None:
            return [np.asarray(v, dtype=np.float32) for v in run_all(x).values()]
        return [self.run(x)]

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        """Bind ``x`` and return ``infer()``, running the inference call alone (used by the timing harness)."""
        return lambda: self.run(x)


class Runtime(ABC):
    """An inference engine: ``name``, the artifact ``formats`` it runs, the pip ``extra`` that installs it."""

    name: ClassVar[str]

    @classmethod
    def spec(cls) -> registry.RuntimeSpec:
        """This runtime's registry entry (formats, extra, package, board-runner name)."""
        return registry.runtime_spec(cls.name)

    @property
    def formats(self) -> tuple[str, ...]:
        return self.spec().formats

    @classmethod
    def import_engine(cls) -> Any:
        """Import and return the engine's Python package, or raise :class:`MissingExtraError`."""
        spec = cls.spec()
        try:
            return importlib.import_module(spec.package)
        except ImportError as e:
            raise MissingExtraError(spec.package, spec.extra, f"the {cls.name} runtime") from e

    @classmethod
    def runs_here(cls) -> bool:
        """Whether this machine can run a model with it (CoreML: macOS only); the default suite skips it if not."""
        return True

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
    """An instance of the runtime called ``name`` or one of its aliases, importing the module its spec names.

    Raises :class:`~edgedeploy.errors.UnknownRuntimeError`, or :class:`ConfigError` when the runtime has no
    implementation in this process (a board-only runtime) or its module registers none.
    """
    spec = registry.runtime_spec(name)
    if spec.name not in RUNTIMES:
        registry.import_implementation(spec.module, f"runtime {spec.name}")
    if spec.name not in RUNTIMES:
        raise ConfigError(f"runtime {spec.name}: module {spec.module} registers no runtime")
    return RUNTIMES[spec.name]()


#: kept for callers of the old name; the registry is the source
default_runtime = registry.default_runtime
