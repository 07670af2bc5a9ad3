"""The HTML report's sustained-run plot: latency over time, with the temperature beside it.

One row per result that has a ``sustained`` block (:mod:`edgedeploy.bench.sustained`): on the left each iteration's
latency (ms) against the time it ended (s), the first and last windows shaded and their p50 drawn; on the right the
hottest thermal zone (°C) against time, or the reason it was not measured. Inline SVG, no external resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgedeploy.results.result import BenchResult


def sustained_results(results: Sequence[BenchResult]) -> list[BenchResult]:
    """The results that ran ``--sustained``."""
    return [r for r in results if getattr(r, "sustained", None) and r.sustained.get("t_s")]


def caption(r: BenchResult) -> str:
    """One line per run: window p50s, throttle_ratio, window choice, temperature availability."""
    s = r.sustained or {}
    ratio = s.get("throttle_ratio")
    temp = (s.get("not_measured") or {}).get("temperature")
    head = f"{r.model} {r.format}/{r.precision} {r.runtime}@{r.device} t{r.threads}"
    body = (
        f"{s.get('iterations')} iterations in {s.get('duration_s', 0):.0f} s; p50 "
        f"{s.get('first_window_p50_ms', 0):.2f} → {s.get('last_window_p50_ms', 0):.2f} ms, throttle_ratio "
        + ("n/a" if ratio is None else f"{ratio:.3f}")
    )
    return f"{head}: {body} ({s.get('window_note')})" + (f"; temperature not measured: {temp}." if temp else ".")


def plot_sustained(results: Sequence[BenchResult], figure: Any) -> Any:
    """Draw the sustained runs of ``results`` on a new ``figure(width, height)``; returns the figure."""
    runs = sustained_results(results)
    fig = figure(10.0, 2.8 * max(1, len(runs)))
    axes = fig.subplots(max(1, len(runs)), 2, squeeze=False, width_ratios=[3, 2])
    for (ax_l, ax_t), r in zip(axes, runs, strict=False):
        s = r.sustained
        t, ms = s["t_s"], r.samples_ms[: len(s["t_s"])]
        ax_l.plot(t, ms, ".", markersize=2, alpha=0.6, color="#1f77b4")
        w, dur = s["window_s"], s["duration_s"]
        ax_l.axvspan(0, w, color="#2ca02c", alpha=0.08)
        ax_l.axvspan(dur - w, dur, color="#d62728", alpha=0.08)
        ax_l.hlines([s["first_window_p50_ms"]], 0, w, colors="#2ca02c", label="first-window p50")
        ax_l.hlines([s["last_window_p50_ms"]], dur - w, dur, colors="#d62728", label="last-window p50")
        ax_l.set_xlabel("time (s)")
        ax_l.set_ylabel("latency (ms)")
        ax_l.set_title(f"{r.model} {r.format}/{r.precision} {r.runtime}@{r.device}", fontsize=9)
        ax_l.legend(fontsize=7, loc="upper right")
        pts = [(e["t_s"], max(e["temp_c"].values())) for e in s.get("thermal_trace") or [] if e.get("temp_c")]
        if pts:
            ax_t.plot([p[0] for p in pts], [p[1] for p in pts], "-", color="#ff7f0e")
            ax_t.set_ylabel("hottest zone (°C)")
        else:
            why = (s.get("not_measured") or {}).get("temperature") or "no reading"
            ax_t.text(0.5, 0.5, "temperature not measured:\n" + why, ha="center", va="center", fontsize=8, wrap=True,
                      transform=ax_t.transAxes)  # fmt: skip
            ax_t.set_yticks([])
        ax_t.set_xlim(0, dur)
        ax_t.set_xlabel("time (s)")
        ax_t.set_title("temperature", fontsize=9)
    return fig
