"""Power of the interleaved sequential A/B (``edgedeploy ab``) vs the old ``compare`` (best of 3 runs per side).

What it does
------------
For each model (a ~5 ms ABNet and EdgeFormer-S, onnxruntime, batch 1, ``--threads``):

1. builds the baseline ``with_extra_blocks(net, 0)`` (the net plus an ABNet side branch with no blocks) and
   slowed variants with ``k`` extra side-branch blocks — REAL graph changes, not busy-waits. ``k`` for a nominal
   +p % comes from a probe: the measured cost of ``--probe-blocks`` blocks (interleaved A/B of base vs probe).
   The slowdown each variant really gives is measured over its trials (median block ratio) and reported;
2. loads every variant once (plus a second session of the baseline for A/A) and runs, in a shuffled order,
   ``--aa`` A/A trials and ``--per-slowdown`` trials per slowdown. Each trial is
   * one sequential ``ab`` (``edgedeploy.results.ab``'s rule: t-interval on log block ratios, ``--threshold``
     band, ``--confidence``, blocks of ~``--block-ms`` per side, capped at ``--max-seconds``), and
   * the old way on the same pair right after: 3 runs of the baseline, then 3 of the candidate
     (``harness.measure``, ``--iterations`` each after ``--warmup``), judged by ``compare_results`` with its
     defaults and ``aggregate="fastest"`` (what the CI workflow did with RUNS=3);
3. reports per condition: false alarms (A/A trials flagged ``regression``), detection rate, the other verdicts,
   and median / p95 seconds per verdict (timing only; loading is done once).

The rates come from independent trials; with N trials a 0/N false-alarm count bounds the rate only to about
3/N (95 %). Usage::

    python benchmarks/ab_power.py                                 # the issue's counts (>= 200 A/A, >= 100 each)
    python benchmarks/ab_power.py --aa 40 --per-slowdown 20 --edgeformer-aa 10 --edgeformer-per-slowdown 5 \
        --name ab_power_shared
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, load_note, machine_description, write_results

from edgedeploy.bench.ab import BlockPlan, run_interleaved
from edgedeploy.bench.harness import measure
from edgedeploy.bench.run import resolve_target
from edgedeploy.results.ab import load_local, stop_rule
from edgedeploy.results.ab_verdict import ABRule, block_ratio, evaluate
from edgedeploy.results.compare import RegressionRule, compare_results
from edgedeploy.results.result import BenchResult

SLOWDOWNS = (3.0, 5.0, 10.0)


def build(model: str, size: int) -> tuple[Any, int]:
    from edgedeploy.nn.abnet import abnet

    if model == "abnet":
        return abnet(0, blocks=60), 100
    from edgedeploy.spec import resolve_model

    src = resolve_model(model, input_size=size)
    return src.build(None).eval(), 1000


def export(model: str, extra: int, size: int, threads: int) -> Any:
    from edgedeploy.nn.abnet import with_extra_blocks

    net, classes = build(model, size)
    t = resolve_target(
        with_extra_blocks(net, extra, classes=classes),
        "onnxruntime",
        input_shape=(1, 3, size, size),
        name=f"abpower_{model}_{size}_x{extra}",
    )
    return load_local(t, threads)[0]


def ab_trial(base: Any, cand: Any, rule: ABRule, plan: BlockPlan) -> dict[str, Any]:
    t = run_interleaved(base, cand, plan, stop_rule(rule))
    ratios = [block_ratio(b, c) for b, c in zip(t.baseline, t.candidate, strict=True)]
    est = evaluate(ratios, rule, final=True)
    verdict = est.verdict if t.stopped == "rule" else "inconclusive"
    return {
        "verdict": verdict,
        "ratio": est.ratio,
        "ci": [est.ci_low, est.ci_high],
        "blocks": len(ratios),
        "block_size": t.block_size,
        "seconds": t.elapsed_s,
        "median_block_ratio": statistics.median(ratios),
    }


def compare_trial(base: Any, cand: Any, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    sides = {}
    for name, infer in (("baseline", base), ("candidate", cand)):
        sides[name] = [
            BenchResult(
                model="m",
                format="onnx",
                runtime="onnxruntime",
                device="local",
                threads=args.threads,
                iterations=args.iterations,
                warmup=args.warmup,
                samples_ms=measure(infer, args.iterations, args.warmup).samples_ms,
            )
            for _ in range(3)
        ]
    rep = compare_results(sides["baseline"], sides["candidate"], RegressionRule(aggregate="fastest"))
    return {"verdict": rep.rows[0].verdict, "seconds": time.monotonic() - t0}


def probe_k(base: Any, probe: Any, probe_blocks: int, rule: ABRule) -> tuple[float, float]:
    """(ms of the baseline, % slowdown per extra block), from an interleaved run of base vs the probe."""
    t = run_interleaved(base, probe, BlockPlan(block_ms=100, max_seconds=15, max_blocks=20), lambda b, c: False)
    ratios = [block_ratio(b, c) for b, c in zip(t.baseline, t.candidate, strict=True)]
    base_ms = statistics.median([s for b in t.baseline for s in b])
    return base_ms, (statistics.median(ratios) - 1) * 100 / probe_blocks


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def summarize(trials: list[dict[str, Any]], method: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cond in sorted({t["condition"] for t in trials}, key=lambda c: (c != "A/A", c)):
        rs = [t[method] for t in trials if t["condition"] == cond]
        vs = [r["verdict"] for r in rs]
        secs = [r["seconds"] for r in rs]
        out[cond] = {
            "trials": len(rs),
            **{v: vs.count(v) for v in sorted(set(vs))},
            "regression_rate": vs.count("regression") / len(rs),
            "median_s": _pct(secs, 0.5),
            "p95_s": _pct(secs, 0.95),
        }
        if method == "ab":
            out[cond]["achieved_pct"] = (statistics.median([r["median_block_ratio"] for r in rs]) - 1) * 100
    return out


def run_model(
    model: str,
    size: int,
    counts: tuple[int, int],
    args: argparse.Namespace,
    checkpoint: Callable[[dict[str, Any]], None],
    load_samples: list[float],
) -> dict[str, Any]:
    """Run one model's shuffled A/A + slowdown trials; ``checkpoint`` gets the partial result every 10 trials."""
    n_aa, n_per = counts
    rule = ABRule(args.threshold, args.confidence)
    plan = BlockPlan(block_ms=args.block_ms, max_seconds=args.max_seconds)
    print(f"== {model} at {size}: exporting …", flush=True)
    base = export(model, 0, size, args.threads)
    base2 = export(model, 0, size, args.threads)
    probe = export(model, args.probe_blocks, size, args.threads)
    base_ms, per_block = probe_k(base, probe, args.probe_blocks, rule)
    ks = {f"+{p:g}%": max(1, math.ceil(p / per_block)) for p in SLOWDOWNS}  # at least the nominal slowdown
    print(f"   baseline {base_ms:.2f} ms; {per_block:.3f} % per extra block -> extra blocks {ks}", flush=True)
    sessions = {"A/A": base2, **{c: export(model, k, size, args.threads) for c, k in ks.items()}}
    conds = ["A/A"] * n_aa + [c for c in ks for _ in range(n_per)]
    random.Random(args.seed).shuffle(conds)
    trials: list[dict[str, Any]] = []
    t_start = time.monotonic()

    def result() -> dict[str, Any]:
        return {
            "model": model,
            "input_size": size,
            "baseline_ms": base_ms,
            "percent_per_extra_block": per_block,
            "extra_blocks": ks,
            "planned_trials": len(conds),
            "trials": trials,
            "ab": summarize(trials, "ab"),
            "compare": summarize(trials, "compare") if not args.no_compare else None,
            "wall_s": time.monotonic() - t_start,
        }

    for i, cond in enumerate(conds):
        trial = {"condition": cond, "ab": ab_trial(base, sessions[cond], rule, plan)}
        if not args.no_compare:
            trial["compare"] = compare_trial(base, sessions[cond], args)
        trials.append(trial)
        if (i + 1) % 10 == 0:
            load_samples.append(os.getloadavg()[0])
            print(
                f"   {i + 1}/{len(conds)} trials, {time.monotonic() - t_start:.0f} s, load {load_samples[-1]:.2f}",
                flush=True,
            )
            checkpoint(result())  # an interrupted run keeps every finished trial (results marked partial)
    return result()


def _rate(k: int, n: int) -> str:
    """``k/n`` as a percentage with its exact 95 % interval (Clopper–Pearson, scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k / n:.1%} ({k}/{n}) [{ci.low:.1%}, {ci.high:.1%}]"


def plot(payload: dict[str, Any], path: Path) -> None:
    """The power curve: share flagged ``regression`` vs the achieved slowdown, ``ab`` and ``compare``, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import binomtest

    fig, axes = plt.subplots(1, len(payload["models"]), figsize=(5 * len(payload["models"]), 3.6), squeeze=False)
    for ax, res in zip(axes[0], payload["models"], strict=True):
        for method, style in (("ab", "o-"), ("compare", "s--")):
            summ = res.get(method) or {}
            pts = sorted(
                (0.0 if c == "A/A" else res["ab"][c]["achieved_pct"], v.get("regression", 0), v["trials"])
                for c, v in summ.items()
            )
            if not pts:
                continue
            xs = [x for x, _, _ in pts]
            ys = [100 * k / n for _, k, n in pts]
            cis = [binomtest(k, n).proportion_ci(0.95, method="exact") for _, k, n in pts]
            err = [
                [y - 100 * c.low for y, c in zip(ys, cis, strict=True)],
                [100 * c.high - y for y, c in zip(ys, cis, strict=True)],
            ]
            label = "ab (interleaved, sequential)" if method == "ab" else "compare (best of 3 runs per side)"
            ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=3, label=label)
        ax.axvline(payload["args"]["threshold"], color="grey", lw=0.8, ls=":")
        ax.set(
            title=f"{res['model']} ({res['baseline_ms']:.1f} ms)",
            xlabel="achieved slowdown (%)",
            ylabel="flagged regression (%)",
            ylim=(-3, 103),
        )
        ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    a = payload["args"]
    lines = [
        "# A/B power: interleaved sequential `ab` vs `compare` (best of 3 runs per side)",
        "",
        f"Recorded {m['date']} by `benchmarks/ab_power.py` (commit {payload.get('commit') or '?'}).",
        "",
        "## Machine, load and counts",
        "",
        f"- CPU: {m.get('cpu_model')} ({m.get('cores')} logical CPUs, shared VM); {m.get('platform')}",
        f"- Python {m.get('python')}, onnxruntime {payload.get('onnxruntime')}; threads = {a['threads']}",
        f"- load: {payload['load_note']}; 1-min load average sampled during the run: "
        f"min {min(payload['load_samples']):.2f}, median {statistics.median(payload['load_samples']):.2f}, "
        f"max {max(payload['load_samples']):.2f} on the whole machine; this run's CPU affinity "
        f"{payload.get('affinity', '?')}",
        f"- `ab`: band ±{a['threshold']:g} %, confidence {a['confidence']}, blocks of ~{a['block_ms']:g} ms per side, "
        f"min 6 blocks, cap {a['max_seconds']:g} s per verdict (then `inconclusive`)",
        f"- `compare`: 3 runs × {a['iterations']} iterations (warm-up {a['warmup']}) per side, baseline runs first, "
        "fastest run per side, default rule (threshold 10 %, alpha 0.01, Mann–Whitney)",
        "- slowdowns: extra blocks of a real ABNet side branch (graph changes, not busy-waits); `achieved` is the "
        "median block ratio measured over that condition's trials",
        f"- wall time {payload['wall_s']:.0f} s"
        + (" — PARTIAL: the run was stopped before all planned trials finished" if payload.get("partial") else ""),
        "",
    ]
    for res in payload["models"]:
        lines += [
            f"## {res['model']} (input {res['input_size']}², baseline {res['baseline_ms']:.2f} ms)",
            "",
            "counts: "
            + ", ".join(f"{c}: {v['trials']}" for c, v in res["ab"].items())
            + f" ({len(res['trials'])} of {res.get('planned_trials', len(res['trials']))} planned trials); "
            f"extra blocks per slowdown {res['extra_blocks']}",
            "",
            "| condition | achieved | `ab` flagged | `ab` unchanged / improvement / inconclusive | `ab` median s | "
            "`ab` p95 s | `compare` flagged | `compare` median s |",
            "|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for cond, s in res["ab"].items():
            c = (res["compare"] or {}).get(cond, {})
            ach = "0" if cond == "A/A" else f"{s['achieved_pct']:+.1f} %"
            cmp_ = f"{_rate(c.get('regression', 0), c['trials'])}" if c else "–"
            cmp_s = f"{c['median_s']:.1f}" if c else "–"
            lines.append(
                f"| {cond} | {ach} | {_rate(s.get('regression', 0), s['trials'])} | "
                f"{s.get('unchanged', 0)} / {s.get('improvement', 0)} / {s.get('inconclusive', 0)} | "
                f"{s['median_s']:.1f} | {s['p95_s']:.1f} | {cmp_} | {cmp_s} |"
            )
        lines.append("")
    lines += [
        "False alarms = the A/A row's flagged share; detection = the slowdown rows' flagged share; [a, b] is the "
        "exact (Clopper–Pearson) 95 % interval of the rate from that many independent trials.",
        "",
    ]
    return "\n".join(lines)


#: numeric options: (flag, type, default, help); the defaults are the issue's counts and the CLI's `ab` rule
NUMERIC_OPTIONS: tuple[tuple[str, type, float, str], ...] = (
    ("--aa", int, 200, "A/A trials, small model"),
    ("--per-slowdown", int, 100, "trials per slowdown, small model"),
    ("--edgeformer-aa", int, 200, ""),
    ("--edgeformer-per-slowdown", int, 100, ""),
    ("--edgeformer-size", int, 256, ""),
    ("--small-size", int, 128, "ABNet input side (~5 ms at 1 thread here)"),
    ("--threads", int, 1, ""),
    ("--threshold", float, 3.0, ""),
    ("--confidence", float, 0.99, ""),
    ("--block-ms", float, 100.0, ""),
    ("--max-seconds", float, 60.0, ""),
    ("--iterations", int, 100, ""),
    ("--warmup", int, 10, ""),
    ("--probe-blocks", int, 20, ""),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag, kind, default, text in NUMERIC_OPTIONS:
        ap.add_argument(flag, type=kind, default=default, help=text or None)
    ap.add_argument("--no-compare", action="store_true")
    ap.add_argument("--skip-edgeformer", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="ab_power")
    ap.add_argument("--replot", action="store_true", help="re-render <name>.md / .png from <name>.json, no timing")
    args = ap.parse_args()
    if args.replot:
        saved = json.loads((RESULTS / f"{args.name}.json").read_text())
        write_results(args.name, saved, markdown(saved))
        plot(saved, RESULTS / f"{args.name}.png")
        return
    import subprocess

    import onnxruntime

    load_samples = [os.getloadavg()[0]]
    start = time.monotonic()
    m0 = machine_description()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    done: list[dict[str, Any]] = []

    def payload(models: list[dict[str, Any]], partial: bool) -> dict[str, Any]:
        return {
            "machine": m0,
            "args": vars(args),
            "partial": partial,
            "models": models,
            "wall_s": time.monotonic() - start,
            "load_samples": load_samples,
            "load_note": load_note(max(load_samples), load_samples[-1], os.cpu_count() or 1),
            "onnxruntime": onnxruntime.__version__,
            "commit": commit,
            "affinity": sorted(os.sched_getaffinity(0)),
        }

    def checkpoint(current: dict[str, Any]) -> None:
        p = payload([*done, current], partial=True)
        write_results(args.name, p, markdown(p))

    plan = [("abnet", args.small_size, (args.aa, args.per_slowdown))]
    if not args.skip_edgeformer:
        plan.append(("edgeformer_s", args.edgeformer_size, (args.edgeformer_aa, args.edgeformer_per_slowdown)))
    for model, size, counts in plan:
        done.append(run_model(model, size, counts, args, checkpoint, load_samples))
    load_samples.append(os.getloadavg()[0])
    final = payload(done, partial=False)
    md = markdown(final)
    write_results(args.name, final, md)
    plot(final, RESULTS / f"{args.name}.png")
    print(md)


if __name__ == "__main__":
    main()
