"""Reports: Markdown for a pull-request comment, and a self-contained HTML page with plots.

Markdown (:func:`comparison_markdown`): one table per comparison, regressions first, one row per key naming the
model, format, precision, runtime, device and threads, with medians (ms), change (%), the Hodges–Lehmann shift and
its confidence interval (ms), the Mann–Whitney p-value and the verdict.

HTML (:func:`render_html`): one file with no external resource (no CDN, no fonts, no scripts): plots are
matplotlib figures embedded as inline SVG (text rendered as paths), so the page works offline and as a CI
artifact. Plots: latency distribution per key (box plots of the raw samples of each run, or baseline vs current),
history over commits (median per run with the p10–p90 band, per key), and per-format comparison (median per
format for each model/device, p10–p90 whiskers). All times in ms, computed from the raw samples.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgedeploy.results.compare import ComparisonReport, Key, KeyComparison, group_by_key
from edgedeploy.results.figures import RESULT_COLUMNS, result_row
from edgedeploy.results.result import BenchResult

_VERDICT_MD = {
    "regression": "🔴 regression",
    "improvement": "🟢 improvement",
    "unchanged": "⚪ unchanged",
    "missing": "⚠️ missing",
    "insufficient": "⚠️ insufficient samples",
}
MAX_KEYS_PLOTTED = 24
MAX_RUNS_PER_KEY = 8


def _f(v: float | None, fmt: str = "{:.3f}") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _p(v: float | None) -> str:
    if v is None:
        return "–"
    return "<0.0001" if v < 1e-4 else f"{v:.4f}"


def _shift(row: KeyComparison) -> str:
    if row.shift is None:
        return "–"
    s = row.shift
    return f"{s.estimate_ms:+.3f} [{s.low_ms:+.3f}, {s.high_ms:+.3f}]"


def rule_sentence(report: ComparisonReport) -> str:
    r = report.rule
    conf = "; flagged cases re-run once (`--confirm`)" if report.confirmed else ""
    return (
        f"A regression is Mann–Whitney U p < {r.alpha:g} **and** median change > +{r.threshold_pct:g} % **and** "
        f"> +{r.min_abs_ms:g} ms; shift = Hodges–Lehmann estimate with its {100 * (1 - r.alpha):g} % "
        f"interval; several runs of a key: {r.aggregate}{conf}. A memory regression (peak RSS up by more than "
        f"{r.memory_threshold_pct:g} % **and** {r.min_abs_mb:g} MB) is a regression too."
    )


def _pair(b: float | None, c: float | None) -> str:
    return f"{_f(b, '{:.1f}')} → {_f(c, '{:.1f}')}".replace("–", "n/a")


def figure_cells(row: KeyComparison) -> list[str]:
    """``load ms``, ``first ms``, ``peak RSS MB`` cells of a comparison row, each ``baseline → current``."""
    if row.figures is None:
        return ["n/a"] * 3
    b, c = row.figures.baseline, row.figures.current
    return [_pair(b.load_ms, c.load_ms), _pair(b.first_ms, c.first_ms), _pair(b.peak_rss_mb, c.peak_rss_mb)]


def comparison_markdown(report: ComparisonReport, title: str = "Latency comparison") -> str:
    """Markdown for a PR comment: a summary line, the rule, and the table (regressions first). Times in ms."""
    n = len(report.regressions)
    head = f"**{n} regression{'s' if n != 1 else ''}**" if n else "**No latency regression**"
    if not n and report.insufficient:
        head = "**Inconclusive: too few samples**"
    thin = f" · {len(report.insufficient)} with too few samples" if report.insufficient else ""
    lines = [
        f"### {title}: `{report.baseline_label}` → `{report.current_label}`",
        "",
        f"{head} · {len(report.improvements)} improvement(s) · {len(report.missing)} missing{thin} · "
        f"{len(report.rows)} key(s) compared",
        "",
        "| verdict | model | format | precision | runtime | device | threads | baseline p50 (ms) | current p50 (ms) "
        "| change | shift (ms) [CI] | p | n (base/cur) | load ms | first ms | peak RSS MB | memory | note |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in report.sorted_rows():
        m, f, prec, rt, dev, th = row.key
        change = _f(row.change_pct, "{:+.1f} %")
        if row.verdict == "regression":
            change = f"**{change}**"
        verdict = _VERDICT_MD["regression" if row.regressed else row.verdict]
        lines.append(
            f"| {verdict} | **{m}** | {f} | {prec} | {rt} | {dev} | {th} | "
            f"{_f(row.baseline_median_ms)} | {_f(row.current_median_ms)} | {change} | {_shift(row)} | "
            f"{_p(row.p_value)} | {row.n_baseline}/{row.n_current} | {' | '.join(figure_cells(row))} | "
            f"{row.memory_verdict} | {html.escape(row.note)} |"
        )
    lines += ["", f"<sub>{rule_sentence(report)}</sub>", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ plots


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "edgedeploy"}):
        fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _key_label(key: Key) -> str:
    m, f, p, r, d, t = key
    return f"{m} · {f}/{p} · {r}@{d} · t{t}"


def _run_label(r: BenchResult) -> str:
    c = (r.git_commit or "")[:7]
    return f"{c} {r.timestamp[5:16].replace('T', ' ')}".strip()


def _horizontal() -> dict[str, Any]:
    import matplotlib

    major, minor = (int(v) for v in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def plot_distributions(groups: dict[Key, list[tuple[str, Sequence[float]]]]) -> str:
    """Box plots (with raw-sample strip) of each named sample set, one panel per key; returns inline SVG."""
    keys = list(groups)[:MAX_KEYS_PLOTTED]
    fig = _figure(9.0, max(2.0, 1.6 * len(keys)))
    axes = fig.subplots(len(keys), 1, squeeze=False)[:, 0]
    rng = np.random.default_rng(0)
    for ax, key in zip(axes, keys, strict=False):
        sets = groups[key][-MAX_RUNS_PER_KEY:]
        data = [np.asarray(s, dtype=np.float64) for _, s in sets]
        ax.boxplot(data, showfliers=False, widths=0.6, **_horizontal())
        for i, d in enumerate(data, start=1):
            ax.scatter(d, i + rng.uniform(-0.18, 0.18, d.size), s=4, alpha=0.35, color="tab:blue", linewidths=0)
        ax.set_yticks(range(1, len(data) + 1), [n for n, _ in sets], fontsize=7)
        ax.set_title(_key_label(key), fontsize=8, loc="left")
        ax.set_xlabel("latency (ms)", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    return _svg(fig)


def plot_history(results: Sequence[BenchResult], history: Sequence[Any] | None = None) -> str:
    """Median latency per run over time (x = run, labelled by commit), p10–p90 band, one line per key; SVG.

    ``history``: :class:`~edgedeploy.results.history.KeyHistory` items whose change points are marked (a dashed
    line before the first run after the change, labelled with the change in percent)."""
    groups = group_by_key(results)
    keys = list(groups)[:MAX_KEYS_PLOTTED]
    runs_sorted = sorted({(r.timestamp, r.git_commit or "") for k in keys for r in groups[k]})
    xpos = {tk: i for i, tk in enumerate(runs_sorted)}
    fig = _figure(9.0, 4.0)
    ax = fig.subplots()
    for key in keys:
        rs = sorted(groups[key], key=lambda r: r.timestamp)
        x = [xpos[(r.timestamp, r.git_commit or "")] for r in rs]
        med = [r.median_ms for r in rs]
        lo = [float(np.percentile(r.samples_ms, 10)) for r in rs]
        hi = [float(np.percentile(r.samples_ms, 90)) for r in rs]
        (line,) = ax.plot(x, med, marker="o", markersize=3, label=_key_label(key))
        ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
        for h in history or ():
            if h.key != key:
                continue
            for cp in h.change_points:
                at = x[cp.index] - 0.5
                ax.axvline(at, color=line.get_color(), linestyle="--", linewidth=1)
                ax.annotate(f"{cp.change_pct:+.1f}% @{(cp.commit or '?')[:7]}", (at, cp.after_ms), fontsize=6,
                            color=line.get_color(), rotation=90, va="bottom")  # fmt: skip
    labels = [f"{c[:7] or '?'}\n{t[5:16].replace('T', ' ')}" for t, c in runs_sorted]
    step = max(1, len(labels) // 12)
    ax.set_xticks(range(0, len(labels), step), labels[::step], fontsize=6)
    ax.set_ylabel("median latency (ms), band p10–p90", fontsize=8)
    ax.set_xlabel("run (commit, UTC time)", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig)


def plot_formats(results: Sequence[BenchResult]) -> str:
    """Per-format comparison: for each (model, device, threads), the median of the latest run of each
    format/precision/runtime as bars with p10–p90 whiskers; SVG."""
    latest: dict[Key, BenchResult] = {}
    for r in results:
        if r.key not in latest or r.timestamp >= latest[r.key].timestamp:
            latest[r.key] = r
    panels: dict[tuple[str, str, int], list[BenchResult]] = {}
    for key, r in sorted(latest.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        panels.setdefault((key[0], key[4], key[5]), []).append(r)
    items = list(panels.items())[:MAX_KEYS_PLOTTED]
    fig = _figure(9.0, max(2.2, 1.9 * len(items)))
    axes = fig.subplots(len(items), 1, squeeze=False)[:, 0]
    for ax, ((model, device, threads), rs) in zip(axes, items, strict=False):
        names = [f"{r.format}/{r.precision}\n{r.runtime}" for r in rs]
        med = np.array([r.median_ms for r in rs])
        lo = np.array([float(np.percentile(r.samples_ms, 10)) for r in rs])
        hi = np.array([float(np.percentile(r.samples_ms, 90)) for r in rs])
        y = np.arange(len(rs))
        ax.barh(y, med, xerr=[med - lo, hi - med], color="tab:orange", alpha=0.8, capsize=3)
        for yi, m in zip(y, med, strict=True):
            ax.text(m, yi, f" {m:.2f}", va="center", fontsize=7)
        ax.set_yticks(y, names, fontsize=7)
        ax.set_title(f"{model} @ {device}, {threads} thread(s)", fontsize=8, loc="left")
        ax.set_xlabel("median latency (ms), whiskers p10–p90", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    return _svg(fig)


# ------------------------------------------------------------------ HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td.l,th.l{text-align:left}
tr.regression td{background:#fde2e2}tr.improvement td{background:#e3f6e3}tr.missing td{background:#fff4d6}
figure.plot{margin:1em 0}figure.plot svg{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}
.small{font-size:.8em;color:#555}
"""


def _results_table(results: Sequence[BenchResult]) -> str:
    rows = []
    for r in sorted(results, key=lambda r: (tuple(str(v) for v in r.key), r.timestamp)):
        m, f, p, rt, d, t = r.key
        rows.append(
            "<tr>"
            + "".join(f'<td class="l">{html.escape(str(v))}</td>' for v in (m, f, p, rt, d))
            + f"<td>{t}</td><td>{len(r.samples_ms)}</td><td>{r.median_ms:.3f}</td><td>{r.p90_ms:.3f}</td>"
            f"<td>{r.p99_ms:.3f}</td>"
            + "".join(f"<td>{v}</td>" for v in result_row(r))
            + f"<td class='l'>{html.escape((r.git_commit or '')[:10])}</td>"
            f"<td class='l'>{html.escape(r.timestamp)}</td><td class='l'>{html.escape(r.status)}</td></tr>"
        )
    head = (
        "<tr><th class='l'>model</th><th class='l'>format</th><th class='l'>precision</th><th class='l'>runtime</th>"
        "<th class='l'>device</th><th>threads</th><th>n</th><th>p50 (ms)</th><th>p90 (ms)</th><th>p99 (ms)</th>"
        + "".join(f"<th>{html.escape(c)}</th>" for c in RESULT_COLUMNS)
        + "<th class='l'>commit</th><th class='l'>time (UTC)</th><th class='l'>status</th></tr>"
    )
    return f"<table id='results-table'>{head}{''.join(rows)}</table>"


def _comparison_table(report: ComparisonReport) -> str:
    head = (
        "<tr><th class='l'>verdict</th><th class='l'>model</th><th class='l'>format</th><th class='l'>precision</th>"
        "<th class='l'>runtime</th><th class='l'>device</th><th>threads</th><th>baseline p50 (ms)</th>"
        "<th>current p50 (ms)</th><th>change</th><th>shift (ms) [CI]</th><th>p</th><th>load ms</th><th>first ms</th>"
        "<th>peak RSS MB</th><th class='l'>memory</th><th class='l'>note</th></tr>"
    )
    rows = []
    for row in report.sorted_rows():
        m, f, p, rt, d, t = row.key
        rows.append(
            f"<tr class='{row.verdict}'><td class='l'>{row.verdict}</td>"
            + "".join(f"<td class='l'>{html.escape(str(v))}</td>" for v in (m, f, p, rt, d))
            + f"<td>{t}</td><td>{_f(row.baseline_median_ms)}</td><td>{_f(row.current_median_ms)}</td>"
            f"<td>{_f(row.change_pct, '{:+.1f} %')}</td><td>{_shift(row)}</td><td>{_p(row.p_value)}</td>"
            + "".join(f"<td>{html.escape(v)}</td>" for v in figure_cells(row))
            + f"<td class='l'>{row.memory_verdict}</td><td class='l'>{html.escape(row.note)}</td></tr>"
        )
    return (
        f"<p>{html.escape(report.baseline_label)} → {html.escape(report.current_label)}: "
        f"<b>{len(report.regressions)} regression(s)</b>, {len(report.improvements)} improvement(s), "
        f"{len(report.missing)} missing.</p><table id='comparison-table'>{head}{''.join(rows)}</table>"
        f"<p class='small'>{html.escape(rule_sentence(report).replace('**', '').replace('`', ''))}</p>"
    )


def _figure_html(plot_id: str, caption: str, svg: str) -> str:
    return f"<figure class='plot' id='{plot_id}'>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _change_points_table(history: Sequence[Any]) -> str:
    rows = "".join(
        f"<tr class='change-point'><td>{html.escape(_key_label(h.key))}</td><td>{cp.index}</td>"
        f"<td>{html.escape((cp.commit or '?')[:10])}</td><td>{cp.before_ms:.3f}</td><td>{cp.after_ms:.3f}</td>"
        f"<td>{cp.change_pct:+.1f} %</td></tr>"
        for h in history
        for cp in h.change_points
    )
    head = "<tr><th>key</th><th>at run</th><th>commit</th><th>before ms</th><th>after ms</th><th>change</th></tr>"
    return f"<h3>Change points</h3><table id='change-points'>{head}{rows or '<tr><td>none</td></tr>'}</table>"


def render_html(
    results: Sequence[BenchResult],
    comparison: ComparisonReport | None = None,
    title: str = "edgedeploy latency report",
    history: Sequence[Any] | None = None,
) -> str:
    """A self-contained HTML page: comparison table (if given), the three plots, and the table of all runs.

    ``results`` are all runs to show (history needs several runs per key over commits). Raises ``ValueError`` if
    both ``results`` and ``comparison`` are empty.
    """
    if not results and comparison is None:
        raise ValueError("nothing to report")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if comparison is not None:
        parts += ["<h2>Comparison</h2>", _comparison_table(comparison)]
        dist: dict[Key, list[tuple[str, Sequence[float]]]] = {}
        for row in comparison.sorted_rows():
            sets = []
            if row.baseline_samples_ms:
                sets.append((comparison.baseline_label[:24], row.baseline_samples_ms))
            if row.current_samples_ms:
                sets.append((comparison.current_label[:24], row.current_samples_ms))
            if row.rerun is not None:
                sets.append(("re-run", row.rerun.current_samples_ms))
            dist[row.key] = sets
    else:
        dist = {
            k: [(_run_label(r), r.samples_ms) for r in sorted(rs, key=lambda r: r.timestamp)]
            for k, rs in group_by_key(results).items()
        }
    parts += [
        "<h2>Latency distribution per key</h2>",
        _figure_html(
            "plot-distributions",
            "Raw per-iteration latency (ms): box = quartiles, whiskers = 1.5 IQR, dots = samples.",
            plot_distributions(dist),
        ),
    ]
    all_results = list(results)
    from edgedeploy.results.sustained_plot import caption, plot_sustained, sustained_results

    if sustained_results(all_results):
        svg = _svg(plot_sustained(all_results, _figure))
        text = " ".join(caption(r) for r in sustained_results(all_results))
        parts += ["<h2>Sustained runs: latency over time, temperature beside it</h2>",
                  _figure_html("plot-sustained", text, svg)]  # fmt: skip
    if all_results:
        parts += [
            "<h2>History over commits</h2>",
            _figure_html(
                "plot-history",
                "Median latency of each run (ms), shaded p10–p90, oldest first"
                + ("; dashed lines: change points (ruptures PELT), the change and its commit." if history else "."),
                plot_history(all_results, history),
            ),
            *([_change_points_table(history)] if history else []),
            "<h2>Per-format comparison</h2>",
            _figure_html(
                "plot-formats",
                "Latest run of each format/precision/runtime per model and device: median (ms), whiskers p10–p90.",
                plot_formats(all_results),
            ),
            "<h2>All runs</h2>",
            _results_table(all_results),
        ]
    parts.append("<p class='small'>Generated by edgedeploy. Statistics computed from raw samples.</p></body></html>")
    return "\n".join(parts)


def results_markdown(results: Sequence[BenchResult], title: str = "Latency results") -> str:
    """Markdown summary of results without a baseline: one row per key (latest run), times in ms."""
    lines = [
        f"### {title}",
        "",
        "| model | format | precision | runtime | device | threads | runs | p50 (ms) | p90 (ms) | p99 (ms) | "
        + " | ".join(RESULT_COLUMNS)
        + " | commit |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, rs in sorted(group_by_key(results).items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        r = max(rs, key=lambda r: r.timestamp)
        m, f, p, rt, d, t = key
        lines.append(
            f"| **{m}** | {f} | {p} | {rt} | {d} | {t} | {len(rs)} | {r.median_ms:.3f} | {r.p90_ms:.3f} | "
            f"{r.p99_ms:.3f} | {' | '.join(result_row(r))} | {(r.git_commit or '')[:10]} |"
        )
    return "\n".join([*lines, ""])
