"""The generic lowering on a user's own network: is the lowered export ever slower than what a user gets without us?

Run: ``python benchmarks/user_net_lowering.py [--blocks 12] [--iters 20] [--threads 2] [--name user_net_lowering]``
from the checkout. Writes ``benchmarks/results/<name>.json`` (every raw sample) and ``<name>.md``.

The network is ``tests/fixtures/user_gcc_net.py:build`` (its own GCC written with ``F.interpolate`` of a
meta-kernel + ``F.pad(mode="circular")`` + ``F.conv2d``, a ``torch.roll`` token shift, a circular 3×3 conv, a
per-pixel output), input ``(1, 3, 96, 160)``. Everything goes through the public API: ``edgedeploy.export(spec,
fmt, input_shape=…, lowering=…, opset=…)`` (parity checked; a variant that does not export is recorded with its
one-line error) and ``edgedeploy.bench(artifact, iterations=…, warmup=…, threads=…)``.

Variants per runtime: ``lowered`` (edgedeploy's default: generic passes, ONNX opset 17) against ``none``
(``--lowering none``, i.e. the module as written; ONNX needs opset 18 — the ``torch.export`` exporter — because
the default TorchScript exporter fails on the run-time kernel). For onnxruntime, ``lowered@18`` is also timed so
the lowering is compared with the same exporter. MNN and CoreML have no ``none`` variant when it does not export
(MNN refuses ``Pad(mode="wrap")``).

Method: variants are timed in interleaved blocks (the order reverses every block); each block is one
``edgedeploy.bench`` call per variant, ``iters`` timed batch-1 runs after 2 warm-ups. Reported: overall
medians, the median of per-block paired ratios (variant / lowered), and the number of slow blocks (a block median
above 1.3× the variant's fastest block median) — the machine is shared, so only paired ratios are meaningful.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    RESULTS,
    block_parser,
    cpu_flags,
    load_note,
    machine_description,
    machine_markdown,
    summarize_pair,
    write_results,
)

import edgedeploy
from edgedeploy.errors import EdgeDeployError

SPEC = str(Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "user_gcc_net.py") + ":build"
SHAPE = (1, 3, 96, 160)
#: runtime -> format, and the variants exported for it: label -> export options
VARIANTS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "onnxruntime": ("onnx", {
        "lowered": {},
        "lowered@18": {"opset": 18},
        "none@17": {"lowering": "none"},
        "none@18": {"lowering": "none", "opset": 18},
    }),
    "mnn": ("mnn", {"lowered": {}, "none@17": {"lowering": "none"}, "none@18": {"lowering": "none", "opset": 18}}),
    "litert": ("tflite", {"lowered": {}, "none": {"lowering": "none"}}),
    "coreml": ("coreml", {"lowered": {"parity": False}, "none": {"lowering": "none", "parity": False}}),
}  # fmt: skip


def export_all(out: Path, runtimes: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Export every variant; returns runtime -> label -> {artifact, ops, parity, export_s} or {error}."""
    done: dict[str, dict[str, dict[str, Any]]] = {}
    for runtime, (fmt, variants) in VARIANTS.items():
        if runtime not in runtimes:
            continue
        done[runtime] = {}
        for label, opts in variants.items():
            t0 = time.perf_counter()
            try:
                outcome = edgedeploy.export(
                    SPEC, fmt, input_shape=SHAPE, out=out / f"{fmt}-{label}", name="user_gcc_net", **opts
                )
            except EdgeDeployError as e:
                done[runtime][label] = {"error": f"{type(e).__name__}: {e}"}
                print(f"{runtime:12s} {label:11s} does not export: {e}")
                continue
            m = outcome.manifest
            done[runtime][label] = {
                "artifact": str(outcome.artifact),
                "export_s": round(time.perf_counter() - t0, 1),
                "parity": m.parity.get("status"),
                "max_abs_error": m.parity.get("max_abs_error"),
                "ops": m.op_census,
                "lowering_passes": {p["pass"]: len(p["rewrites"]) for p in m.lowering.get("passes", [])},
            }
            n_ops = sum(m.op_census.values())
            print(f"{runtime:12s} {label:11s} exported, parity {m.parity.get('status')}, {n_ops} ops")
    return done


def time_interleaved(artifacts: dict[str, str], runtime: str, blocks: int, iters: int, threads: int) -> dict:
    samples: dict[str, list[list[float]]] = {k: [] for k in artifacts}
    for b in range(blocks):
        order = list(artifacts) if b % 2 == 0 else list(reversed(artifacts))
        for label in order:
            r = edgedeploy.bench(artifacts[label], runtime=runtime, iterations=iters, warmup=2, threads=threads)
            samples[label].append([float(s) for s in r.samples_ms])
    return samples


def main() -> None:
    ap = block_parser(__doc__, blocks=12, iters=20)
    ap.add_argument("--name", default="user_net_lowering")
    ap.add_argument("--out", default=None, help="artifact folder (default: a fresh one under /tmp)")
    ap.add_argument("--runtimes", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    args = ap.parse_args()
    machine = machine_description()
    machine["cpu_flags"] = cpu_flags()
    machine["machine"] = platform.machine()
    load_start = os.getloadavg()[0]
    out = Path(args.out or f"/tmp/edgedeploy-{args.name}-{os.getpid()}")
    exported = export_all(out, args.runtimes.split(","))

    timings: dict[str, Any] = {}
    for runtime, variants in exported.items():
        ok = {k: v["artifact"] for k, v in variants.items() if "artifact" in v and v.get("parity") == "passed"}
        if "lowered" not in ok or len(ok) < 2:
            timings[runtime] = {"skipped": "fewer than two variants exported with parity passed (see exports)"}
            continue
        samples = time_interleaved(ok, runtime, args.blocks, args.iters, args.threads)
        # every variant against every lowered baseline (``none@18`` vs ``lowered@18``: the same exporter)
        pairs = {
            f"{k} / {base}": summarize_pair(samples[base], samples[k])
            for base in ok if base.startswith("lowered") for k in ok if k != base
        }  # fmt: skip
        timings[runtime] = {"samples_ms": samples, "pairs": pairs}
        for k, p in pairs.items():
            print(
                f"{runtime:12s} {k:24s}: paired ratio {p['median_paired_ratio']:.3f} "
                f"(medians {p['median_b_ms']:.2f} / {p['median_a_ms']:.2f} ms, slow blocks {p['slow_blocks']}/"
                f"{p['blocks']})"
            )
    load_end = os.getloadavg()[0]
    payload = {
        "machine": machine,
        "load_note": load_note(load_start, load_end, os.cpu_count() or 1),
        "settings": {"blocks": args.blocks, "iters": args.iters, "threads": args.threads, "input_shape": SHAPE},
        "exports": exported,
        "timings": timings,
    }
    write_results(args.name, payload, markdown(payload))
    print(f"written {RESULTS / (args.name + '.md')}")


def markdown(p: dict[str, Any]) -> str:
    m = p["machine"]
    lines = [
        "# Generic lowering on a user network: lowered vs `--lowering none`",
        "",
        "`python benchmarks/user_net_lowering.py` — network `tests/fixtures/user_gcc_net.py:build` (own GCC with "
        "`F.interpolate` meta-kernel + `F.pad(circular)` + `F.conv2d`, `torch.roll` token shift, circular 3×3 conv, "
        "per-pixel output), input 1×3×96×160, batch 1.",
        "",
        machine_markdown(m).rstrip() + f" CPU flags: {', '.join(m['cpu_flags']) or 'n/a'}. {p['load_note']}.",
        "",
        f"Interleaved blocks: {p['settings']['blocks']} blocks × {p['settings']['iters']} iterations per variant, "
        f"{p['settings']['threads']} threads; ratio = variant / lowered, median of per-block ratios.",
        "",
        "## Exports",
        "",
        "| runtime | variant | result | ops | Pad / Resize ops |",
        "|---|---|---|---|---|",
    ]
    for runtime, variants in p["exports"].items():
        for label, v in variants.items():
            if "error" in v:
                lines.append(f"| {runtime} | {label} | does not export: {v['error'][:160]} | – | – |")
                continue
            ops = v["ops"]
            bad = {k: n for k, n in ops.items() if k.lower() in ("pad", "resize", "resize_bilinear", "mirror_pad")}
            lines.append(
                f"| {runtime} | {label} | parity {v['parity']} (max abs {v['max_abs_error']}) | {sum(ops.values())} | "
                f"{json.dumps(bad) if bad else 'none'} |"
            )
    lines += ["", "## Latency", ""]
    lines += ["| runtime | variant / baseline | variant median ms | baseline median ms | paired ratio | slow blocks |"]
    lines += ["|---|---|---|---|---|---|"]
    for runtime, t in p["timings"].items():
        if "skipped" in t:
            lines.append(f"| {runtime} | – | {t['skipped']} | | | |")
            continue
        for label, s in t["pairs"].items():
            lines.append(
                f"| {runtime} | {label} | {s['median_b_ms']:.3f} | {s['median_a_ms']:.3f} | "
                f"{s['median_paired_ratio']:.3f} | {s['slow_blocks']}/{s['blocks']} |"
            )
    lines += [
        "",
        "Paired ratio > 1: the variant is slower than the baseline. `lowered` is edgedeploy's default (generic passes, "
        "ONNX opset 17, TorchScript exporter); `@18` uses the torch.export exporter. The TFLite `PAD` ops of the "
        "lowered file are the zero padding of the two stride-2 stem convs, not circular padding.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
