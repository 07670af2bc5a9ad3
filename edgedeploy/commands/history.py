"""``edgedeploy results history``: change points of each key's latency across stored runs (ruptures)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from edgedeploy.clierrors import guarded


@click.command("history")
@click.argument("sources", nargs=-1)
@click.option("--key", "keys", multiple=True, help="Glob on model/format/precision/runtime/device/threads or the "
              "model (repeatable; default: every key).")  # fmt: skip
@click.option("--penalty", type=float, default=10.0, show_default=True, help="PELT penalty factor (× σ² ln n).")
@click.option("--min-change", type=float, default=2.0, show_default=True, help="Smallest change reported (%).")
@click.option("--store", type=click.Path(file_okay=False), default=None, help="Result store (default "
              "$EDGEDEPLOY_RESULTS or ./.edgedeploy/results).")  # fmt: skip
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), default=None, help="Write Markdown.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Write the HTML report.")
@guarded
def history_cmd(
    sources: tuple[str, ...],
    keys: tuple[str, ...],
    penalty: float,
    min_change: float,
    store: str | None,
    markdown_path: str | None,
    html_path: str | None,
) -> None:
    """Mark where each key's latency changed across stored runs (SOURCES: files / folders / run ids; default:
    every run of the store), naming the commit of each change point and its size."""
    from edgedeploy.errors import ConfigError
    from edgedeploy.outpaths import check_output_files, write_output
    from edgedeploy.results import report as report_mod
    from edgedeploy.results import store as store_mod
    from edgedeploy.results.history import HistoryOptions, history, history_markdown, key_label

    check_output_files(markdown_path, html_path)
    opts = HistoryOptions(tuple(keys), penalty, min_change)
    if sources:
        results = [r for s in sources for r in store_mod.load_source(s, store)]
    else:
        results = store_mod.flatten(store_mod.list_runs(Path(store) if store else store_mod.default_store()))
    if not results:
        raise ConfigError("no stored runs to look at")
    hist = history(results, opts)
    t = Table(title="change points over history")
    for col in ("key", "runs", "at run", "commit", "time (UTC)", "before ms", "after ms", "change"):
        t.add_column(col)
    for h in hist:
        for cp in h.change_points:
            t.add_row(
                key_label(h.key), str(len(h.medians_ms)), str(cp.index), (cp.commit or "?")[:10],
                cp.timestamp[:19], f"{cp.before_ms:.3f}", f"{cp.after_ms:.3f}", f"{cp.change_pct:+.1f} %",
            )  # fmt: skip
    console = Console(width=160, highlight=False)
    console.print(t)
    n = sum(len(h.change_points) for h in hist)
    console.print(f"{n} change point(s) over {len(hist)} key(s)")
    if markdown_path:
        write_output(markdown_path, history_markdown(hist))
    if html_path:
        write_output(html_path, report_mod.render_html(results, None, title="edgedeploy latency history", history=hist))
