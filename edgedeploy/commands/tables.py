"""The rich tables the commands print (the command layer: the only place besides the CLI modules that imports rich).

Built from the library's records: a bisection report (:mod:`edgedeploy.export.bisect`), the ``--to all`` rows
(:mod:`edgedeploy.export.multi`), per-op profiles (:mod:`edgedeploy.opprof`). Times in ms, sizes in MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from edgedeploy._util import si_format
from edgedeploy.export.bisect import BisectReport
from edgedeploy.export.manifest import Int8Speed, int8_speed_line
from edgedeploy.export.multi import FormatResult
from edgedeploy.opprof.record import Profile, named
from edgedeploy.opprof.render import compare_rows, module_rows, op_type_rows


def bisect_table(report: BisectReport, max_rows: int = 40) -> Table:
    """A rich Table: the probes around the culprit (or the worst probes when there is none)."""
    title = f"parity bisection of {Path(report.artifact).name} (tolerance: rel error {report.tolerance:g})"
    table = Table(title=title)
    for col in ("#", "module", "type", "shape", "max abs", "rel error", "cosine", ""):
        table.add_column(col, justify="right" if col in ("#", "max abs", "rel error", "cosine") else "left")
    rows = list(enumerate(report.probes))
    if report.culprit is not None:
        idx = next(i for i, p in rows if p.module == report.culprit)
        rows = rows[max(0, idx - 5) : idx + 6]
    elif len(rows) > max_rows:
        rows = rows[:5] + sorted(rows[5:], key=lambda r: -(r[1].rel_error or 0))[: max_rows - 5]
        rows.sort()
    for i, p in rows:
        mark = "[bold red]◀ culprit[/]" if p.module == report.culprit else ("[red]bad[/]" if p.bad else p.note)
        f = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
        table.add_row(
            str(i), p.module, p.type, "×".join(map(str, p.shape)), f(p.max_abs_error, ".2e"),
            f(p.rel_error, ".2e"), f(p.cosine, ".6f"), mark,
        )  # fmt: skip
    return table


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


def export_all_table(model: str, results: Sequence[FormatResult]) -> Table:
    """A rich Table of the ``--to all`` results (one row per format)."""
    table = Table(title=f"{model}: export to every format")
    for col in ("format", "precision", "status", "size", "export time", "parity metrics"):
        table.add_column(col, justify="right" if col in ("size", "export time") else "left")
    for r in results:
        size = f"{r.size_bytes / 1e6:.2f} MB" if r.size_bytes is not None else "–"
        t = f"{r.export_s:.1f} s" if r.export_s is not None else "–"
        table.add_row(r.format, r.precision, _status_cell(r), size, t, _metrics_cell(r.parity))
    speeds = [Int8Speed.model_validate(r.int8_speed) for r in results if r.int8_speed]
    if speeds:
        table.caption = "\n".join(int8_speed_line(s) for s in speeds)
    return table


def module_table(p: Profile, depth: int = 1, top: int = 30, title: str | None = None) -> Table:
    """A rich Table: module → ms, % of the run, ops, MACs, GMAC/s (``top`` rows by time) plus unattributed."""
    rows = module_rows(p, depth)
    what = {0: "op-owning module", 1: "stage"}.get(depth, f"module (depth {depth})")
    t = Table(title=title or f"{p.model} on {p.runtime}: time per {what}")
    for col in (what, "ms", "% run", "ops", "MACs", "GMAC/s"):
        t.add_column(col, justify="left" if col == what else "right")
    for r in rows[:top]:
        t.add_row(r.module, f"{r.ms:.3f}", f"{100 * r.share:.1f}", str(r.ops), si_format(r.macs),
                  f"{r.gmacs_per_s:.1f}" if r.gmacs_per_s else "–")  # fmt: skip
    if len(rows) > top:
        rest = rows[top:]
        t.add_row(f"… {len(rest)} more", f"{sum(r.ms for r in rest):.3f}",
                  f"{100 * sum(r.share for r in rest):.1f}", str(sum(r.ops for r in rest)), "", "")  # fmt: skip
    un = [o for o in p.ops if not named(o.module)]
    if un:
        share = p.unattributed_ms / p.total_ms if p.total_ms else 0.0
        t.add_row("(root / unattributed)", f"{p.unattributed_ms:.3f}", f"{100 * share:.1f}", str(len(un)), "", "")
    t.add_row("total", f"{p.total_ms:.3f}", "100.0", str(len(p.ops)), si_format(p.macs.get("") if p.macs else None),
              f"{p.macs[''] / (p.total_ms * 1e6):.1f}" if p.macs and p.macs.get("") and p.total_ms else "–",
              style="bold")  # fmt: skip
    return t


def op_type_table(profiles: Sequence[Profile], top: int = 12) -> Table:
    """A rich Table: time per op type, one column pair (ms, count) per runtime, sorted by the first runtime."""
    t = Table(title=f"{profiles[0].model}: time per op type")
    t.add_column("op type")
    per = [{k: (ms, n) for k, ms, n in op_type_rows(p)} for p in profiles]
    for p in profiles:
        t.add_column(f"{p.runtime} ms", justify="right")
        t.add_column("n", justify="right")
    keys: list[str] = []
    for d in per:
        keys += [k for k in sorted(d, key=lambda k, d=d: -d[k][0])[:top] if k not in keys]
    for k in keys:
        cells = [k]
        for d in per:
            ms, n = d.get(k, (None, 0))
            cells += [f"{ms:.3f}" if ms is not None else "–", str(n) if n else "–"]
        t.add_row(*cells)
    return t


def compare_table(profiles: Sequence[Profile], depth: int = 1, top: int = 30) -> Table:
    """A rich Table of :func:`compare_rows`; rows where a later runtime is ≥ 10 % slower than the first in red."""
    names = [p.runtime for p in profiles]
    t = Table(title=f"{profiles[0].model}: " + " vs ".join(names) + " per " + ("stage" if depth == 1 else "module"))
    t.add_column("module")
    for n in names:
        t.add_column(f"{n} ms", justify="right")
    for n in names[1:]:
        t.add_column(f"{n}/{names[0]}", justify="right")
    t.add_column("ops", justify="right")
    for r in compare_rows(profiles, depth)[:top]:
        cells = [r["module"]] + [f"{v:.3f}" if v is not None else "–" for v in r["ms"].values()]
        ratios = r["ratio_to_first"][1:]
        cells += [f"{x:.2f}" if x is not None else "–" for x in ratios]
        cells.append("/".join(str(n) for n in r["ops"]))
        slow = any(x is not None and x >= 1.10 for x in ratios)
        t.add_row(*cells, style="red" if slow else None)
    t.add_row("total", *(f"{p.total_ms:.3f}" for p in profiles),
              *(f"{p.total_ms / profiles[0].total_ms:.2f}" for p in profiles[1:]), "", style="bold")  # fmt: skip
    t.add_row(
        "bench median",
        *(f"{p.bench_median_ms or float('nan'):.3f}" for p in profiles),
        *(f"{(p.bench_median_ms or 0) / (profiles[0].bench_median_ms or 1):.2f}" for p in profiles[1:]),
        "",
    )
    return t


# ------------------------------------------------------------------ HTML
