"""``edgedeploy bench SPEC --matrix``: the ranked table, the one ``best`` line, ``--json``, the exit code.

Called by :func:`edgedeploy.cli.bench_cmd`; the work is :func:`edgedeploy.bench.matrix.run_matrix`. Exit 0 when a
case was benchmarked and passed its parity check, 1 otherwise (every result measured is stored either way).
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgedeploy.bench.matrix import MatrixOptions, MatrixReport, matrix_markdown, run_matrix
from edgedeploy.results.figures import fmt, fmt_mb_bytes

PARITY_STYLE = {"passed": "green", "failed": "red", "not run": "yellow"}


def parse_sweep(text: str | None) -> tuple[int, ...] | None:
    """``"1,2,4"`` -> ``(1, 2, 4)``; raises :class:`click.BadParameter` for anything else."""
    if text is None:
        return None
    try:
        out = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: give thread counts such as 1,2,4", param_hint="--threads-sweep") from None
    if not out:
        raise click.BadParameter("give at least one thread count", param_hint="--threads-sweep")
    return out


def matrix_table(report: MatrixReport) -> Table:
    """Ranked cases (fastest p50 first), then the cases that were not benchmarked with their reason."""
    n_ok = len(report.ranked())
    t = Table(title=f"matrix {report.model} @ {report.device}: {n_ok} of {len(report.cases)} cases benchmarked "
              f"({report.wall_s:.0f} s)")  # fmt: skip
    cols = ("#", "format", "precision", "runtime", "threads", "p50 ms", "p90 ms", "artifact MB", "load ms",
            "first ms", "peak RSS MB", "parity", "status")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="right" if c in ("#", "threads") or " ms" in c or " MB" in c else "left")
    rows = report.ranked()
    rows += [c for c in report.cases if c not in rows]
    for i, c in enumerate(rows, 1):
        r = c.result
        ranked = c.status == "benchmarked"
        par = c.parity or "–"
        status = c.status + (f": {escape(c.reason)}" if c.reason else "")
        t.add_row(
            str(i) if ranked else "–", c.format, c.precision, c.runtime, str(c.threads),
            fmt(c.median_ms, "{:.2f}"), fmt(r.p90_ms if r is not None and r.samples_ms else None, "{:.2f}"),
            fmt_mb_bytes(getattr(r, "artifact_bytes", None)), fmt(getattr(r, "load_ms", None)),
            fmt(getattr(r, "first_ms", None)), fmt(getattr(r, "peak_rss_mb", None)),
            f"[{PARITY_STYLE.get(par, '')}]{par}[/]" if par in PARITY_STYLE else par, status,
        )  # fmt: skip
    return t


def run_matrix_command(
    model: str, opts: MatrixOptions, as_json: bool, err_console: Console, markdown: str | None = None
) -> None:
    """Run the matrix with a status line on stderr, print the table and the best line (``markdown``: also write it
    as Markdown there), exit 0 / 1."""
    with err_console.status(f"matrix {model}") as status:
        report = run_matrix(model, MatrixOptions(**{**opts.__dict__, "progress": lambda m: status.update(escape(m))}))
    stream = sys.stderr if as_json else sys.stdout
    console = Console(stderr=as_json, highlight=False, width=None if stream.isatty() else 200)
    console.print(matrix_table(report))
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    console.print(escape(report.best_line()), soft_wrap=True)
    if report.record:
        err_console.print(f"results stored in {report.record} (run {report.run_id})")
    if markdown:
        from pathlib import Path

        from edgedeploy._util import atomic_write_text

        atomic_write_text(Path(markdown), matrix_markdown(report.to_json_dict()))
        err_console.print(f"table written to {markdown}")
    if as_json:
        click.echo(json.dumps(report.to_json_dict(), indent=2))
    sys.exit(0 if report.fastest() is not None else 1)
