"""``edgedeploy bench`` in suite mode: a progress bar over the cases, the final table, ``--json``, the exit code.

Called by :func:`edgedeploy.cli.bench_cmd` for ``--suite FILE``, for no model at all (``./edgedeploy.yaml`` or the
default suite), and for a model on a labgrid farm. Exit 0 when every case that was not excluded was benchmarked,
1 otherwise, 130 / 143 when SIGINT / SIGTERM stopped the suite (the table, ``--markdown`` / ``--json`` and the run
file are still written, with the case in progress ``partial``); every result measured is in the result store
either way.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgedeploy.bench.suite_run import CaseOutcome, SuiteReport, run_suite
from edgedeploy.results.figures import fmt, fmt_mb_bytes
from edgedeploy.suite import Suite

STYLE = {"benchmarked": "green", "excluded": "dim", "export failed": "red", "parity failed": "red",
         "bench failed": "red", "timed out": "red", "partial": "yellow", "interrupted": "yellow"}  # fmt: skip


def run_suite_command(
    suite: Suite, devices: list[str] | None, out: str | None, as_json: bool, markdown: str | None,
    trust_on_first_use: bool, err_console: Console,
) -> None:  # fmt: skip
    """Run ``suite`` with a progress bar on stderr; print the table (stdout, or stderr with ``--json``); exit."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("[dim]{task.fields[note]}"))  # fmt: skip
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(f"suite {suite.name}", total=None, note="starting")

        def plan(cases: list[CaseOutcome]) -> None:
            bar.update(task, total=len(cases), completed=sum(c.status == "excluded" for c in cases))

        to_file = out is not None and Path(out).suffix == ".json" and not Path(out).is_dir()
        report = run_suite(
            suite, devices, None if to_file else out, trust_on_first_use=trust_on_first_use,
            progress=lambda msg: bar.update(task, note=escape(msg[:100])),
            on_case=lambda c: bar.update(task, advance=1), on_plan=plan,
        )  # fmt: skip
    table = suite_table(report)
    stream = sys.stderr if as_json else sys.stdout
    Console(stderr=as_json, highlight=False, width=None if stream.isatty() else 200).print(table)
    if report.record:
        err_console.print(f"results stored in {report.record} (run {report.run_id})")
    else:
        err_console.print("nothing was measured; no result stored")
    for board, why in report.boards.items():
        if why:
            err_console.print(f"[yellow]board {escape(board)} dropped out:[/] {escape(why)}", soft_wrap=True)
    if to_file:
        results = [json.loads(r.model_dump_json()) for c in report.cases for r in c.results]
        _write(Path(out), json.dumps(results, indent=1) + "\n")  # type: ignore[arg-type]
        err_console.print(f"{len(results)} result(s) written to {out}")
    if markdown:
        _write(Path(markdown), suite_markdown(report))
        err_console.print(f"table written to {markdown}")
    if as_json:
        click.echo(json.dumps(report.to_json_dict(), indent=2))
    code = 0 if report.ok else 1
    if report.interrupted is not None:
        code = 128 + report.interrupted
        err_console.print(f"[bold red]interrupted[/] ({signal.Signals(report.interrupted).name}): the finished cases "
                          "and the samples of the case in progress are kept")  # fmt: skip
    if report.abandoned:  # a board thread is still inside a runtime call: exiting normally would run the
        sys.stdout.flush()  # runtime's static destructors under it (std::terminate, exit 134)
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _write(path: Path, text: str) -> None:
    """Write an output checked before the run (edgedeploy.outpaths); a disk that fills meanwhile: OutputError."""
    from edgedeploy._util import atomic_write_text
    from edgedeploy.errors import OutputError

    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e} (the results are in the run file)") from e


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


FIGURE_COLUMNS = ("artifact MB", "load ms", "first ms", "peak RSS MB")


def _figures(d: dict) -> list[str]:
    """The ``FIGURE_COLUMNS`` cells of a case (``n/a``: not measured)."""
    if d["median_ms"] is None:
        return ["–"] * len(FIGURE_COLUMNS)
    return [fmt_mb_bytes(d["artifact_bytes"]), fmt(d["load_ms"]), fmt(d["first_ms"]), fmt(d["peak_rss_mb"])]


def suite_table(report: SuiteReport) -> Table:
    n_ok = sum(c.status == "benchmarked" for c in report.cases)
    n_ex = sum(c.status == "excluded" for c in report.cases)
    table = Table(title=f"suite {report.suite.name}: {n_ok} of {len(report.cases) - n_ex} cases benchmarked"
                  f"{f', {n_ex} excluded' if n_ex else ''} ({report.wall_s:.1f} s)")  # fmt: skip
    for col in ("model", "format", "precision", "runtime", "device", "board", "median ms", *FIGURE_COLUMNS, "status"):
        table.add_column(col, justify="right" if col == "median ms" or col in FIGURE_COLUMNS else "left")
    for c in report.cases:
        d = c.to_dict()
        status = f"[{STYLE.get(c.status, '')}]{c.status}[/]" + (f": {escape(c.reason)}" if c.reason else "")
        table.add_row(d["model"], d["format"], d["precision"], d["runtime"], d["device"], d["board"] or "–",
                      _ms(d["median_ms"]), *_figures(d), status)  # fmt: skip
    return table


def suite_markdown(report: SuiteReport) -> str:
    """The table as GitHub Markdown (for a PR comment or the job summary)."""

    def cell(s: object) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    n_ok = sum(c.status == "benchmarked" for c in report.cases)
    n_ex = sum(c.status == "excluded" for c in report.cases)
    lines = [
        f"### Suite `{cell(report.suite.name)}`: {n_ok} of {len(report.cases) - n_ex} cases benchmarked"
        + (f", {n_ex} excluded" if n_ex else ""),
        "",
        "| model | format | precision | runtime | device | board | median ms | "
        + " | ".join(FIGURE_COLUMNS)
        + " | status |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in report.cases:
        d = c.to_dict()
        status = c.status + (f": {c.reason}" if c.reason else "")
        lines.append("| " + " | ".join(cell(x) for x in (d["model"], d["format"], d["precision"], d["runtime"],
                     d["device"], d["board"] or "–", _ms(d["median_ms"]), *_figures(d), status)) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"
