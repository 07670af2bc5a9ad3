"""``edgedeploy export MODEL --to all``: the command body (spinner, table, JSON, exit code) over
:func:`edgedeploy.api.export_all`.

Exit code: 0 when every requested export succeeded and no parity gate failed; 4 when any export failed; 1 when all
exported but some parity gate failed; 3 when a format's optional package is missing (and nothing worse happened).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from edgedeploy.commands.tables import export_all_table
from edgedeploy.export.multi import FormatResult


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


def run_export_all(model: Any, fmts: Sequence[str], out_dir: str | Path, as_json: bool, **request: Any) -> int:
    """Export ``model`` to each of ``fmts`` through the API, print the table (or the JSON list on stdout with
    ``as_json``; the table then goes to stderr) and return the exit code (module docstring). ``request``: what
    :func:`edgedeploy.api.export_all` takes (``input_shape``, ``name``, the :class:`~edgedeploy.api.ExportOptions`
    fields)."""
    from edgedeploy import api

    err = Console(stderr=True, highlight=False)
    with err.status(f"exporting {model}") as status:
        done = api.export_all(model, fmts, out=out_dir, progress=status.update, **request)
    table = export_all_table(done.model, done.results)
    if as_json:
        err.print(table)
        click.echo(json.dumps([r.to_dict() for r in done.results], indent=2))
    else:
        Console().print(table)
    return exit_code(done.results)
