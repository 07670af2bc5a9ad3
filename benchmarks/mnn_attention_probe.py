"""Does MNN's converter take the opset-23 ``Attention`` op (issue 22, Deliver 2), and is the result faster?

Run: ``python benchmarks/mnn_attention_probe.py [--model mobilevit_s] [--blocks 8] [--iters 6] [--threads 1]
[--name mnn_attention_probe]``. Writes ``benchmarks/results/<name>.json`` and ``<name>.md``.

The candidate: edgedeploy's own fp32 ONNX artifact for onnxruntime (``edgedeploy.export(model, "onnx",
cache=True)``: MobileViT's attention as ``FusedAttention``, exported at opset 23 as the ONNX ``Attention`` op)
converted with MNN's compiled converter (``edgedeploy.export.mnn.onnx_to_mnn``, default flags). If the converter
refuses it, its reason is the result. If it converts, its output is compared with onnxruntime's on the embedded
photo (max abs error of the logits) and, only when that is within 1e-3, it is timed against edgedeploy's MNN artifact
(``edgedeploy.export(model, "mnn", cache=True)``, the channels-last form with the official attention) in one
process: Express ``Module`` sessions (edgedeploy's MNN runtime), interleaved blocks, process CPU time and wall time
per inference, the median of per-block paired ratios candidate / edgedeploy MNN, and a control (a second session of
edgedeploy's MNN file).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_flags, dual_interleaved, load_note, machine_description, summarize_pair, write_results

import edgedeploy
from edgedeploy.cards import get_card
from edgedeploy.data import real_image
from edgedeploy.export.mnn import mnn_op_census, onnx_to_mnn
from edgedeploy.runtimes.base import get_runtime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilevit_s")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="mnn_attention_probe")
    args = ap.parse_args()
    started = time.time()
    x = real_image(get_card(args.model).input_size)
    onnx_out = edgedeploy.export(args.model, "onnx", cache=True)
    mnn_out = edgedeploy.export(args.model, "mnn", cache=True)
    import onnx

    g = onnx.load(str(onnx_out.artifact), load_external_data=False)
    ops = sorted({n.op_type for n in g.graph.node})
    payload: dict[str, Any] = {
        "model": args.model, "threads": args.threads, "blocks": args.blocks, "iters": args.iters,
        "cpu_flags": cpu_flags(), "load_before": list(os.getloadavg()), "machine": machine_description(),
        "onnx_artifact": str(onnx_out.artifact), "onnx_opset": onnx_out.manifest.opset,
        "attention_nodes": sum(n.op_type == "Attention" for n in g.graph.node), "onnx_op_types": ops,
        "mnn_version": get_runtime("mnn").version(),
    }  # fmt: skip
    ort = get_runtime("onnxruntime").load(onnx_out.artifact, args.threads)
    ref = ort.run(x)
    with tempfile.TemporaryDirectory(prefix="edgedeploy-mnn-attn-") as tmp:
        cand = Path(tmp) / f"{args.model}.attention.mnn"
        t0 = time.perf_counter()
        try:
            onnx_to_mnn(Path(onnx_out.artifact), cand)
            payload["converted"] = True
        except Exception as e:  # noqa: BLE001 - a refusal is the result
            payload["converted"] = False
            payload["converter_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        payload["convert_s"] = round(time.perf_counter() - t0, 1)
        if payload["converted"]:
            rt = get_runtime("mnn")
            payload["candidate_op_census"] = mnn_op_census(cand)
            payload["edgedeploy_mnn_op_census"] = mnn_out.manifest.op_census
            c = rt.load(cand, args.threads)
            out = c.run(x).reshape(ref.shape)
            payload["max_abs_vs_onnxruntime"] = float(np.abs(out - ref).max())
            payload["top1_equal"] = bool(int(out.argmax()) == int(ref.argmax()))
            if payload["max_abs_vs_onnxruntime"] <= 1e-3:
                base, again = rt.load(mnn_out.artifact, args.threads), rt.load(mnn_out.artifact, args.threads)
                fns = {"edgedeploy MNN": base.prepare(x), "attention MNN": c.prepare(x), "again": again.prepare(x)}
                cpu, wall = dual_interleaved(fns, args.blocks, args.iters)
                payload["samples_ms"], payload["wall_samples_ms"] = cpu, wall
                payload["pair"] = summarize_pair(cpu["edgedeploy MNN"], cpu["attention MNN"])
                payload["wall_pair"] = summarize_pair(wall["edgedeploy MNN"], wall["attention MNN"])
                payload["control"] = summarize_pair(cpu["edgedeploy MNN"], cpu["again"])
    payload["load_after"] = list(os.getloadavg())
    payload["wall_s"] = round(time.time() - started, 1)
    write_results(args.name, payload, markdown(payload))
    print(markdown(payload))


def markdown(p: dict[str, Any]) -> str:
    m = p["machine"]
    lines = [
        f"# MNN and the opset-23 `Attention` op: {p['model']}",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} logical cores, flags {' '.join(p['cpu_flags'])}; MNN "
        f"{p['mnn_version']}; {m['date']}. Load average before {p['load_before'][0]:.2f}, after "
        f"{p['load_after'][0]:.2f}: {load_note(p['load_before'][0], p['load_after'][0], m['cores'])}. "
        f"{p['threads']} thread(s), process CPU-time clock, {p['blocks']} interleaved blocks × {p['iters']} runs.",
        "",
        f"- ONNX input: edgedeploy's onnxruntime artifact, opset {p['onnx_opset']}, {p['attention_nodes']} "
        "`Attention` nodes.",
    ]
    if not p["converted"]:
        lines.append(f"- MNN converter: **refused** — {p['converter_error']} (in {p['convert_s']} s).")
    else:
        lines.append(
            f"- MNN converter: converted in {p['convert_s']} s; "
            f"{sum(p['candidate_op_census'].values())} MNN ops (edgedeploy's MNN artifact: "
            f"{sum(p['edgedeploy_mnn_op_census'].values())}); max abs vs onnxruntime "
            f"{p['max_abs_vs_onnxruntime']:.2e}, top-1 {'equal' if p['top1_equal'] else 'DIFFERENT'}."
        )
        if "pair" in p:
            q, w, c = p["pair"], p["wall_pair"], p["control"]
            lines.append(
                f"- Timing: edgedeploy MNN {q['median_a_ms']:.2f} ms, attention form {q['median_b_ms']:.2f} ms "
                f"(CPU time); paired ratio attention / edgedeploy MNN **{q['median_paired_ratio']:.3f}** (wall "
                f"{w['median_paired_ratio']:.3f}), control (same file) {c['median_paired_ratio']:.3f}; slow blocks "
                f"{q['slow_blocks']} / {c['slow_blocks']} of {q['blocks']}."
            )
        else:
            lines.append("- Not timed: its output is not within 1e-3 of onnxruntime's.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
