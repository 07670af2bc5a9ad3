"""Lowering ablation: how the export-time form of GCC, attention, LayerNorm and GELU changes batch-1 latency.

Run: ``python benchmarks/lowering_ablation.py [--blocks 6] [--iters 8] [--threads 2] [--quick]
[--groups gcc,attention,layernorm] [--formats onnx,mnn[,tflite]] [--name lowering_ablation]``.
Writes ``benchmarks/results/<name>.json`` (every raw sample) and ``<name>.md``. The recorded LiteRT run is
``--groups gcc,attention --formats tflite --name lowering_ablation_litert`` (the LayerNorm opset question does not
arise for litert-torch, which converts from PyTorch directly).

Groups (each variant is first checked numerically against PyTorch; a variant that does not export is recorded
with the error instead of a latency):

1. **GCC form** (EdgeFormer-S, onnxruntime and MNN): cat-then-conv (the toolkit's form:
   ``conv2d(cat([x, x[..., :-1]]), k)``), circular pad (``conv2d(F.pad(x, mode="circular"), k)``) and roll
   (``Σ_t k_t · roll(x, −t)``, the shift-and-accumulate form).
2. **Attention lowering** (MobileViT-S, EMO-1M, EdgeViT-XXS; onnxruntime and MNN): ``--lowering default`` (the
   family's 4-D static rewrite) vs ``--lowering none`` (the training-time module traced as is).
3. **LayerNorm form** (MobileViT-S, EdgeViT-XXS; onnxruntime and MNN): ONNX opset 13 (LayerNorm decomposed into
   ReduceMean/Sub/Pow/Sqrt/Div; GELU as Erf) vs opset 17 (one LayerNormalization op).

Method (TOOLCHAIN_NOTES.md, "Timing on this machine"): all sessions of a group are loaded in this one process
and timed in interleaved blocks (the order rotates per block); each block runs ``iters`` batch-1 inferences per
variant after one warm-up. Reported per variant: median over all samples, and per pair the median of per-block
ratios (variant / baseline) — paired, so a slow phase of the host affects both sides. A block is counted "slow"
when the baseline's block median exceeds 1.3× its fastest block median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import block_parser, load_note
from _common import interleaved as interleaved_blocks

from edgedeploy.cards import get_card
from edgedeploy.data import real_image
from edgedeploy.export.lowering import lower
from edgedeploy.export.mnn import onnx_to_mnn
from edgedeploy.export.onnx import onnx_op_census, torch_to_onnx
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.zoo import build_model

RESULTS = Path(__file__).parent / "results"
RUNTIME_OF = {"onnx": "onnxruntime", "mnn": "mnn", "tflite": "litert"}
RT_LABEL = {"onnx": "onnxruntime", "mnn": "MNN", "tflite": "LiteRT"}


# ------------------------------------------------------------------------------------------------ GCC variants
def gcc_pad(x: torch.Tensor, weight: torch.Tensor, direction: str, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Circular padding then a valid depthwise conv (equal to cat-then-conv)."""
    n = x.shape[2] if direction == "H" else x.shape[3]
    pad = (0, 0, 0, n - 1) if direction == "H" else (0, n - 1, 0, 0)
    return F.conv2d(F.pad(x, pad, mode="circular"), weight, bias=bias, groups=weight.shape[0])


def gcc_roll(x: torch.Tensor, weight: torch.Tensor, direction: str, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``y = Σ_t k_t · roll(x, −t)`` along the direction (shift-and-accumulate)."""
    dim = 2 if direction == "H" else 3
    n = x.shape[dim]
    k = weight.reshape(1, weight.shape[0], n, 1) if direction == "H" else weight.reshape(1, weight.shape[0], 1, n)
    y = x * k.select(dim, 0).unsqueeze(dim)
    for t in range(1, n):
        y = y + torch.roll(x, shifts=-t, dims=dim) * k.select(dim, t).unsqueeze(dim)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y


@contextlib.contextmanager
def gcc_form(form: str) -> Iterator[None]:
    """Temporarily replace :func:`edgedeploy.nn.gcc.circular_conv` (looked up at call time by the block)."""
    import edgedeploy.nn.gcc as gcc

    original = gcc.circular_conv
    gcc.circular_conv = {"cat": original, "pad": gcc_pad, "roll": gcc_roll}[form]
    try:
        yield
    finally:
        gcc.circular_conv = original


# ------------------------------------------------------------------------------------------------- building
def build_variant(
    model: str, lowering: str, opset: int, fmt: str, folder: Path, form: str = "cat"
) -> tuple[Path, dict[str, Any]]:
    """Export one variant; returns (artifact, info with export time, op count, max abs error of the form)."""
    card = get_card(model)
    size = card.input_size
    m = build_model(card, size).eval()
    x = torch.from_numpy(real_image(size))
    with torch.no_grad():
        reference = m(x)
    t0 = time.perf_counter()
    with gcc_form(form):
        mod = lower(m, x, target=fmt)[0] if lowering == "default" else m
        with torch.no_grad():
            err = float((mod(x) - reference).abs().max())
        onnx_path = folder / f"{model}-{lowering}-{opset}-{form}.onnx"
        if fmt == "tflite":
            from edgedeploy.export.tflite import torch_to_tflite
            from edgedeploy.runtimes.litert_rt import tflite_op_census

            path = onnx_path.with_suffix(".tflite")
            torch_to_tflite(mod, x, path)
            census = tflite_op_census(path)
        else:
            torch_to_onnx(mod, x, onnx_path, opset=opset)
            census = onnx_op_census(onnx_path)
            path = onnx_path
    if fmt == "mnn":
        path = onnx_path.with_suffix(".mnn")
        onnx_to_mnn(onnx_path, path)
    info = {
        "export_s": round(time.perf_counter() - t0, 2),
        "max_abs_error_vs_torch": err,
        "graph_nodes": sum(census.values()),
        "ops": census,
    }
    return path, info


def run_ort_check(path: Path, fmt: str, model: str, threads: int) -> tuple[Callable[[], Any], float]:
    """Load in the format's runtime; returns (timed callable, max abs error vs PyTorch on the photo)."""
    card = get_card(model)
    x = real_image(card.input_size)
    rt = get_runtime(RUNTIME_OF[fmt])
    session = rt.load(path, threads=threads)
    with torch.no_grad():
        ref = build_model(card).eval()(torch.from_numpy(x)).numpy()
    err = float(np.abs(session.run(x).reshape(ref.shape) - ref).max())
    return session.prepare(x), err


# ------------------------------------------------------------------------------------------------- timing
def interleaved(fns: dict[str, Callable[[], Any]], baseline: str, blocks: int, iters: int) -> dict[str, Any]:
    """Time ``fns`` in interleaved blocks (``_common.interleaved``, i.e. the toolkit's harness); raw samples (ms),
    medians, paired block ratios vs ``baseline``."""
    names = list(fns)
    per_block = interleaved_blocks(fns, blocks, iters)
    samples = {n: [ms for block in per_block[n] for ms in block] for n in names}
    block_medians = {n: [statistics.median(block) for block in per_block[n]] for n in names}
    base = block_medians[baseline]
    fastest = min(base)
    out: dict[str, Any] = {"baseline": baseline, "slow_blocks": sum(1 for v in base if v > 1.3 * fastest)}
    out["variants"] = {
        n: {
            "median_ms": round(statistics.median(samples[n]), 3),
            "min_block_median_ms": round(min(block_medians[n]), 3),
            "ratio_vs_baseline": round(
                statistics.median(v / b for v, b in zip(block_medians[n], base, strict=True)), 3
            ),
            "samples_ms": [round(s, 3) for s in samples[n]],
            "block_medians_ms": [round(s, 3) for s in block_medians[n]],
        }
        for n in names
    }
    return out


def run_group(
    title: str, variants: list[tuple[str, dict[str, Any]]], args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    """Export every variant (recording failures), then time the ones that exported, per runtime."""
    print(f"== {title}", flush=True)
    group: dict[str, Any] = {"title": title, "variants": {}, "timing": {}}
    fns: dict[str, dict[str, Callable[[], Any]]] = {f: {} for f in args.formats}
    for label, spec in variants:
        for fmt in args.formats:
            key = f"{label} [{RT_LABEL[fmt]}]"
            try:
                path, info = build_variant(folder=folder, fmt=fmt, **spec)
                fn, err = run_ort_check(path, fmt, spec["model"], args.threads)
                info["runtime_max_abs_error_vs_torch"] = err
                fns[fmt][label] = fn
                group["variants"][key] = info
                print(f"   {key}: exported in {info['export_s']} s, {info['graph_nodes']} graph nodes, "
                      f"runtime error {err:.2e}", flush=True)  # fmt: skip
            except Exception as e:  # noqa: BLE001 - a variant that fails to export is a result too
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                group["variants"][key] = {"error": f"{type(e).__name__}: {msg}"}
                print(f"   {key}: FAILED {type(e).__name__}: {msg}", flush=True)
                if args.debug:
                    traceback.print_exc()
    baseline = variants[0][0]
    for fmt, f in fns.items():
        if baseline in f and len(f) > 1:
            rt = RT_LABEL[fmt]
            group["timing"][rt] = interleaved(f, baseline, args.blocks, args.iters)
            for n, v in group["timing"][rt]["variants"].items():
                print(f"   {rt:11s} {n:32s} median {v['median_ms']:8.2f} ms  ratio {v['ratio_vs_baseline']:.3f}",
                      flush=True)  # fmt: skip
    return group


Variant = tuple[str, dict[str, Any]]


def group_plan(groups: list[str], quick: bool) -> list[tuple[str, list[Variant]]]:
    """(title, [(label, export settings)]) of each group asked for, in order: the GCC forms of EdgeFormer-S, then
    attention lowering on and off, then the LayerNorm form, per model (one model each with ``quick``)."""
    plan: list[tuple[str, list[Variant]]] = []
    if "gcc" in groups:
        forms = (("cat-then-conv", "cat"), ("circular pad", "pad"), ("roll", "roll"))
        gcc = {"model": "edgeformer_s", "lowering": "default", "opset": 13}
        plan.append(
            ("GCC form, EdgeFormer-S (opset 13, lowering default)", [(k, {**gcc, "form": f}) for k, f in forms])
        )
    if "attention" in groups:
        for model in ["mobilevit_s"] if quick else ["mobilevit_s", "emo_1m", "edgevit_xxs"]:
            lowerings = [
                (f"lowering {lw}", {"model": model, "lowering": lw, "opset": 17}) for lw in ("default", "none")
            ]
            plan.append((f"attention lowering, {model} (opset 17)", lowerings))
    if "layernorm" in groups:
        for model in ["mobilevit_s"] if quick else ["mobilevit_s", "edgevit_xxs"]:
            opsets = (("opset 17 LayerNormalization", 17), ("opset 13 decomposed", 13))
            forms_ln = [(k, {"model": model, "lowering": "default", "opset": o}) for k, o in opsets]
            plan.append((f"LayerNorm form, {model} (lowering default)", forms_ln))
    return plan


def main() -> None:
    ap = block_parser(__doc__, blocks=6, iters=8)
    ap.add_argument("--quick", action="store_true", help="One model per group (for a smoke run).")
    ap.add_argument("--groups", default="gcc,attention,layernorm")
    ap.add_argument("--formats", default="onnx,mnn", help="onnx, mnn, tflite (tflite converts with litert-torch)")
    ap.add_argument("--name", default="lowering_ablation", help="results file stem under benchmarks/results/")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    args.formats = args.formats.split(",")
    torch.set_num_threads(args.threads)
    groups = args.groups.split(",")
    started = time.time()
    results: dict[str, Any] = {
        "host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
        "torch": torch.__version__, "blocks": args.blocks, "iters": args.iters, "groups": [],
        "load_average_start": os.getloadavg(),
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgedeploy-ablation-") as tmp:
        folder = Path(tmp)
        for title, variants in group_plan(groups, args.quick):
            results["groups"].append(run_group(title, variants, args, folder))
    results["load_average_end"] = os.getloadavg()
    results["wall_s"] = round(time.time() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Lowering ablation",
        "",
        f"{results['cpus']} CPUs, {results['threads']} threads, {results['blocks']} interleaved blocks × "
        f"{results['iters']} iterations per variant; "
        f"{load_note(results['load_average_start'][0], results['load_average_end'][0], results['cpus'])}. "
        "Ratio = median of per-block ratios vs the group's first variant.",
        "",
    ]
    for g in results["groups"]:
        lines += [f"## {g['title']}", "", "| variant | runtime | median ms | ratio | graph nodes | export s | error |"]
        lines.append("|---|---|---:|---:|---:|---:|---|")
        for key, info in g["variants"].items():
            label, rt = key.rsplit(" [", 1)
            rt = rt.rstrip("]")
            if "error" in info:
                lines.append(f"| {label} | {rt} | – | – | – | – | {info['error'][:120]} |")
                continue
            t = g["timing"].get(rt, {}).get("variants", {}).get(label)
            med = f"{t['median_ms']:.2f}" if t else "–"
            ratio = f"{t['ratio_vs_baseline']:.3f}" if t else "–"
            lines.append(
                f"| {label} | {rt} | {med} | {ratio} | {info['graph_nodes']} | {info['export_s']} | "
                f"max abs {info['runtime_max_abs_error_vs_torch']:.1e} |"
            )
        for rt, t in g["timing"].items():
            lines.append(f"\n{rt}: {t['slow_blocks']} of {len(next(iter(t['variants'].values()))['block_medians_ms'])}"
                         " blocks slow (baseline block median > 1.3× its fastest)")  # fmt: skip
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
