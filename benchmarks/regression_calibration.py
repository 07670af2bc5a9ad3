"""Calibrate the latency regression rule on THIS machine: A/A false-alarm rate and detection of real slowdowns.

What it does
------------
1. Builds a small real conv net (depthwise-separable stages, ~MobileNet-like), exports it with
   ``torch.onnx.export`` (legacy exporter, opset 17) and runs it with onnxruntime (batch 1, ``--threads``).
2. Estimates the quiet-phase median ``m0`` (the lowest of a few run medians) and sizes injected slowdowns of
   ``--slowdowns`` % of ``m0``. A slowdown is injected FOR REAL: a calibrated busy-wait on ``perf_counter_ns``
   added inside the timed call, after the real inference (never by scaling numbers).
3. Runs ``--rounds`` rounds; each round runs, in a shuffled order, ``--aa-per-round`` unchanged runs (condition
   ``A``) and one run per slowdown; every run is ``edgedeploy.bench.harness.measure(infer, iterations, warmup)``,
   separated by random pauses of up to ``--gap`` s so the runs spread over the host's quiet and slow phases.
4. Evaluates the rule (:func:`edgedeploy.results.compare.decide` on Mann–Whitney p, median change and median
   difference) over a grid of thresholds and alphas, for seven ways of using it in CI:

   * ``single``: one baseline run vs one current run (baseline earlier in time);
   * ``confirm``: as ``single``, but a flagged pair counts only if the NEXT run of the same condition (the
     ``--confirm`` re-run) is flagged against the same baseline too;
   * ``best3+confirm``: the baseline is the fastest of three consecutive unchanged runs (what a baseline saved
     from three ``bench`` runs gives with ``aggregate="fastest"``), plus ``--confirm``;
   * ``best3x3`` / ``best3x3+confirm``: both sides are the fastest of three runs (what the CI workflow does with
     ``RUNS=3``), without / with ``--confirm``;
   * ``interleaved`` / ``interleaved+confirm``: baseline and current measured in the same round, seconds apart
     (what benching main's artifact and the PR's artifact alternately in one CI job gives), without / with a
     re-run of both sides (the same pair one round later).

   The false-alarm rate is the share of A/A pairs flagged as regressions; the detection rate is the share of
   (A baseline, slowed current) pairs flagged. Pairs share runs, so they are not independent: the rates are
   unbiased per-comparison rates, but their uncertainty is larger than a binomial on the pair count suggests.
5. Writes the raw runs (``*_runs.json``), the summary (``.json``) and a Markdown table (``.md``).

Usage::

    python benchmarks/regression_calibration.py                       # full run, ~8 min
    python benchmarks/regression_calibration.py --rounds 4 --out /tmp/cal   # smoke run
    python benchmarks/regression_calibration.py --evaluate-only benchmarks/results/regression_calibration_runs.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.results.compare import DEFAULT_MIN_ABS_MS, RegressionRule, decide, mann_whitney_p

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "regression_calibration"
THRESHOLDS = [0.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0]
ALPHAS = [0.05, 0.01, 0.001]
STRATEGIES = ["single", "confirm", "best3+confirm", "best3x3", "best3x3+confirm", "interleaved", "interleaved+confirm"]
TARGET_FALSE_ALARM = 0.01


# ---------------------------------------------------------------- measurement


def build_model() -> Any:
    """A small real conv net: stem + 4 depthwise-separable stages + classifier, random init, eval mode."""
    import torch
    from torch import nn

    def dw_sep(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(),
        )

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU6(),
        dw_sep(32, 64, 1),
        dw_sep(64, 128, 2),
        dw_sep(128, 128, 1),
        dw_sep(128, 256, 2),
        dw_sep(256, 256, 1),
        dw_sep(256, 512, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, 1000),
    )
    return net.eval()


def export_onnx(model: Any, path: Path, size: int) -> None:
    import torch

    x = torch.randn(1, 3, size, size)
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"])


def make_infer(path: Path, threads: int, size: int) -> Callable[[], Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    name = sess.get_inputs()[0].name

    def infer() -> Any:
        return sess.run(None, {name: x})

    return infer


def with_busy_wait(infer: Callable[[], Any], extra_ns: int) -> Callable[[], Any]:
    """``infer`` followed by a busy-wait of ``extra_ns`` wall-clock ns, inside the timed call (a real slowdown)."""
    clock = time.perf_counter_ns

    def slowed() -> Any:
        out = infer()
        end = clock() + extra_ns
        while clock() < end:
            pass
        return out

    return slowed


def machine_description() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime
    import torch

    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "loadavg_at_start": list(load),
        "git_commit": commit,
    }


def collect(args: argparse.Namespace) -> dict[str, Any]:
    from edgedeploy.bench.harness import measure

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calib_net.onnx"
        export_onnx(build_model(), path, args.size)
        infer = make_infer(path, args.threads, args.size)
        prelim = [float(np.median(measure(infer, args.iterations, args.warmup).samples_ms)) for _ in range(5)]
        m0 = min(prelim)
        conditions: dict[str, Callable[[], Any]] = {"A": infer}
        inject_ms: dict[str, float] = {"A": 0.0}
        for pct in args.slowdowns:
            name = f"S{pct:g}"
            inject_ms[name] = m0 * pct / 100.0
            conditions[name] = with_busy_wait(infer, round(inject_ms[name] * 1e6))
        print(f"quiet median m0 = {m0:.3f} ms (prelim run medians {[round(p, 3) for p in prelim]})", flush=True)
        runs: list[dict[str, Any]] = []
        t_start = time.time()
        for rnd in range(args.rounds):
            order = ["A"] * args.aa_per_round + [c for c in conditions if c != "A"]
            rng.shuffle(order)
            for cond in order:
                time.sleep(rng.uniform(0, args.gap))
                t0 = time.time() - t_start
                timing = measure(conditions[cond], args.iterations, args.warmup)
                runs.append(
                    {
                        "condition": cond,
                        "round": rnd,
                        "t_s": round(t0, 3),
                        "samples_ms": [round(s, 4) for s in timing.samples_ms],
                    }
                )
            meds = {c: np.median([np.median(r["samples_ms"]) for r in runs if r["condition"] == c]) for c in conditions}
            print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(f"{c} {m:.3f}" for c, m in meds.items()), flush=True)
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "settings": {
            "model": "calib_net (stem + 6 depthwise-separable blocks + 1000-way linear, MobileNetV1-like), random init",
            "input": [1, 3, args.size, args.size],
            "runtime": f"onnxruntime CPUExecutionProvider, intra_op_num_threads={args.threads}",
            "iterations": args.iterations,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "aa_per_round": args.aa_per_round,
            "gap_s_max": args.gap,
            "seed": args.seed,
            "duration_s": round(time.time() - t_start, 1),
        },
        "quiet_median_ms": m0,
        "prelim_medians_ms": prelim,
        "inject_ms": inject_ms,
        "runs": runs,
    }


# ---------------------------------------------------------------- evaluation


class PairStats:
    """Cached (p, change %, diff ms) of (baseline run(s), current run) pairs."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.samples = [np.asarray(r["samples_ms"], dtype=np.float64) for r in runs]
        self.medians = [float(np.median(s)) for s in self.samples]
        self.cache: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[float, float, float]] = {}

    def get(self, base: tuple[int, ...], cur: tuple[int, ...]) -> tuple[float, float, float]:
        key = (base, cur)
        if key not in self.cache:
            b = min(base, key=lambda i: self.medians[i])  # fastest run of each side (aggregate="fastest")
            c = min(cur, key=lambda i: self.medians[i])
            x, y = self.samples[b], self.samples[c]
            mx, my = float(np.median(x)), float(np.median(y))
            self.cache[key] = (mann_whitney_p(x, y), (my / mx - 1.0) * 100.0, my - mx)
        return self.cache[key]


def _pairs(
    runs: list[dict[str, Any]], cond: str, strategy: str
) -> list[tuple[tuple[int, ...], tuple[int, ...], int | None]]:
    """(baseline runs, current runs, confirming re-run or None) for ``cond`` under ``strategy``.

    The baseline is ``k`` consecutive unchanged runs (k = 3 for ``best3*``), the current side 1 run (3 consecutive
    runs for ``best3x3*``) of ``cond`` that all come later; the re-run is the next run of ``cond`` after them.
    """
    if strategy.startswith("interleaved"):
        return _interleaved_pairs(runs, cond, strategy.endswith("confirm"))
    a_idx = [i for i, r in enumerate(runs) if r["condition"] == "A"]
    c_idx = [i for i, r in enumerate(runs) if r["condition"] == cond]
    kb = 3 if strategy.startswith("best3") else 1
    kc = 3 if strategy.startswith("best3x3") else 1
    confirm = strategy.endswith("confirm")
    out: list[tuple[tuple[int, ...], tuple[int, ...], int | None]] = []
    for s in range(0, len(a_idx) - kb + 1):
        base = tuple(a_idx[s : s + kb])
        later = [j for j in c_idx if j > base[-1]]
        for n in range(0, len(later) - kc + 1):
            cur = tuple(later[n : n + kc])
            if not confirm:
                out.append((base, cur, None))
            elif n + kc < len(later):
                out.append((base, cur, later[n + kc]))
    return out


def _interleaved_pairs(
    runs: list[dict[str, Any]], cond: str, confirm: bool
) -> list[tuple[tuple[int, ...], tuple[int, ...], int | None]]:
    """Baseline and current measured in the same round (seconds apart, shuffled order): the first unchanged run
    of round r vs the second unchanged run (A/A) or the ``cond`` run of round r. With ``confirm`` the same pair of
    round r+1 must be flagged too (a re-run of both sides); the confirming pair is encoded as a negative index."""
    by_round: dict[int, dict[str, list[int]]] = {}
    for i, r in enumerate(runs):
        by_round.setdefault(r["round"], {}).setdefault(r["condition"], []).append(i)

    def pair(rnd: int) -> tuple[int, int] | None:
        g = by_round.get(rnd, {})
        a = g.get("A", [])
        if cond == "A":
            return (a[0], a[1]) if len(a) >= 2 else None
        return (a[0], g[cond][0]) if a and g.get(cond) else None

    out: list[tuple[tuple[int, ...], tuple[int, ...], int | None]] = []
    for rnd in sorted(by_round):
        p = pair(rnd)
        if p is None:
            continue
        if not confirm:
            out.append(((p[0],), (p[1],), None))
        elif (q := pair(rnd + 1)) is not None:
            _CONFIRM_PAIRS[(p, rnd)] = q
            out.append(((p[0],), (p[1],), -(rnd + 1)))
    return out


_CONFIRM_PAIRS: dict[tuple[tuple[int, int], int], tuple[int, int]] = {}


def _confirm_stats(ps: PairStats, base: tuple[int, ...], cur: tuple[int, ...], nxt: int) -> tuple[float, float, float]:
    """Stats of the confirming comparison: ``nxt >= 0`` is a re-run of the current side against the same baseline;
    ``nxt < 0`` encodes an interleaved re-run of both sides (the pair of round ``-nxt``)."""
    if nxt >= 0:
        return ps.get(base, (nxt,))
    q = _CONFIRM_PAIRS[((base[0], cur[0]), -nxt - 1)]
    return ps.get((q[0],), (q[1],))


def evaluate(data: dict[str, Any], min_abs_ms: float = DEFAULT_MIN_ABS_MS) -> dict[str, Any]:
    runs = data["runs"]
    ps = PairStats(runs)
    conds = sorted({r["condition"] for r in runs}, key=lambda c: (c != "A", float(c[1:]) if c != "A" else 0.0))
    grid: list[dict[str, Any]] = []
    pairs = {(c, st): _pairs(runs, c, st) for c in conds for st in STRATEGIES}
    for st in STRATEGIES:
        for alpha in ALPHAS:
            for thr in THRESHOLDS:
                rule = RegressionRule(threshold_pct=thr, alpha=alpha, min_abs_ms=min_abs_ms)
                row: dict[str, Any] = {"strategy": st, "alpha": alpha, "threshold_pct": thr}
                for c in conds:
                    flagged = 0
                    plist = pairs[(c, st)]
                    for base, j, nxt in plist:
                        if decide(*ps.get(base, j), rule) != "regression":
                            continue
                        if nxt is not None and decide(*_confirm_stats(ps, base, j, nxt), rule) != "regression":
                            continue
                        flagged += 1
                    row[c] = {"pairs": len(plist), "flagged": flagged, "rate": flagged / len(plist) if plist else None}
                grid.append(row)
    # Phase census: a run is "slow" if its median exceeds 1.2x the 10th percentile of its condition's run medians.
    census: dict[str, Any] = {}
    for c in conds:
        meds = np.array([ps.medians[i] for i, r in enumerate(runs) if r["condition"] == c])
        ref = float(np.percentile(meds, 10))
        census[c] = {
            "runs": int(meds.size),
            "slow_runs": int((meds > 1.2 * ref).sum()),
            "median_of_run_medians_ms": float(np.median(meds)),
            "p10_run_median_ms": ref,
            "max_run_median_ms": float(meds.max()),
        }
    # Achieved slowdown in quiet phases: lower-half run medians of each condition vs those of A.
    quiet = {
        c: float(
            np.median(
                np.sort([ps.medians[i] for i, r in enumerate(runs) if r["condition"] == c])[
                    : max(1, sum(1 for r in runs if r["condition"] == c) // 2)
                ]
            )
        )
        for c in conds
    }
    achieved = {c: (quiet[c] / quiet["A"] - 1.0) * 100.0 for c in conds if c != "A"}
    chosen = choose_defaults(grid, conds)
    return {
        "grid": grid,
        "census": census,
        "achieved_quiet_slowdown_pct": achieved,
        "chosen": chosen,
        "min_abs_ms": min_abs_ms,
        "conditions": conds,
    }


def choose_defaults(grid: list[dict[str, Any]], conds: list[str]) -> dict[str, Any]:
    """Per strategy: the smallest threshold (and, at it, the largest alpha) whose A/A false-alarm rate is at most
    :data:`TARGET_FALSE_ALARM`; if none reaches it, the cell with the lowest false-alarm rate."""
    out: dict[str, Any] = {}
    for st in STRATEGIES:
        cells = [g for g in grid if g["strategy"] == st and g["A"]["rate"] is not None]
        ok = [g for g in cells if g["A"]["rate"] <= TARGET_FALSE_ALARM]
        if not cells:
            continue
        if ok:
            best = min(ok, key=lambda g: (g["threshold_pct"], -g["alpha"]))
            met = True
        else:
            best = min(cells, key=lambda g: (g["A"]["rate"], g["threshold_pct"], -g["alpha"]))
            met = False
        out[st] = {
            "threshold_pct": best["threshold_pct"],
            "alpha": best["alpha"],
            "target_met": met,
            "false_alarm": best["A"],
            **{c: best[c] for c in conds if c != "A"},
        }
    return out


def _pct(cell: dict[str, Any]) -> str:
    if cell["rate"] is None:
        return "n/a"
    return f"{100 * cell['rate']:.1f} % ({cell['flagged']}/{cell['pairs']})"


def markdown(data: dict[str, Any], ev: dict[str, Any]) -> str:
    m, s = data["machine"], data["settings"]
    conds = ev["conditions"]
    slow = [c for c in conds if c != "A"]
    lines = [
        "# Regression-rule calibration",
        "",
        f"Recorded {data['created']} by `benchmarks/regression_calibration.py` (commit {m.get('git_commit') or '?'}).",
        "",
        "## Machine and set-up",
        "",
        f"- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs, shared VM); {m['platform']}",
        f"- Python {m['python']}, numpy {m['numpy']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}",
        f"- load average at start: {', '.join(f'{v:.2f}' for v in m['loadavg_at_start'])}",
        _noise_caveat(m),
        f"- model: {s['model']}, input {s['input']}, {s['runtime']}",
        f"- each run: `harness.measure(infer, iterations={s['iterations']}, warmup={s['warmup']})`;"
        f" {s['rounds']} rounds × ({s['aa_per_round']} unchanged runs + one run per slowdown), shuffled,"
        f" random pauses ≤ {s['gap_s_max']} s; total {s['duration_s']} s",
        f"- quiet-phase median m0 = {data['quiet_median_ms']:.3f} ms; injected busy-wait per call: "
        + ", ".join(f"{c} = {data['inject_ms'][c]:.3f} ms" for c in slow),
        "- achieved slowdown (median of the faster half of run medians vs unchanged): "
        + ", ".join(f"{c}: {v:+.1f} %" for c, v in ev["achieved_quiet_slowdown_pct"].items()),
        f"- absolute floor used: min_abs_ms = {ev['min_abs_ms']} ms",
        "",
        "## Phase census (runs whose median exceeds 1.2 × the condition's 10th-percentile run median)",
        "",
        "| condition | runs | slow runs | p10 run median (ms) | median run median (ms) | max run median (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in conds:
        k = ev["census"][c]
        lines.append(
            f"| {c} | {k['runs']} | {k['slow_runs']} | {k['p10_run_median_ms']:.3f} | "
            f"{k['median_of_run_medians_ms']:.3f} | {k['max_run_median_ms']:.3f} |"
        )
    lines += [
        "",
        f"## Chosen operating points (smallest threshold with A/A false alarms ≤ {100 * TARGET_FALSE_ALARM:.0f} %)",
        "",
        "| strategy | threshold | alpha | target met | A/A false alarms | "
        + " | ".join(f"detect {c}" for c in slow)
        + " |",
        "|---|---:|---:|---|---:|" + "---:|" * len(slow),
    ]
    for st, ch in ev["chosen"].items():
        lines.append(
            f"| {st} | {ch['threshold_pct']:g} % | {ch['alpha']:g} | {'yes' if ch['target_met'] else 'NO'} | "
            f"{_pct(ch['false_alarm'])} | " + " | ".join(_pct(ch[c]) for c in slow) + " |"
        )
    for st in STRATEGIES:
        lines += [
            "",
            f"## Full grid: {st}",
            "",
            "| alpha | threshold | A/A false alarms | " + " | ".join(f"detect {c}" for c in slow) + " |",
            "|---:|---:|---:|" + "---:|" * len(slow),
        ]
        for g in ev["grid"]:
            if g["strategy"] != st:
                continue
            lines.append(
                f"| {g['alpha']:g} | {g['threshold_pct']:g} % | {_pct(g['A'])} | "
                + " | ".join(_pct(g[c]) for c in slow)
                + " |"
            )
    lines.append("")
    return "\n".join(lines)


def _noise_caveat(m: dict) -> str:
    """What the load average at start says about interference (measured, not assumed)."""
    load1 = m["loadavg_at_start"][0]
    cpus = m["logical_cpus"] or 1
    if load1 > 0.5 * cpus:
        return (
            f"- **Noise caveat**: the 1-minute load average at start was {load1:.2f} on {cpus} CPUs: other jobs shared "
            "the cores while this ran, on top of the host's own quiet/slow phases; the rates are for a loaded machine."
        )
    return (
        f"- Interference: the 1-minute load average at start was {load1:.2f} on {cpus} CPUs (no other job running); "
        "the slow runs counted below are the host's own quiet/slow phases."
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--aa-per-round", type=int, default=2)
    ap.add_argument("--slowdowns", type=float, nargs="+", default=[5.0, 10.0, 20.0], help="injected slowdowns, %%")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=224, help="input height = width")
    ap.add_argument("--gap", type=float, default=2.0, help="max random pause between runs, s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output path stem (.json, .md, _runs.json)")
    ap.add_argument("--evaluate-only", type=Path, help="re-evaluate a recorded *_runs.json without measuring")
    args = ap.parse_args(argv)
    if args.evaluate_only:
        data = json.loads(args.evaluate_only.read_text())
    else:
        data = collect(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}_runs.json").write_text(json.dumps(data, separators=(",", ":")))
    ev = evaluate(data)
    summary = {k: v for k, v in data.items() if k != "runs"}
    summary["evaluation"] = ev
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(summary, indent=1))
    md = markdown(data, ev)
    Path(f"{args.out}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
