"""Rows, the side-by-side comparison across runtimes, and the self-contained HTML page of profiles (the rich
tables of these rows are in :mod:`edgedeploy.commands.tables`).

All times in ms; MACs are counts (conv + linear + matmul), GMAC/s = MACs / ms / 1e6. The HTML page follows
:mod:`edgedeploy.results.report`: no external resource, matplotlib figures inline as SVG (text as paths).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from edgedeploy._util import si_format
from edgedeploy.opprof.record import ModuleRow, Profile


def headline(p: Profile) -> str:
    """One line: model, runtime, profile total vs bench median, attributed share, machine load."""
    ratio = f" ({p.total_vs_bench:.2f}×)" if p.total_vs_bench else ""
    load = p.env.get("loadavg")
    return (
        f"{p.model} · {p.format} · {p.runtime} · {p.threads} thread(s) · profile total {p.total_ms:.2f} ms vs bench "
        f"median {p.bench_median_ms or float('nan'):.2f} ms{ratio} · {100 * p.attributed_share:.1f} % on named "
        f"modules · {p.overhead.get('runs_averaged', '?')}/{p.overhead.get('runs_measured', '?')} runs averaged"
        + (f" · load {load[0]:.1f}" if load else "")
    )


def module_rows(p: Profile, depth: int) -> list[ModuleRow]:
    """Rows at ``depth`` (1 = stages, 0 = the op-owning modules themselves)."""
    if depth <= 0:
        return p.modules
    if depth == 1:
        return p.stages
    return p.rollup(depth)


def op_type_rows(p: Profile) -> list[tuple[str, float, int]]:
    """(op type, ms, count) sorted by time."""
    acc: dict[str, list[float]] = {}
    for o in p.ops:
        a = acc.setdefault(o.op_type, [0.0, 0])
        a[0] += o.ms
        a[1] += 1
    return sorted(((k, v[0], int(v[1])) for k, v in acc.items()), key=lambda r: -r[1])


def compare_rows(profiles: Sequence[Profile], depth: int = 1) -> list[dict[str, Any]]:
    """Side by side: one row per module at ``depth`` with ms per runtime and each runtime's ratio to the first."""
    tables = [{r.module: r for r in module_rows(p, depth)} for p in profiles]
    order: list[str] = []
    for tab in tables:
        order += [m for m in tab if m not in order]
    rows = []
    for m in order:
        ms = [tab[m].ms if m in tab else None for tab in tables]
        base = ms[0]
        rows.append({
            "module": m,
            "ms": dict(zip([p.runtime for p in profiles], ms, strict=True)),
            "ratio_to_first": [None if (v is None or not base) else v / base for v in ms],
            "ops": [tab[m].ops if m in tab else 0 for tab in tables],
        })  # fmt: skip
    return sorted(rows, key=lambda r: -max(v or 0.0 for v in r["ms"].values()))


def plot_stages(profiles: Sequence[Profile]) -> str:
    """Horizontal bars: ms per stage, one bar per runtime, grouped by stage; inline SVG."""
    import numpy as np

    from edgedeploy.results.report import _figure, _svg

    rows = compare_rows(profiles, 1)[:24]
    fig = _figure(9.0, max(2.5, 0.32 * len(rows) * len(profiles) + 1.0))
    ax = fig.subplots()
    h = 0.8 / max(1, len(profiles))
    y = np.arange(len(rows))
    for i, p in enumerate(profiles):
        vals = [r["ms"].get(p.runtime) or 0.0 for r in rows]
        ax.barh(y + i * h, vals, height=h, label=p.runtime)
    ax.set_yticks(y + h * (len(profiles) - 1) / 2, [r["module"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per run (mean of the runs nearest the median)", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str) -> str:
    head = "".join(f"<th class='{'l' if i == 0 else ''}'>{html.escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f"<td class='{'l' if i == 0 else ''}'>{html.escape(str(c))}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table id='{table_id}'><tr>{head}</tr>{body}</table>"


def render_html(profiles: Sequence[Profile], depth: int = 2, top: int = 40) -> str:
    """One self-contained HTML page: headline per runtime, the stage plot, the side-by-side table (several
    runtimes), per-runtime module and op-type tables. Raises ``ValueError`` for no profiles."""
    from edgedeploy.results.report import _CSS, _figure_html

    if not profiles:
        raise ValueError("nothing to render")
    title = f"edgedeploy profile: {profiles[0].model}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<ul>" + "".join(f"<li>{html.escape(headline(p))}</li>" for p in profiles) + "</ul>",
        "<h2>Time per stage</h2>",
        _figure_html("plot-stages", "Op time per top-level module (ms), per runtime.", plot_stages(profiles)),
    ]
    if len(profiles) > 1:
        names = [p.runtime for p in profiles]
        rows = [
            [r["module"], *(f"{v:.3f}" if v is not None else "–" for v in r["ms"].values()),
             *(f"{x:.2f}" if x is not None else "–" for x in r["ratio_to_first"][1:])]
            for r in compare_rows(profiles, depth)[:top]
        ]  # fmt: skip
        headers = ["module", *(f"{n} ms" for n in names), *(f"{n}/{names[0]}" for n in names[1:])]
        parts += [f"<h2>Side by side (depth {depth})</h2>", _html_table(headers, rows, "compare-table")]
    for p in profiles:
        rows = [
            [r.module, f"{r.ms:.3f}", f"{100 * r.share:.1f}", r.ops, si_format(r.macs),
             f"{r.gmacs_per_s:.1f}" if r.gmacs_per_s else "–"]
            for r in module_rows(p, depth)[:top]
        ]  # fmt: skip
        parts += [
            f"<h2>{html.escape(p.runtime)}: modules (depth {depth})</h2>",
            _html_table(["module", "ms", "% run", "ops", "MACs", "GMAC/s"], rows, f"modules-{p.runtime}"),
            f"<h2>{html.escape(p.runtime)}: op types</h2>",
            _html_table(
                ["op type", "ms", "count"],
                [[k, f"{ms:.3f}", n] for k, ms, n in op_type_rows(p)],
                f"optypes-{p.runtime}",
            ),
            f"<p class='small'>{html.escape('; '.join(p.notes))}</p>",
        ]
    parts.append("<p class='small'>Generated by edgedeploy profile. Times in ms per run.</p></body></html>")
    return "\n".join(parts)
