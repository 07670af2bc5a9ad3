"""Full-integer int8 vs fp32 per runtime (onnxruntime, MNN, LiteRT): speed ratio, top-1 agreement, GMAC/s.

Run: ``python benchmarks/int8_per_runtime.py [--models edgeformer_s,mobilevit_s] [--runtimes onnxruntime,mnn,litert]
[--blocks 8] [--iters 6] [--threads 1] [--clock cpu|wall] [--gemm-reps 2] [--name int8_per_runtime]``.
Writes ``benchmarks/results/<name>.json`` (raw samples on both clocks, per-input agreement) and ``<name>.md``.

Artifacts: the toolkit's own exports through the public API, ``edgedeploy.export(model, fmt, cache=True)`` at fp32
and ``precision="int8"`` (full integer, the default calibration set of :mod:`edgedeploy.export.calibration`: 16
views of the embedded photo), parity-checked; a failed parity aborts the run. int8 per format
(:mod:`edgedeploy.export.quantize`): onnxruntime QDQ (``quantize_static``), MNN's compiled quantizer (EMA), LiteRT
ai-edge-quantizer ``static_wi8_ai8`` run by the XNNPACK delegate (its QS8 kernels where the ops are int8). ncnn and
CoreML have no int8 export in edgedeploy (``registry.py``: ncnn is fp32 / fp16; CoreML cannot run on Linux).

Agreement set: ``int8_speedup.agreement_set`` (200 or more inputs; none equals a calibration image, checked by
sha256). Reported: top-1 agreement of int8 with fp32 of the same runtime and with PyTorch fp32; cosine similarity
of the logits (min, median).

Latency: per model and runtime the fp32 and int8 sessions (``edgedeploy.runtimes``, the sessions
``edgedeploy bench`` uses) are loaded in this process and timed in interleaved blocks (order reversed every other
block), recording process CPU time and wall time per inference; speed ratio = median of per-block paired ratios
fp32 / int8 (> 1: int8 faster); slow blocks counted. The 2048³ fp32 GEMM (numpy / OpenBLAS, ``threads`` threads)
is timed before and after each model on the same clocks: its median GMAC/s is the ceiling; GMAC/s per artifact =
the un-lowered module's MACs (``edgedeploy.zoo.count_macs``) ÷ median time (for int8 these are int8 MACs, compared
with the fp32 ceiling: a share above 100 % is possible and means the int8 kernels beat fp32 GEMM throughput).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import threads_from_argv

os.environ.setdefault("OPENBLAS_NUM_THREADS", threads_from_argv(sys.argv, "1"))  # read when numpy is imported
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    cpu_flags,
    dual_interleaved,
    first_line,
    gemm_ceiling,
    load_note,
    machine_description,
    summarize_pair,
    write_results,
)
from int8_speedup import agreement_of, agreement_set, int8_cells

import edgedeploy
from edgedeploy.cards import get_card
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.zoo import build_model, count_macs

FORMAT_OF = {"onnxruntime": "onnx", "mnn": "mnn", "litert": "tflite"}


def run_runtime(
    model: str, runtime: str, inputs: list[np.ndarray], ref: list[np.ndarray], names: list[str], args: Any
) -> dict[str, Any]:
    """One model on one runtime: export fp32 + int8 (cached), agreement on ``inputs``, interleaved timing."""
    fmt = FORMAT_OF[runtime]
    rt = get_runtime(runtime)
    entry: dict[str, Any] = {}
    sessions = {}
    for precision in ("fp32", "int8"):
        t0 = time.perf_counter()
        try:
            outcome = edgedeploy.export(model, fmt, precision=precision, cache=True)
        except Exception as e:  # noqa: BLE001 - an export that fails is a result
            entry["error"] = f"{precision} export failed: {type(e).__name__}: {first_line(e)}"
            return entry
        if not outcome.parity.passed:  # a wrong artifact is a result, never timed
            entry["error"] = f"{precision} artifact failed parity ({outcome.parity.status}): not timed"
            return entry
        m = outcome.manifest
        sessions[precision] = rt.load(outcome.artifact, args.threads)
        entry[precision] = {
            "artifact": str(outcome.artifact),
            "artifact_bytes": m.size_bytes,
            "exporter": m.exporter,
            "export_s": round(time.perf_counter() - t0, 1),
            "quantization": getattr(m, "quantization", None),
            "op_census": m.op_census,
            "settings": getattr(sessions[precision], "settings", {}),
        }
    entry["agreement"] = agreement_of({p: s.run for p, s in sessions.items()}, inputs, ref, names)
    x = inputs[0]
    cpu, wall = dual_interleaved({p: s.prepare(x) for p, s in sessions.items()}, args.blocks, args.iters)
    samples = cpu if args.clock == "cpu" else wall
    pair = summarize_pair(samples["int8"], samples["fp32"])  # b / a = fp32 / int8 = speed ratio
    wpair = summarize_pair(wall["int8"], wall["fp32"])
    entry["timing"] = {
        "samples_ms": cpu,
        "wall_samples_ms": wall,
        **pair,
        "speedup_paired": pair["median_paired_ratio"],
        "wall_speedup_paired": wpair["median_paired_ratio"],
    }
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="edgeformer_s,mobilevit_s")
    ap.add_argument("--runtimes", default="onnxruntime,mnn,litert")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--gemm-reps", type=int, default=2)
    ap.add_argument("--conditions", default="")
    ap.add_argument("--name", default="int8_per_runtime")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    payload: dict[str, Any] = {
        "threads": args.threads, "clock": args.clock, "blocks": args.blocks, "iters": args.iters,
        "conditions": args.conditions, "cpu_flags": cpu_flags(), "affinity": sorted(os.sched_getaffinity(0)),
        "load_before": list(os.getloadavg()), "machine": machine_description(),
        "versions": {rt: get_runtime(rt).version() for rt in args.runtimes.split(",")}, "models": {},
    }  # fmt: skip
    for model in args.models.split(","):
        card = get_card(model)
        size = card.input_size
        inputs, names = agreement_set(size)
        module = build_model(card, size).eval()
        with torch.no_grad():
            ref = [module(torch.from_numpy(x)).numpy() for x in inputs]
        res: dict[str, Any] = {
            "input_size": size, "macs": count_macs(module, size).total, "agreement_inputs": len(inputs),
            "agreement_input_names": names, "gemm": gemm_ceiling(args.gemm_reps), "runtimes": {},
        }  # fmt: skip
        payload["models"][model] = res
        print(f"== {model}: {len(inputs)} agreement inputs (disjoint from the 16 calibration views)", flush=True)
        for runtime in args.runtimes.split(","):
            e = run_runtime(model, runtime, inputs, ref, names, args)
            res["runtimes"][runtime] = e
            if "timing" in e:
                t, a = e["timing"], e["agreement"]
                print(f"   {runtime}: fp32/int8 {t['speedup_paired']:.3f} (fp32 {t['median_b_ms']:.2f} ms, int8 "
                      f"{t['median_a_ms']:.2f} ms, slow {t['slow_blocks']}); top-1 {a['top1_int8_vs_fp32']:.3f}",
                      flush=True)  # fmt: skip
            else:
                print(f"   {runtime}: {e.get('error')}", flush=True)
            payload["load_after"] = list(os.getloadavg())
            payload["wall_s"] = round(time.time() - started, 1)
            write_results(args.name, payload, markdown(payload))  # after every runtime: a killed run keeps results
        res["gemm"] += gemm_ceiling(args.gemm_reps)
    payload["load_after"] = list(os.getloadavg())
    payload["wall_s"] = round(time.time() - started, 1)
    write_results(args.name, payload, markdown(payload))
    print(markdown(payload))


def markdown(p: dict[str, Any]) -> str:
    m = p["machine"]
    key = "gmacs_cpu" if p["clock"] == "cpu" else "gmacs_wall"
    gemms = [g[key] for r in p["models"].values() for g in r["gemm"]]
    ceil = float(np.median(gemms))
    clock = "process CPU time per inference" if p["clock"] == "cpu" else "wall (latency)"
    lines = [
        "# int8 vs fp32 per runtime",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} logical cores, flags {' '.join(p['cpu_flags'])}; {m['platform']}, "
        f"Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in p["versions"].items())
        + f"; edgedeploy commit {str(m.get('package_commit') or '?')[:10]}; {m['date']}. "
        f"Load average before {'/'.join(f'{v:.2f}' for v in p['load_before'])}, after "
        f"{'/'.join(f'{v:.2f}' for v in p.get('load_after', p['load_before']))}: "
        f"{load_note(p['load_before'][0], p.get('load_after', p['load_before'])[0], m['cores'])}. "
        + (f"{p['conditions']} " if p.get("conditions") else "")
        + f"Clock: {clock}; {p['threads']} thread(s), {p['blocks']} interleaved blocks × {p['iters']} runs per "
        f"session; wall {p.get('wall_s', '?')} s.",
        f"Speed ratio = median of per-block paired ratios fp32 / int8 (> 1: int8 faster); 'wall' = the same on the "
        f"wall clock. Ceiling: 2048³ fp32 GEMM (numpy.matmul, OpenBLAS, {p['threads']} thread(s)), {len(gemms)} "
        f"products, median **{ceil:.1f} GMAC/s** (min {min(gemms):.1f}, max {max(gemms):.1f}); GMAC/s = the "
        "un-lowered model's MACs ÷ median time, (%) of that ceiling. Agreement on inputs disjoint from the "
        "calibration set (`int8_speedup.agreement_set`).",
        "",
        "| model | runtime | fp32 ms | int8 ms | fp32 ÷ int8 (paired) | wall paired | slow blocks | top-1 int8 vs fp32 "
        "| top-1 int8 vs torch | cosine min / median | fp32 GMAC/s (%) | int8 GMAC/s (%) | int8 method |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for model, r in p["models"].items():
        for rt, e in r["runtimes"].items():
            if "timing" not in e:
                lines.append(f"| {model} @{r['input_size']} | {rt} | – | – | – | – | – | – | – | – | – | – | "
                             f"{e.get('error')} |")  # fmt: skip
                continue
            t, c = e["timing"], int8_cells(e)

            def eff(ms: float, r: dict[str, Any] = r) -> str:
                g = r["macs"] / (ms * 1e-3) / 1e9
                return f"{g:.1f} ({100 * g / ceil:.0f} %)"

            lines.append(
                f"| {model} @{r['input_size']} | {rt} | {c['fp32_ms']} | {c['int8_ms']} | **{c['ratio']}** | "
                f"{t['wall_speedup_paired']:.3f} | {c['slow']} | {c['top1']} ({e['agreement']['inputs']}) | "
                f"{c['top1_torch']} | {c['cosine']} | {eff(t['median_b_ms'])} | {eff(t['median_a_ms'])} | "
                f"{c['method']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
