"""edgedeploy's fp32 artifacts vs the naive path (no toolkit), on onnxruntime and MNN, in one process.

Run: ``python benchmarks/naive_vs_edgedeploy.py [--models edgeformer_s,mobilevit_s,emo_5m,edgevit_xs]
[--blocks 8] [--iters 10] [--threads 2] [--clock wall|cpu] [--name naive_vs_edgedeploy]``.
``--clock cpu --threads 1`` records process CPU time per inference instead of latency (for a busy host).
Writes ``benchmarks/results/<name>.json`` (every raw sample, the machine) and ``<name>.md``.

The naive path is what a user gets with no toolkit, on the same ``nn.Module`` the zoo builds (random init, eval):

* ONNX: ``torch.onnx.export(module, (x,), path)`` with torch's default exporter (torch 2.13: the dynamo exporter,
  opset 20), then ``onnxsim.simplify``; run in onnxruntime with default session options except
  ``intra_op_num_threads = threads`` (CPU execution provider);
* MNN: that simplified ONNX file through MNN's compiled converter (``_tools.mnnconvert``, default flags; never
  ``MNN.tools``), run with the Express ``Module`` API, ``numThread = threads``, default precision (MNN's
  "normal"; on x86 this is fp32 compute).

edgedeploy's path is the toolkit's own fp32 export for each format (lowering, exporter choice, converter flags,
runtime settings: whatever the toolkit does by default), made with ``edgedeploy.export.pipeline.export_model``
(parity-checked; a failed parity aborts the run) and loaded with the runtimes the toolkit's ``bench`` uses
(``edgedeploy.runtimes``), ``threads`` threads.

Method (TOOLCHAIN_NOTES.md, "Timing on this machine"): per model, the four sessions (naive/edgedeploy ×
onnxruntime/MNN) and a control (a second onnxruntime session of the naive file, last in the session order) are
loaded in this process and timed in interleaved blocks with ``benchmarks/_common.interleaved`` (order reversed
every other block), ``iters`` timed runs per session per block after 2 warm-up runs. Reported:
the median over all samples per session; per runtime the median of per-block paired ratios
edgedeploy / naive; best-vs-best: the paired ratio of edgedeploy's fastest runtime (by median) against the naive
path's fastest runtime; slow blocks (a block median above 1.3× the fastest block median of the same session).
The load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before anything imports onnxruntime
sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_flags, interleaved, load_note, machine_description, summarize_pair, write_results

from edgedeploy._util import captured_fd_output
from edgedeploy.cards import get_card
from edgedeploy.data import real_image
from edgedeploy.export.mnn import onnx_to_mnn
from edgedeploy.export.pipeline import export_model
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.runtimes.mnn_rt import import_mnn
from edgedeploy.zoo import build_model

DEFAULT_MODELS = "edgeformer_s,mobilevit_s,emo_5m,edgevit_xs"
FORMAT_OF = {"onnxruntime": "onnx", "mnn": "mnn"}


# ------------------------------------------------------------------------------------------------ naive path
def naive_onnx(module: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    """``torch.onnx.export(module, (x,), path)`` (default exporter) then onnxsim; returns the simplified file."""
    import onnx
    import onnxsim

    raw = path.with_name(path.stem + ".raw.onnx")
    with warnings.catch_warnings(), torch.no_grad(), captured_fd_output():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(raw))
    model = onnx.load(str(raw))  # loads a side .onnx.data file too, when the exporter wrote one
    with captured_fd_output():
        simplified, ok = onnxsim.simplify(model)
    onnx.save(simplified if ok else model, str(path))
    return path


def naive_ort(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def naive_mnn(path: Path, threads: int) -> Any:
    mnn = import_mnn()
    with captured_fd_output():
        rt = mnn.nn.create_runtime_manager(({"backend": "CPU", "numThread": threads},))
        return mnn.nn.load_module_from_file(str(path), [], [], runtime_manager=rt)


def naive_sessions(model: str, folder: Path, threads: int) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """{"naive onnxruntime": fn, "naive MNN": fn} and info (export times, errors vs PyTorch, failures)."""
    card = get_card(model)
    size = card.input_size
    module = build_model(card, size).eval()
    xn = real_image(size)
    x = torch.from_numpy(xn)
    with torch.no_grad():
        ref = module(x).numpy()
    info: dict[str, Any] = {}
    fns: dict[str, Callable[[], Any]] = {}
    t0 = time.perf_counter()
    onnx_path = naive_onnx(module, x, folder / f"{model}.naive.onnx")
    info["onnx_export_s"] = round(time.perf_counter() - t0, 2)
    import onnx

    g = onnx.load(str(onnx_path), load_external_data=False)
    info["onnx_opset"] = next((o.version for o in g.opset_import if o.domain in ("", "ai.onnx")), None)
    info["onnx_nodes"] = len(g.graph.node)
    sess = naive_ort(onnx_path, threads)
    in_name = sess.get_inputs()[0].name
    out = sess.run(None, {in_name: xn})[0]
    info["onnxruntime_max_abs_error_vs_torch"] = float(np.abs(out - ref).max())
    feed = {in_name: xn}
    fns["naive onnxruntime"] = lambda: sess.run(None, feed)
    again = naive_ort(onnx_path, threads)  # the control: the same file in a second session
    fns["naive onnxruntime again"] = lambda: again.run(None, feed)
    try:
        mnn_path = folder / f"{model}.naive.mnn"
        t0 = time.perf_counter()
        onnx_to_mnn(onnx_path, mnn_path)  # the compiled converter with default flags (+ --bizCode)
        info["mnn_convert_s"] = round(time.perf_counter() - t0, 2)
        mod = naive_mnn(mnn_path, threads)
        F = import_mnn().expr
        var = F.const(xn, list(xn.shape), F.NCHW)
        out = np.array(mod.forward(var).read(), dtype=np.float32).reshape(ref.shape)
        info["mnn_max_abs_error_vs_torch"] = float(np.abs(out - ref).max())
        fns["naive MNN"] = lambda: mod.forward(var).read()
    except Exception as e:  # noqa: BLE001 - a naive path that fails is a result
        info["mnn_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return fns, info


# ------------------------------------------------------------------------------------------ edgedeploy path
def edgedeploy_sessions(model: str, folder: Path, threads: int) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """{"edgedeploy onnxruntime": fn, "edgedeploy MNN": fn, ...} from the toolkit's own fp32 exports.

    Exports go through the public API (``edgedeploy.export``, parity-checked); sessions are the runtimes'
    ``load`` with the toolkit's default settings, as ``edgedeploy bench`` uses them.
    """
    import edgedeploy

    size = get_card(model).input_size
    x = real_image(size)
    fns: dict[str, Callable[[], Any]] = {}
    info: dict[str, Any] = {}
    for runtime, fmt in FORMAT_OF.items():
        t0 = time.perf_counter()
        if hasattr(edgedeploy, "export"):
            outcome = edgedeploy.export(model, fmt, out=folder / fmt)
        else:  # before the public API landed
            outcome = export_model(model, fmt, folder / fmt)
        if outcome.parity.status != "passed":
            raise SystemExit(f"{model} {fmt}: parity {outcome.parity.status}; refusing to time a wrong model")
        m = outcome.manifest
        rt = get_runtime(runtime)
        session = rt.load(outcome.artifact, threads)
        info[fmt] = {
            "export_s": round(time.perf_counter() - t0, 2),
            "exporter": m.exporter,
            "opset": m.opset,
            "rewritten_modules": len(m.lowering.get("rewritten", [])),
            "op_census_total": sum(m.op_census.values()),
            "op_census": m.op_census,
            "parity_max_abs": outcome.parity.to_dict().get("max_abs_error"),
            "notes": m.notes,
            "runtime_settings": getattr(session, "settings", {}),
        }
        label = "MNN" if runtime == "mnn" else runtime
        fns[f"edgedeploy {label}"] = session.prepare(x)
    return fns, info


# ----------------------------------------------------------------------------------------------------- main
def cpu_interleaved(fns: dict[str, Callable[[], Any]], args: argparse.Namespace) -> dict[str, list[list[float]]]:
    """Like ``_common.interleaved`` but each sample is the *process CPU time* of one inference (ms).

    With ``--threads 1`` (no worker threads, so nothing spins) CPU time is the work an inference does, nearly
    independent of how the scheduler shares an oversubscribed host — the wall clock is not (TOOLCHAIN_NOTES.md).
    """
    for f in fns.values():
        f()
        f()
    out: dict[str, list[list[float]]] = {k: [] for k in fns}
    for b in range(args.blocks):
        order = list(fns) if b % 2 == 0 else list(reversed(fns))
        for name in order:
            block = []
            for _ in range(args.iters):
                t0 = time.process_time()
                fns[name]()
                block.append((time.process_time() - t0) * 1e3)
            out[name].append(block)
    return out


def run_model(model: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    print(f"== {model}", flush=True)
    naive, ninfo = naive_sessions(model, folder, args.threads)
    ours, einfo = edgedeploy_sessions(model, folder, args.threads)
    control = {"naive onnxruntime again": naive.pop("naive onnxruntime again")}
    fns = {**naive, **ours, **control}  # the control last: it is timed after a different session than the first
    samples = interleaved(fns, args.blocks, args.iters) if args.clock == "wall" else cpu_interleaved(fns, args)
    res: dict[str, Any] = {
        "model": model,
        "input_size": get_card(model).input_size,
        "naive": ninfo,
        "edgedeploy": einfo,
    }
    res["samples_ms"] = samples
    res["median_ms"] = {k: float(np.median(np.concatenate(v))) for k, v in samples.items()}
    res["pairs"] = {}
    for rt, a, b in (
        ("onnxruntime", "naive onnxruntime", "edgedeploy onnxruntime"),
        ("MNN", "naive MNN", "edgedeploy MNN"),
        ("control", "naive onnxruntime", "naive onnxruntime again"),
    ):
        if a in samples and b in samples:
            res["pairs"][rt] = summarize_pair(samples[a], samples[b])
    naive_best = min(
        (k for k in samples if k.startswith("naive") and not k.endswith("again")), key=lambda k: res["median_ms"][k]
    )
    ed_best = min((k for k in samples if k.startswith("edgedeploy")), key=lambda k: res["median_ms"][k])
    res["best"] = {"naive": naive_best, "edgedeploy": ed_best, **summarize_pair(samples[naive_best], samples[ed_best])}
    for k, v in res["median_ms"].items():
        print(f"   {k:24s} median {v:7.2f} ms", flush=True)
    for rt, p in res["pairs"].items():
        print(f"   {rt:11s} edgedeploy/naive paired {p['median_paired_ratio']:.3f} (slow blocks {p['slow_blocks']})")
    print(f"   best {ed_best} / {naive_best}: paired {res['best']['median_paired_ratio']:.3f}", flush=True)
    return res


def markdown(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    lines = [
        f"# edgedeploy vs the naive path ({payload['label']})",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} logical cores, flags {' '.join(payload['cpu_flags'])}; "
        f"{m['platform']}, Python {m['python']}, torch {torch.__version__}, onnxruntime {payload['versions']['ort']}, "
        f"MNN {payload['versions']['mnn']}; edgedeploy commit {str(m.get('package_commit') or '?')[:10]}; "
        f"{m['date']}.",
        f"Load average (1/5/15 min) before {'/'.join(f'{v:.2f}' for v in payload['load_before'])}, after "
        f"{'/'.join(f'{v:.2f}' for v in payload['load_after'])}: "
        f"{load_note(payload['load_before'][0], payload['load_after'][0], m['cores'])}.",
        f"Clock: {'process CPU time per inference' if payload.get('clock') == 'cpu' else 'wall (latency)'}; "
        f"{payload['threads']} threads, {payload['blocks']} interleaved blocks × {payload['iters']} runs per session; "
        f"wall {payload['wall_s']} s. Ratios are medians of per-block paired ratios edgedeploy / naive "
        "(< 1: edgedeploy faster). 'control': a second onnxruntime session of the naive file, paired with the first "
        "the same way: its distance from 1.000 is the harness's own bias and noise for identical graphs. "
        "Slow blocks: either side's block median > 1.3× its fastest block.",
        "",
        "| model | naive ORT ms | edgedeploy ORT ms | ORT paired | control (same file) | naive MNN ms | "
        "edgedeploy MNN ms | MNN paired | best vs best (paired) | slow blocks ORT / MNN / best |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in payload["models"]:
        med = r["median_ms"]
        p = r["pairs"]

        def cell(k: str, med: dict[str, float] = med) -> str:
            return f"{med[k]:.2f}" if k in med else "–"

        def ratio(rt: str, p: dict[str, Any] = p) -> str:
            return f"{p[rt]['median_paired_ratio']:.3f}" if rt in p else "–"

        slow = " / ".join(str(p[rt]["slow_blocks"]) if rt in p else "–" for rt in ("onnxruntime", "MNN"))
        b = r["best"]
        best = (
            f"{b['median_paired_ratio']:.3f} ({b['edgedeploy'].split()[1]} {b['median_b_ms']:.2f} vs "
            f"{b['naive'].split()[1]} {b['median_a_ms']:.2f})"
        )
        lines.append(
            f"| {r['model']} @{r['input_size']} | {cell('naive onnxruntime')} | {cell('edgedeploy onnxruntime')} | "
            f"{ratio('onnxruntime')} | {ratio('control')} | {cell('naive MNN')} | {cell('edgedeploy MNN')} | "
            f"{ratio('MNN')} | {best} | "
            f"{slow} / {b['slow_blocks']} |"
        )
    lines += ["", "## What each side ran", ""]
    for r in payload["models"]:
        n = r["naive"]
        lines.append(
            f"- **{r['model']}** naive: ONNX opset {n.get('onnx_opset')} ({n.get('onnx_nodes')} nodes after onnxsim), "
            f"ORT max abs vs torch {n.get('onnxruntime_max_abs_error_vs_torch', float('nan')):.1e}, "
            + (
                f"MNN max abs {n['mnn_max_abs_error_vs_torch']:.1e}"
                if "mnn_max_abs_error_vs_torch" in n
                else f"MNN failed: {n.get('mnn_error')}"
            )
        )
        for fmt, e in r["edgedeploy"].items():
            lines.append(
                f"  - edgedeploy {fmt}: {e['exporter']}; opset {e['opset']}; {e['op_census_total']} ops; "
                f"parity max abs {e['parity_max_abs']}"
                + (f"; runtime settings {e['runtime_settings']}" if e.get("runtime_settings") else "")
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="naive_vs_edgedeploy")
    ap.add_argument("--label", default="", help="free text for the results title (e.g. 'before')")
    ap.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="wall: perf_counter latency; cpu: process CPU time per inference (use with --threads 1 on a busy host)",
    )  # fmt: skip
    args = ap.parse_args()
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    torch.set_num_threads(args.threads)
    started = time.time()
    payload: dict[str, Any] = {
        "label": args.label or args.name,
        "threads": args.threads,
        "clock": args.clock,
        "blocks": args.blocks,
        "iters": args.iters,
        "cpu_flags": cpu_flags(),
        "load_before": list(os.getloadavg()),
        "machine": machine_description(),
        "versions": {"torch": torch.__version__, "ort": onnxruntime.__version__, "mnn": import_mnn().version()},
        "models": [],
    }
    with tempfile.TemporaryDirectory(prefix="edgedeploy-naive-") as tmp:
        for model in args.models.split(","):
            payload["models"].append(run_model(model, args, Path(tmp)))
            payload["load_after"] = list(os.getloadavg())
            payload["wall_s"] = round(time.time() - started, 1)
            write_results(args.name, payload, markdown(payload))  # after every model: a killed run keeps its results
    payload["load_after"] = list(os.getloadavg())
    payload["wall_s"] = round(time.time() - started, 1)
    md = markdown(payload)
    write_results(args.name, payload, md)
    print(md)


if __name__ == "__main__":
    sys.exit(main())
