"""``edgedeploy export MODEL --to all``: every format in turn, one table at the end.

Each format is exported with :func:`edgedeploy.export.pipeline.export_model` (parity checked, manifest written);
one format failing does not stop the others. The table has one row per format: format, precision, status
(``parity passed`` / ``parity failed`` / ``exported`` (parity not run, with the reason) / ``export failed`` with
the op and node / ``skipped`` when the precision does not apply to the format), artifact size, export time
(the export step alone, seconds) and the parity metrics. ``--json`` prints the rows as a JSON list on stdout.

The library returns the rows (:func:`edgedeploy.api.export_all`); the command (:mod:`edgedeploy.commands.export_all`)
prints them and maps them to its exit code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgedeploy import registry
from edgedeploy.errors import ConfigError, EdgeDeployError, ExportError, MissingExtraError
from edgedeploy.export.base import get_exporter
from edgedeploy.options import ExportOptions


@dataclass
class FormatResult:
    """One row of the ``--to all`` table."""

    format: str
    precision: str
    status: str  # "parity passed" | "parity failed" | "exported" | "export failed" | "skipped" | "missing extra"
    artifact: str | None = None
    size_bytes: int | None = None
    export_s: float | None = None
    total_s: float | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    op: str | None = None
    node: str | None = None
    #: int8 rows: the manifest's ``int8_speed`` (measured against fp32 at export, :mod:`edgedeploy.bench.int8_speed`)
    int8_speed: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MultiExport:
    """What ``--to all`` produced: the model's name and one :class:`FormatResult` per format asked for."""

    model: str
    results: list[FormatResult]


def export_each(
    model: Any,
    fmts: Sequence[str],
    out_dir: str | Path,
    opts: ExportOptions | None = None,
    **target: Any,
) -> list[FormatResult]:
    """Export ``model`` to each of ``fmts`` (see the module docstring); returns one :class:`FormatResult` each.

    ``opts``: the request (:class:`~edgedeploy.options.ExportOptions`), the same for every format except that
    ``opset`` is dropped for formats it does not apply to and a layout a format lacks falls back to NCHW.
    ``target``: ``input_shape`` / ``name`` for :func:`~edgedeploy.export.pipeline.export_model`. Errors that
    concern the whole request (unknown model, unwritable folder, bad weights) propagate; errors of one format are
    recorded in its row.
    """
    from dataclasses import replace

    from edgedeploy.errors import UnknownModelError, WeightsError
    from edgedeploy.export.pipeline import export_model

    opts = opts or ExportOptions()
    precision = opts.precision
    results: list[FormatResult] = []
    for fmt in fmts:
        exporter = get_exporter(fmt)
        if precision not in exporter.precisions:
            results.append(FormatResult(fmt, precision, "skipped", error=f"{fmt} has no {precision} precision"))
            continue
        spec = registry.format_spec(fmt)
        request = opts
        if spec.opsets is None:
            request = replace(request, opset=None)  # --opset concerns the ONNX-based formats only
        if request.layout not in spec.layouts:
            request = replace(request, layout="NCHW")  # e.g. NHWC is a TFLite option
        t0 = time.perf_counter()
        try:
            outcome = export_model(model, fmt, out_dir, request, **target)
        except (UnknownModelError, WeightsError):
            raise
        except MissingExtraError as e:
            results.append(FormatResult(fmt, precision, "missing extra", error=str(e)))
            continue
        except ExportError as e:
            results.append(
                FormatResult(
                    fmt, precision, "export failed", total_s=round(time.perf_counter() - t0, 2), error=str(e),
                    op=e.op, node=e.node,
                )
            )  # fmt: skip
            continue
        except ConfigError as e:
            if "output folder" in str(e):
                raise
            results.append(FormatResult(fmt, precision, "export failed", error=str(e)))
            continue
        except EdgeDeployError as e:
            results.append(FormatResult(fmt, precision, "export failed", error=str(e)))
            continue
        m = outcome.manifest
        results.append(
            FormatResult(
                fmt, precision, m.status, artifact=str(outcome.artifact), size_bytes=m.size_bytes,
                export_s=m.timings_s.get("export"), total_s=round(time.perf_counter() - t0, 2),
                parity=outcome.parity.to_dict(),
            )
        )  # fmt: skip
    return results
