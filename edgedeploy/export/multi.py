"""``edgedeploy export MODEL --to all``: every format in turn, one table at the end.

Each format is exported with :func:`edgedeploy.export.pipeline.export_model` (parity checked, manifest written);
one format failing does not stop the others. The table has one row per format: format, precision, status
(``parity passed`` / ``parity failed`` / ``exported`` (parity not run, with the reason) / ``export failed`` with
the op and node / ``skipped`` when the precision does not apply to the format), artifact size, export time
(the export step alone, seconds) and the parity metrics. ``--json`` prints the rows as a JSON list on stdout.

Exit code (:func:`export_all`'s return value): 0 when every requested export succeeded and no parity gate failed;
4 when any export failed; 1 when all exported but some parity gate failed; 3 when a format's optional package is
missing (and nothing worse happened).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgedeploy import registry
from edgedeploy.errors import ConfigError, EdgeDeployError, ExportError, MissingExtraError
from edgedeploy.export.base import get_exporter


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_each(
    model: Any,
    fmts: Sequence[str],
    out_dir: str | Path,
    precision: str = "fp32",
    **kwargs: Any,
) -> list[FormatResult]:
    """Export ``model`` to each of ``fmts`` (see the module docstring); returns one :class:`FormatResult` each.

    ``kwargs`` go to :func:`~edgedeploy.export.pipeline.export_model` (opset, weights, input_size, lowering,
    thresholds, parity, options, progress). Errors that concern the whole request (unknown model, unwritable
    folder, bad weights) propagate; errors of one format are recorded in its row.
    """
    from edgedeploy.errors import UnknownModelError, WeightsError
    from edgedeploy.export.pipeline import export_model

    results: list[FormatResult] = []
    for fmt in fmts:
        exporter = get_exporter(fmt)
        if precision not in exporter.precisions:
            results.append(FormatResult(fmt, precision, "skipped", error=f"{fmt} has no {precision} precision"))
            continue
        opts = dict(kwargs)
        spec = registry.format_spec(fmt)
        if not spec.onnx_based:
            opts["opset"] = None  # --opset concerns the ONNX-based formats only
        if opts.get("options", {}).get("layout", "NCHW") not in spec.layouts:
            opts["options"] = {**opts["options"], "layout": "NCHW"}  # e.g. NHWC is a TFLite option
        t0 = time.perf_counter()
        try:
            outcome = export_model(model, fmt, out_dir, precision=precision, **opts)
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


def exit_code(results: Sequence[FormatResult]) -> int:
    """4 if any export failed, else 1 if any parity failed, else 3 if an extra was missing, else 0."""
    statuses = {r.status for r in results}
    if "export failed" in statuses:
        return 4
    if "parity failed" in statuses:
        return 1
    if "missing extra" in statuses:
        return 3
    return 0


def _status_cell(r: FormatResult) -> str:
    if r.status == "parity passed":
        return "[green]parity passed[/]"
    if r.status == "parity failed":
        return "[red]parity failed[/]: " + "; ".join(r.parity.get("failures", []))
    if r.status == "exported":
        return f"[yellow]exported[/] (parity not run: {r.parity.get('reason')})"
    if r.status == "export failed":
        where = f" at op {r.op or '?'} node {r.node or '?'}" if (r.op or r.node) else ""
        return f"[red]export failed[/]{where}: {r.error}"
    return f"{r.status}: {r.error}"


def _metrics_cell(p: dict[str, Any]) -> str:
    if not p or p.get("status") == "not run" or p.get("cosine_similarity") is None:
        return "–"
    top1 = "n/a" if p.get("top1_agreement") is None else f"{p['top1_agreement']:.2f}"
    return f"abs {p['max_abs_error']:.1e} · cos {p['cosine_similarity']:.5f} · top-1 {top1}"


def render_table(model: str, results: Sequence[FormatResult]) -> Any:
    """A rich Table of the results."""
    from rich.table import Table

    table = Table(title=f"{model}: export to every format")
    for col in ("format", "precision", "status", "size", "export time", "parity metrics"):
        table.add_column(col, justify="right" if col in ("size", "export time") else "left")
    for r in results:
        size = f"{r.size_bytes / 1e6:.2f} MB" if r.size_bytes is not None else "–"
        t = f"{r.export_s:.1f} s" if r.export_s is not None else "–"
        table.add_row(r.format, r.precision, _status_cell(r), size, t, _metrics_cell(r.parity))
    return table


def export_all(
    model: Any,
    fmts: Sequence[str],
    out_dir: str | Path,
    precision: str = "fp32",
    opset: int | None = None,
    weights: str | None = None,
    input_size: int | None = None,
    lowering: str = "default",
    thresholds: Any = None,
    parity: bool = True,
    options: dict[str, Any] | None = None,
    as_json: bool = False,
    input_shape: Any = None,
    name: str | None = None,
) -> int:
    """The ``--to all`` command body: export each format with a progress line, print the table (or JSON list to
    stdout with ``as_json``; the table then goes to stderr), and return the exit code (module docstring)."""
    import click
    from rich.console import Console

    from edgedeploy.spec import is_spec, resolve_model

    err = Console(stderr=True, highlight=False)
    source: Any = model
    extra: dict[str, Any] = {}
    if not isinstance(model, str) or is_spec(model):
        # resolve once: a bad spec or input shape is one error for the whole request; a user's module is built once
        source = resolve_model(model, input_shape=input_shape, name=name, input_size=input_size)
        model = source.name
    else:
        extra = {"input_shape": input_shape, "name": name}
    with err.status(f"exporting {model}") as status:

        def progress(msg: str) -> None:
            status.update(f"{model}: {msg}")

        results = export_each(
            source, fmts, out_dir, precision=precision, opset=opset, weights=weights, input_size=input_size,
            lowering=lowering, thresholds=thresholds, parity=parity, options=dict(options or {}), progress=progress,
            **extra,
        )  # fmt: skip
    table = render_table(model, results)
    if as_json:
        err.print(table)
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        Console().print(table)
    return exit_code(results)
