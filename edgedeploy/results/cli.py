"""Click commands of the results layer: ``compare``, ``report``, ``results list``, ``baseline save|show``.

The main CLI (``edgedeploy/cli.py``) adds them to its group::

    from edgedeploy.results.cli import baseline_group, compare_cmd, report_cmd, results_group
    main.add_command(compare_cmd)   # edgedeploy compare
    main.add_command(report_cmd)    # edgedeploy report
    main.add_command(results_group) # edgedeploy results list
    main.add_command(baseline_group)  # edgedeploy baseline save|show

Until then (and for tests) the same commands run as ``python -m edgedeploy.results.cli <command> ...``.
Each command goes through the CLI's one error path (:mod:`edgedeploy.clierrors`: one line on stderr, the
documented exit code, ``--debug`` / ``EDGEDEPLOY_DEBUG=1`` for the traceback). ``compare``: 0 no regression,
1 regression (or a missing key with ``--fail-on-missing``), 2 bad input, an unwritable output, or too few samples
for the rule ever to flag a key (the message says how many are needed).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from edgedeploy.clierrors import ErrorHandlingGroup, guarded
from edgedeploy.errors import ConfigError, EdgeDeployError, OutputError
from edgedeploy.outpaths import check_output_files, write_output
from edgedeploy.results import baseline as baseline_mod
from edgedeploy.results import report as report_mod
from edgedeploy.results import sources as sources_mod
from edgedeploy.results import store as store_mod
from edgedeploy.results.compare import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_ABS_MS,
    DEFAULT_THRESHOLD_PCT,
    ComparisonReport,
    Key,
    RegressionRule,
    compare_results,
    group_by_key,
    parse_threshold,
)
from edgedeploy.results.result import BenchResult

#: ``--confirm`` re-runs a flagged key with this command (placeholders filled per key; no shell involved).
DEFAULT_RERUN_CMD = (
    "edgedeploy bench {model} --runtime {runtime} --precision {precision} --device {device} "
    "--threads {threads} --iterations {iterations} --warmup {warmup} --out {out}"
)
RERUN_TIMEOUT_S = 3600

F = TypeVar("F", bound=Callable[..., Any])


#: the one error path of the CLI (edgedeploy.clierrors): these commands also run outside the main group
_errors_to_exit = guarded


def _console() -> Console:
    return Console(width=220, highlight=False)  # the comparison table has 17 columns


def subprocess_rerun(
    current: Sequence[BenchResult], template: str = DEFAULT_RERUN_CMD, timeout_s: float = RERUN_TIMEOUT_S
) -> Callable[[Key], BenchResult]:
    """A ``rerun`` hook for :func:`compare_results` that runs ``template`` as a subprocess for a key.

    Placeholders: ``{model} {format} {precision} {runtime} {device} {threads} {iterations} {warmup} {out}``
    (``iterations``/``warmup`` from the current run of that key; ``out`` a temporary JSON path the command must
    write a ``bench --json`` document to). The template is split with ``shlex`` BEFORE substitution, so values are
    never interpreted by a shell. Raises :class:`EdgeDeployError` if the command fails, times out or writes no
    result for the key.
    """
    groups = group_by_key(current)
    argv_template = shlex.split(template)

    def rerun(key: Key) -> BenchResult:
        ref = groups[key][-1]
        with tempfile.TemporaryDirectory(prefix="edgedeploy-rerun-") as tmp:
            out = Path(tmp) / "rerun.json"
            values = dict(
                model=key[0],
                format=key[1],
                precision=key[2],
                runtime=key[3],
                device=key[4],
                threads=key[5],
                iterations=ref.iterations,
                warmup=ref.warmup,
                out=str(out),
            )
            try:
                argv = [tok.format(**values) for tok in argv_template]
            except (KeyError, IndexError, ValueError) as e:
                raise ConfigError(f"--rerun-cmd: bad placeholder {e} in {template!r}") from None
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
            except FileNotFoundError:
                raise EdgeDeployError(f"--confirm: cannot run {argv[0]!r} (not found)") from None
            except subprocess.TimeoutExpired:
                raise EdgeDeployError(f"--confirm: re-run of {key[0]} timed out after {timeout_s:g} s") from None
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
                raise EdgeDeployError(f"--confirm: re-run of {key[0]} exited {proc.returncode}: {tail}")
            results = [r for r in sources_mod.load_source(out) if r.key == key]
            if not results:
                raise EdgeDeployError(f"--confirm: re-run of {key[0]} wrote no result for {key}")
            return results[-1]

    return rerun


def print_comparison(report: ComparisonReport, console: Console | None = None, fail_on_missing: bool = False) -> None:
    console = console or _console()
    colors = {
        "regression": "red",
        "improvement": "green",
        "missing": "yellow",
        "unchanged": "dim",
        "insufficient": "yellow",
    }
    t = Table(title=f"{report.baseline_label} → {report.current_label}")
    for col in ("verdict", "model", "format", "prec", "runtime", "device", "thr", "base p50 ms", "cur p50 ms"):
        t.add_column(col, justify="right" if "ms" in col or col == "thr" else "left")
    for col in ("change", "shift ms [CI]", "p", "load ms", "first ms", "peak RSS MB", "memory", "note"):
        t.add_column(col, justify="left" if col in ("note", "memory") else "right")
    for row in report.sorted_rows():
        m, f, p, rt, d, th = row.key
        t.add_row(
            f"[{colors[row.verdict]}]{row.verdict}[/]",
            m,
            f,
            p,
            rt,
            d,
            str(th),
            report_mod._f(row.baseline_median_ms),
            report_mod._f(row.current_median_ms),
            report_mod._f(row.change_pct, "{:+.1f} %"),
            report_mod._shift(row),
            report_mod._p(row.p_value),
            *report_mod.figure_cells(row),
            f"[{colors.get(row.memory_verdict, 'dim')}]{row.memory_verdict}[/]",
            row.note,
        )
    console.print(t)
    console.print(summary_line(report, fail_on_missing))


def summary_line(report: ComparisonReport, fail_on_missing: bool = False) -> str:
    """The verdict line; it always agrees with :func:`exit_code_for`."""
    n = len(report.regressions)
    counts = f"({len(report.improvements)} improvement(s), {len(report.missing)} missing"
    counts += f", {len(report.insufficient)} with too few samples)" if report.insufficient else ")"
    if n:
        return f"[red]{n} regression(s)[/] {counts}"
    if report.insufficient:
        return f"[yellow]inconclusive: too few samples[/] {counts}"
    if fail_on_missing and _missing_current(report):
        return f"[red]baseline keys missing from the current results (--fail-on-missing)[/] {counts}"
    return f"[green]no regression[/] {counts}"


def _missing_current(report: ComparisonReport) -> list[Any]:
    return [r for r in report.missing if r.note.startswith("not in")]


def exit_code_for(report: ComparisonReport, fail_on_missing: bool = False) -> int:
    """0 no regression, 1 regression (or, with ``fail_on_missing``, a baseline key with no current result),
    2 some key had too few samples to be judged (and nothing regressed)."""
    code = report.exit_code
    if code == 0 and fail_on_missing and _missing_current(report):
        return 1
    return code


@click.command("compare")
@click.argument("baseline")
@click.argument("current")
@click.option(
    "--threshold",
    default=f"{DEFAULT_THRESHOLD_PCT:g}%",
    show_default=True,
    help="Median change a regression must exceed (e.g. 5%).",
)
@click.option(
    "--alpha", type=float, default=DEFAULT_ALPHA, show_default=True, help="Mann–Whitney U significance level."
)
@click.option(
    "--min-abs-ms",
    type=float,
    default=DEFAULT_MIN_ABS_MS,
    show_default=True,
    help="Absolute floor (ms) the median difference must exceed.",
)
@click.option(
    "--aggregate",
    type=click.Choice(["fastest", "pool"]),
    default="fastest",
    show_default=True,
    help="Several runs of a key on one side: use the fastest run, or pool all samples.",
)
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), help="Write the Markdown table here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the comparison as JSON here.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write a self-contained HTML page here.")
@click.option(
    "--confirm", is_flag=True, help="Re-run each flagged key once (see --rerun-cmd); keep it only if confirmed."
)
@click.option(
    "--rerun-cmd",
    default=DEFAULT_RERUN_CMD,
    show_default=True,
    help="Command --confirm runs per key; placeholders {model} {format} {precision} {runtime} {device} "
    "{threads} {iterations} {warmup} {out}.",
)
@click.option("--fail-on-missing", is_flag=True, help="Exit 1 when a baseline key has no current result.")
@click.option(
    "--store", type=click.Path(file_okay=False), help="Result store for run ids (default $EDGEDEPLOY_RESULTS)."
)
@_errors_to_exit
def compare_cmd(
    baseline: str,
    current: str,
    threshold: str,
    alpha: float,
    min_abs_ms: float,
    aggregate: str,
    markdown_path: str | None,
    json_path: str | None,
    html_path: str | None,
    confirm: bool,
    rerun_cmd: str,
    fail_on_missing: bool,
    store: str | None,
) -> None:
    """Compare CURRENT against BASELINE, key by key; exit 0 (no regression), 1 (regression) or 2 (bad input).

    BASELINE and CURRENT are `bench --json` files, result folders, stored run ids or baseline:<branch>.
    A regression is: Mann–Whitney U p < ALPHA, median change > THRESHOLD, and > MIN_ABS_MS.
    """
    from edgedeploy import api

    # bad rule values fail before any file is read or written (api.compare builds the same rule again)
    RegressionRule(parse_threshold(threshold), alpha, min_abs_ms, aggregate)  # type: ignore[arg-type]
    check_output_files(markdown_path, json_path, html_path)
    base = sources_mod.load_source(baseline, store)
    cur = sources_mod.load_source(current, store)
    hook = subprocess_rerun(cur, rerun_cmd) if confirm else None
    report = api.compare(
        base, cur, threshold=threshold, alpha=alpha, min_abs_ms=min_abs_ms, aggregate=aggregate, rerun=hook,
        baseline_label=baseline, current_label=current,
    )  # fmt: skip
    print_comparison(report, fail_on_missing=fail_on_missing)
    write_output(markdown_path, report_mod.comparison_markdown(report))
    write_output(json_path, report.to_json())
    if html_path:
        write_output(html_path, report_mod.render_html(list(base) + list(cur), report))
    code = exit_code_for(report, fail_on_missing)
    if report.insufficient and not report.regressions:
        click.echo(f"error: {report.insufficient_message()}", err=True)
    elif code == 1 and not report.regressions:
        missing = ", ".join(r.label() for r in _missing_current(report)[:3])
        click.echo(f"error: baseline key(s) missing from {current} (--fail-on-missing): {missing}", err=True)
    sys.exit(code)


@click.command("report")
@click.argument("results", nargs=-1, required=True)
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Self-contained HTML page with plots.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), help="Markdown summary.")
@click.option(
    "--baseline", help="Also compare the latest results against this source (file, folder, run id, baseline:BRANCH)."
)
@click.option("--title", default="edgedeploy latency report", show_default=True)
@click.option(
    "--store", type=click.Path(file_okay=False), help="Result store for run ids (default $EDGEDEPLOY_RESULTS)."
)
@_errors_to_exit
def report_cmd(
    results: tuple[str, ...],
    html_path: str | None,
    markdown_path: str | None,
    baseline: str | None,
    title: str,
    store: str | None,
) -> None:
    """Write reports for RESULTS (files, folders, run ids): an HTML page with plots and/or a Markdown summary."""
    if not html_path and not markdown_path:
        raise ConfigError("give --html FILE and/or --markdown FILE")
    check_output_files(html_path, markdown_path)
    loaded = [r for spec in results for r in sources_mod.load_source(spec, store)]
    comparison = None
    if baseline:
        comparison = compare_results(
            sources_mod.load_source(baseline, store), loaded, baseline_label=baseline, current_label=" ".join(results)
        )
    if html_path:
        from edgedeploy.results.history import history

        write_output(html_path, report_mod.render_html(loaded, comparison, title=title, history=history(loaded)))
        click.echo(f"wrote {html_path}")
    if markdown_path:
        md = report_mod.comparison_markdown(comparison) if comparison else report_mod.results_markdown(loaded, title)
        write_output(markdown_path, md)
        click.echo(f"wrote {markdown_path}")


@click.group("results")
def results_group() -> None:
    """Stored benchmark runs."""


@results_group.command("list")
@click.argument("folder", required=False, type=click.Path(file_okay=False))
@_errors_to_exit
def results_list_cmd(folder: str | None) -> None:
    """List the runs stored in FOLDER (default $EDGEDEPLOY_RESULTS or ./.edgedeploy/results), oldest first."""
    where = Path(folder) if folder else store_mod.default_store()
    runs = store_mod.list_runs(where)
    console = _console()
    if not runs:
        console.print(f"no runs stored in {where}")
        return
    t = Table(title=f"runs in {where}")
    for col in ("run id", "created (UTC)", "commit", "label", "results", "models / formats", "p50 ms"):
        t.add_column(col)
    for run in runs:
        what = ", ".join(sorted({f"{r.model}/{r.format}" for r in run.results}))
        p50 = ", ".join(f"{r.median_ms:.2f}" for r in run.results[:4]) + (" …" if len(run.results) > 4 else "")
        t.add_row(run.run_id, run.created, (run.git_commit or "")[:10], run.label, str(len(run.results)), what, p50)
    console.print(t)


@click.group("baseline")
def baseline_group() -> None:
    """Baselines of branches that `compare baseline:BRANCH ...` checks against."""


@baseline_group.command("save")
@click.argument("results", nargs=-1, required=True)
@click.option("--branch", default="main", show_default=True)
@click.option(
    "--dir", "folder", type=click.Path(file_okay=False), help="Baseline folder (default $EDGEDEPLOY_BASELINES)."
)
@click.option("--store", type=click.Path(file_okay=False), help="Result store for run ids.")
@_errors_to_exit
def baseline_save_cmd(results: tuple[str, ...], branch: str, folder: str | None, store: str | None) -> None:
    """Save RESULTS (files, folders, run ids) as BRANCH's baseline, replacing the previous one atomically."""
    from edgedeploy.outpaths import check_output_dir

    check_output_dir(baseline_mod.baseline_path(branch, folder).parent, "the baseline")  # before loading anything
    loaded = [r for spec in results for r in sources_mod.load_source(spec, store)]
    try:
        run = baseline_mod.save_baseline(loaded, branch, folder)
    except OSError as e:
        where = baseline_mod.baseline_path(branch, folder)
        raise OutputError(f"cannot write the baseline {where}: {e.strerror or e}") from e
    click.echo(f"saved baseline '{branch}': {len(loaded)} result(s), {len(group_by_key(loaded))} key(s) -> {run.path}")


@baseline_group.command("show")
@click.option("--branch", default="main", show_default=True)
@click.option(
    "--dir", "folder", type=click.Path(file_okay=False), help="Baseline folder (default $EDGEDEPLOY_BASELINES)."
)
@_errors_to_exit
def baseline_show_cmd(branch: str, folder: str | None) -> None:
    """Show BRANCH's baseline: per key the runs, samples and median / p90 latency (ms)."""
    run = baseline_mod.load_baseline(branch, folder)
    console = _console()
    t = Table(title=f"baseline '{branch}' ({run.created}, commit {(run.git_commit or '?')[:10]})")
    for col in ("model", "format", "precision", "runtime", "device", "threads", "runs", "n", "p50 ms", "p90 ms"):
        t.add_column(col)
    for key, rs in group_by_key(run.results).items():
        best = min(rs, key=lambda r: r.median_ms)
        t.add_row(
            *[str(v) for v in key],
            str(len(rs)),
            str(sum(len(r.samples_ms) for r in rs)),
            f"{best.median_ms:.3f}",
            f"{best.p90_ms:.3f}",
        )
    console.print(t)
    others = [b for b in baseline_mod.list_baselines(folder) if b != branch]
    if others:
        console.print(f"other baselines: {', '.join(others)}")


def _add_history() -> None:
    from edgedeploy.commands.history import history_cmd

    results_group.add_command(history_cmd)


_add_history()


@click.group(cls=ErrorHandlingGroup)
def main() -> None:
    """edgedeploy results commands (standalone entry point; the main CLI registers the same commands)."""


main.add_command(compare_cmd)
main.add_command(report_cmd)
main.add_command(results_group)
main.add_command(baseline_group)


if __name__ == "__main__":
    main()
