"""The exporter protocol and registry: one module per format, each registering itself here.

An exporter turns an export-ready (lowered) ``nn.Module`` plus a batch-1 NCHW float32 example into one artifact
file and reports how it did so (exporter, opset, input/output names, layout, notes) for the manifest.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from edgedeploy.errors import ConfigError, UnknownFormatError

EXPORTERS: dict[str, type[Exporter]] = {}
#: format name -> module under edgedeploy.export
FORMAT_MODULES = {"onnx": "onnx", "mnn": "mnn", "tflite": "tflite", "coreml": "coreml"}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ExportSettings:
    """What the user asked for: precision, opset (ONNX-based formats), and format-specific options."""

    precision: str = "fp32"
    opset: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportedFile:
    """What an exporter wrote and how (recorded in the manifest)."""

    path: Path
    exporter: str
    opset: int | None = None
    input_name: str = "input"
    input_layout: str = "NCHW"
    input_shape: list[int] = field(default_factory=list)
    output_names: list[str] = field(default_factory=lambda: ["logits"])
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Exporter(ABC):
    """One target format. ``suffix`` is the artifact's file suffix (``.onnx``, ``.mnn`` …)."""

    format: ClassVar[str]
    suffix: ClassVar[str]
    extra: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def check_settings(self, settings: ExportSettings) -> None:
        """Raise :class:`ConfigError` for a precision or option this format does not support."""
        if settings.precision not in self.precisions:
            raise ConfigError(
                f"format {self.format} does not support precision {settings.precision} "
                f"(supported: {', '.join(self.precisions)})"
            )

    @abstractmethod
    def export(
        self, module: nn.Module, example: torch.Tensor, out_path: Path, settings: ExportSettings
    ) -> ExportedFile:
        """Write ``out_path``; raise :class:`~edgedeploy.errors.ExportError` naming the op and node on failure."""

    @abstractmethod
    def op_census(self, path: Path) -> dict[str, int]:
        """Operator type -> count in the written artifact."""

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        """Versions of the tools this exporter used (for the manifest)."""
        return {"torch": torch.__version__}


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    """Class decorator adding an exporter to :data:`EXPORTERS`."""
    EXPORTERS[cls.format] = cls
    return cls


def get_exporter(fmt: str) -> Exporter:
    """An instance of the exporter for ``fmt`` (raises :class:`UnknownFormatError`)."""
    if fmt not in FORMAT_MODULES:
        raise UnknownFormatError(fmt, FORMAT_MODULES)
    importlib.import_module(f"edgedeploy.export.{FORMAT_MODULES[fmt]}")
    return EXPORTERS[fmt]()


def format_of(path: str | Path) -> str:
    """Infer an artifact's format from its suffix (raises :class:`UnknownFormatError`)."""
    suffixes = {".onnx": "onnx", ".mnn": "mnn", ".tflite": "tflite", ".mlpackage": "coreml", ".mlmodel": "coreml"}
    suffix = Path(path).suffix.lower()
    if suffix not in suffixes:
        raise UnknownFormatError(suffix or str(path), suffixes.values())
    return suffixes[suffix]
