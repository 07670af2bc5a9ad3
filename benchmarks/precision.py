"""fp32 vs fp16 vs int8: latency and error per runtime (onnxruntime, MNN, LiteRT) for one model.

Run: ``python benchmarks/precision.py [--model edgeformer_s] [--blocks 6] [--iters 8] [--threads 2]``.
Writes ``benchmarks/results/precision_<model>.json`` (raw samples) and ``precision_<model>.md``.

Artifacts are made with the toolkit's own functions: the lowered module exported once per format at fp32, then
reduced with :mod:`edgedeploy.export.quantize` (ONNX: fp16, int8 full QDQ, int8 dynamic; MNN: ``--fp16``,
``--weightQuantBits 8``, full integer with the in-process quantizer; TFLite: fp16 weights, int8 weight-only, int8
full integer), with the default calibration set (embedded photo + crops and flips). Error: the parity metrics
(:func:`edgedeploy.export.parity.compare_outputs`, photo + 4 random inputs, vs the PyTorch fp32 module) and the
precision's default gate. Latency: all sessions of one runtime timed in interleaved blocks in this process; the
ratio is the median of per-block ratios vs fp32 (see ``lowering_ablation.py`` for the method).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from _common import block_parser, load_note
from lowering_ablation import RESULTS, interleaved

from edgedeploy.cards import get_card
from edgedeploy.data import real_image
from edgedeploy.export.calibration import default_calibration_set
from edgedeploy.export.lowering import lower
from edgedeploy.export.mnn import onnx_to_mnn
from edgedeploy.export.onnx import torch_to_onnx
from edgedeploy.export.parity import DEFAULT_THRESHOLDS, compare_outputs, parity_inputs, torch_reference
from edgedeploy.export.quantize import mnn_full_int8, quantize_onnx, quantize_tflite
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.zoo import build_model


def _quantized(quantize: Callable[..., Any], f32: Path, calib: Any, labels: tuple[str, str]) -> dict[str, Path]:
    """{variant: path}: the fp32 file ``f32`` and its fp16, int8 weight-only and int8 full (``calib``) versions
    beside it (``m.fp16.<suffix>``, ``m.int8w.<suffix>``, ``m.int8.<suffix>``); ``labels`` name the fp16 and the
    weight-only variant."""
    folder, suffix = f32.parent, f32.suffix
    v = {"fp32": f32}
    quantize(f32, folder / f"m.fp16{suffix}", "fp16")
    v[labels[0]] = folder / f"m.fp16{suffix}"
    quantize(f32, folder / f"m.int8w{suffix}", "int8", mode="weight")
    v[labels[1]] = folder / f"m.int8w{suffix}"
    quantize(f32, folder / f"m.int8{suffix}", "int8", calib, "full")
    v["int8 full"] = folder / f"m.int8{suffix}"
    return v


def make_artifacts(model: str, folder: Path, formats: list[str]) -> dict[str, dict[str, Path]]:
    """{runtime: {variant: path}} for every precision variant (see the module docstring)."""
    card = get_card(model)
    size = card.input_size
    module = build_model(card, size).eval()
    x = torch.from_numpy(real_image(size))
    calib = default_calibration_set(size)
    out: dict[str, dict[str, Path]] = {}
    if "onnx" in formats or "mnn" in formats:
        lowered = lower(module, x, target="onnx")[0]
        f32 = torch_to_onnx(lowered, x, folder / "m.onnx", opset=17).path
        if "onnx" in formats:
            out["onnxruntime"] = _quantized(quantize_onnx, f32, calib, ("fp16", "int8 weight (dynamic)"))
        if "mnn" in formats:
            lowered = lower(module, x, target="mnn")[0]
            o13 = torch_to_onnx(lowered, x, folder / "m13.onnx", opset=13).path
            v = out["mnn"] = {}
            for label, args in (
                ("fp32", []),
                ("fp16 weights", ["--fp16"]),
                ("int8 weight", ["--weightQuantBits", "8"]),
            ):
                p = folder / f"m.{label.replace(' ', '_')}.mnn"
                onnx_to_mnn(o13, p, args)
                v[label] = p
            mnn_full_int8(v["fp32"], folder / "m.int8.mnn", calib)
            v["int8 full"] = folder / "m.int8.mnn"
    if "tflite" in formats:
        from edgedeploy.export.tflite import torch_to_tflite

        lowered = lower(module, x, target="tflite")[0]
        f32 = folder / "m.tflite"
        t0 = time.perf_counter()
        torch_to_tflite(lowered, x, f32)
        print(f"   TFLite conversion {time.perf_counter() - t0:.0f} s", flush=True)
        out["litert"] = _quantized(quantize_tflite, f32, calib, ("fp16 weights", "int8 weight"))
    return out


def main() -> None:
    ap = block_parser(__doc__, blocks=6, iters=8)
    ap.add_argument("--model", default="edgeformer_s")
    ap.add_argument("--formats", default="onnx,mnn,tflite")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    card = get_card(args.model)
    shape = (1, 3, card.input_size, card.input_size)
    inputs = parity_inputs(shape)
    reference = torch_reference(build_model(card).eval(), inputs)
    photo = inputs["grace_hopper.jpg"]
    results: dict[str, Any] = {
        "model": args.model, "threads": args.threads, "blocks": args.blocks, "iters": args.iters,
        "cpus": os.cpu_count(), "load_average_start": os.getloadavg(), "runtimes": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgedeploy-precision-") as tmp:
        artifacts = make_artifacts(args.model, Path(tmp), args.formats.split(","))
        for rt_name, variants in artifacts.items():
            rt = get_runtime(rt_name)
            fns = {}
            entry: dict[str, Any] = {"variants": {}}
            for label, path in variants.items():
                precision = "fp32" if label == "fp32" else ("fp16" if label.startswith("fp16") else "int8")
                try:
                    session = rt.load(path, threads=args.threads)
                    report = compare_outputs(
                        reference, {k: session.run(v) for k, v in inputs.items()}, DEFAULT_THRESHOLDS[precision]
                    )
                except Exception as e:  # noqa: BLE001 - a variant the runtime cannot run is a result too
                    entry["variants"][label] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
                    print(f"   {rt_name} {label}: FAILED {e}", flush=True)
                    continue
                fns[label] = session.prepare(photo)
                entry["variants"][label] = {
                    "size_bytes": path.stat().st_size,
                    "parity": {k: v for k, v in asdict(report).items() if k not in ("inputs",)},
                }
                print(f"   {rt_name:11s} {label:22s} {path.stat().st_size / 1e6:6.2f} MB  {report.status:6s} "
                      f"max abs {report.max_abs_error:.2e} cos {report.cosine_similarity:.6f} "
                      f"top-1 {report.top1_agreement:.2f}", flush=True)  # fmt: skip
            if "fp32" in fns and len(fns) > 1:
                entry["timing"] = interleaved(fns, "fp32", args.blocks, args.iters)
                for n, v in entry["timing"]["variants"].items():
                    msg = f"median {v['median_ms']:8.2f} ms ratio {v['ratio_vs_baseline']:.3f}"
                    print(f"   {rt_name:11s} {n:22s} {msg}", flush=True)
            results["runtimes"][rt_name] = entry
    results["load_average_end"] = os.getloadavg()
    results["wall_s"] = round(time.time() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"precision_{args.model}.json").write_text(json.dumps(results, indent=1) + "\n")
    md = markdown(results)
    (RESULTS / f"precision_{args.model}.md").write_text(md)
    print(md)


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Precision: {r['model']}",
        "",
        f"{r['cpus']} CPUs, {r['threads']} threads, {r['blocks']} interleaved blocks × {r['iters']} iterations; "
        f"{load_note(r['load_average_start'][0], r['load_average_end'][0], r['cpus'])}. "
        "Errors vs PyTorch fp32 over the photo + 4 random inputs; verdict with the precision's default gate.",
        "",
        "| runtime | variant | size MB | median ms | ratio vs fp32 | max abs | cosine | top-1 | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rt, e in r["runtimes"].items():
        for label, v in e["variants"].items():
            if "error" in v:
                lines.append(f"| {rt} | {label} | – | – | – | – | – | – | {v['error'][:100]} |")
                continue
            t = e.get("timing", {}).get("variants", {}).get(label)
            p = v["parity"]
            lines.append(
                f"| {rt} | {label} | {v['size_bytes'] / 1e6:.2f} | {t['median_ms'] if t else '–'} | "
                f"{t['ratio_vs_baseline'] if t else '–'} | {p['max_abs_error']:.2e} | {p['cosine_similarity']:.6f} | "
                f"{p['top1_agreement']:.2f} | {p['status']} |"
            )
        if "timing" in e:
            lines.append(f"| {rt} | (slow blocks) | | {e['timing']['slow_blocks']} of {r['blocks']} | | | | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
