"""The timing harness's own overhead against the runtime's tightest loop, on a ~1 ms model.

Three ways to time the same onnxruntime session on the same input, interleaved in one process:

* ``tight``   — ``for _ in range(N): run(names, feed)``, timed as a whole; per-iteration = total / N;
* ``harness`` — :func:`edgedeploy.bench.harness.measure` (a clock read around every call, samples kept);
* ``harness+progress`` — the same with an ``on_sample`` callback, as the CLI's progress bar uses.

The overhead is ``median(harness per-iteration) − median(tight per-iteration)`` in µs. Usage::

    python benchmarks/harness_overhead.py [--rounds 20] [--iterations 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine_description, machine_markdown, write_results
from torch import nn

from edgedeploy.bench.harness import measure
from edgedeploy.export.onnx import torch_to_onnx
from edgedeploy.runtimes.base import get_runtime


def small_model() -> nn.Module:
    """A small conv net whose batch-1 inference takes about 1 ms here (1 thread, 96×96)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1000),
    ).eval()  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--iterations", type=int, default=200)
    args = p.parse_args()
    machine = machine_description()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "small.onnx"
        torch_to_onnx(small_model(), torch.zeros(1, 3, 96, 96), path)
        session = get_runtime("onnxruntime").load(path, threads=1)
        x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
        infer = session.prepare(x)
        for _ in range(50):
            infer()
        tight, harness, progress = [], [], []
        ticks = []
        for _ in range(args.rounds):
            t0 = time.perf_counter_ns()
            for _ in range(args.iterations):
                infer()
            tight.append((time.perf_counter_ns() - t0) / 1e6 / args.iterations)
            harness.append(float(np.mean(measure(infer, args.iterations, warmup=0).samples_ms)))
            progress.append(
                float(np.mean(measure(infer, args.iterations, 0, on_sample=lambda i, ms: ticks.append(i)).samples_ms))
            )
    med = {k: float(np.median(v)) for k, v in (("tight", tight), ("harness", harness), ("progress", progress))}
    over_us = (med["harness"] - med["tight"]) * 1e3
    over_p_us = (med["progress"] - med["tight"]) * 1e3
    print(f"tight loop       {med['tight'] * 1e3:8.1f} µs/iteration")
    print(f"harness          {med['harness'] * 1e3:8.1f} µs/iteration  (overhead {over_us:+.1f} µs)")
    print(f"harness+callback {med['progress'] * 1e3:8.1f} µs/iteration  (overhead {over_p_us:+.1f} µs)")
    md = (
        "# Timing-harness overhead (onnxruntime, 1 thread, small conv net at 96×96)\n\n"
        + machine_markdown(machine)
        + f"\n{args.rounds} rounds × {args.iterations} iterations per method, interleaved; medians over rounds of "
        "the per-iteration mean (the tight loop cannot give per-iteration samples; the harness's samples exclude "
        "the loop itself, so the comparison is of means).\n\n"
        "| method | per iteration (µs) | overhead vs tight loop (µs) | overhead (%) |\n|---|---|---|---|\n"
        f"| tight loop | {med['tight'] * 1e3:.1f} | – | – |\n"
        f"| harness.measure | {med['harness'] * 1e3:.1f} | {over_us:+.1f} | {over_us / med['tight'] / 10:+.2f} |\n"
        f"| harness.measure + on_sample | {med['progress'] * 1e3:.1f} | {over_p_us:+.1f} | "
        f"{over_p_us / med['tight'] / 10:+.2f} |\n"
    )
    write_results(
        "harness_overhead",
        {"machine": machine, "args": vars(args), "tight_ms": tight, "harness_ms": harness, "progress_ms": progress},
        md,
    )
    print(md)


if __name__ == "__main__":
    main()
