"""The exporter protocol and registry: one module per format, each registering itself here.

An exporter turns an export-ready (lowered) ``nn.Module`` plus a batch-1 NCHW float32 example into one artifact
file and reports how it did so (exporter, opset, input/output names, layout, notes) for the manifest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from edgedeploy import registry
from edgedeploy.errors import ConfigError

if TYPE_CHECKING:
    from edgedeploy.options import ExportOptions

EXPORTERS: dict[str, type[Exporter]] = {}


@dataclass
class ExportSettings:
    """What the user asked for, typed: precision, opset (ONNX-based formats), the input layout (``NCHW`` /
    ``NHWC``: ``FormatSpec.layouts``), int8 mode (``full`` with a calibration set / ``weight``-only; int8 only),
    the calibration folder (``None``: the embedded set) and the output names (user models; ``None``: the
    exporter's)."""

    precision: str = "fp32"
    opset: int | None = None
    layout: str = "NCHW"
    int8_mode: str = "full"
    calibration: str | None = None
    output_names: list[str] | None = None


def settings_for(opts: ExportOptions) -> ExportSettings:
    """The exporter's settings of an export request (``int8_mode`` defaults to ``full``)."""
    return ExportSettings(
        precision=opts.precision,
        opset=opts.opset,
        layout=opts.layout,
        int8_mode=opts.int8_mode or "full",
        calibration=str(opts.calibration) if opts.calibration else None,
    )


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

    @property
    def spec(self) -> registry.FormatSpec:
        """This format's registry entry (suffixes, precisions, extra, default runtime)."""
        return registry.format_spec(self.format)

    @property
    def suffix(self) -> str:
        return self.spec.suffix

    @property
    def extra(self) -> str:
        return self.spec.extra

    @property
    def precisions(self) -> tuple[str, ...]:
        return self.spec.precisions

    def check_settings(self, settings: ExportSettings) -> None:
        """Raise :class:`ConfigError` for a precision, opset or layout this format does not declare in the
        registry (:func:`edgedeploy.registry.check_format_request`)."""
        registry.check_format_request(self.format, settings.precision, settings.opset, settings.layout)

    @abstractmethod
    def export(self, module: nn.Module, example: Tensor, out_path: Path, settings: ExportSettings) -> ExportedFile:
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
    """An instance of the exporter for ``fmt``, importing the module its registry spec names.

    Raises :class:`~edgedeploy.errors.UnknownFormatError`, or :class:`ConfigError` when the module registers no
    exporter for the format.
    """
    spec = registry.format_spec(fmt)
    if fmt not in EXPORTERS:
        registry.import_implementation(spec.module, f"format {fmt}")
    if fmt not in EXPORTERS:
        raise ConfigError(f"format {fmt}: module {spec.module} registers no exporter")
    return EXPORTERS[fmt]()


#: kept for callers of the old name; the registry is the source
format_of = registry.format_of
