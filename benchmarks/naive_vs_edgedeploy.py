"""edgedeploy's fp32 artifacts vs the naive path (no toolkit) per runtime: onnxruntime, MNN, LiteRT, ncnn.

Run: ``python benchmarks/naive_vs_edgedeploy.py [--models edgeformer_s,mobilevit_s,emo_5m,edgevit_xs]
[--runtimes onnxruntime,mnn,litert,ncnn] [--blocks 8] [--iters 10] [--threads 2] [--clock wall|cpu]
[--cache-dir DIR] [--gemm-reps 3] [--int8] [--name naive_vs_edgedeploy]``.
``--clock cpu --threads 1`` records process CPU time per inference instead of latency (for a busy host); the wall
latency of every sample is recorded beside it. ``--cache-dir`` keeps the naive artifacts for re-runs (edgedeploy's
own artifacts come from its export cache, ``edgedeploy.export(..., cache=True)``).
Writes ``benchmarks/results/<name>.json`` (every raw sample, the machine) and ``<name>.md``: one table per runtime.

The naive path is what a user gets with no toolkit, on the same ``nn.Module`` the zoo builds (random init, eval):

* ONNX: ``torch.onnx.export(module, (x,), path)`` with torch's default exporter (torch 2.13: the dynamo exporter,
  opset 20), then ``onnxsim.simplify``; run in onnxruntime with default session options except
  ``intra_op_num_threads = threads`` (CPU execution provider);
* MNN: that simplified ONNX file through MNN's compiled converter (``_tools.mnnconvert``, default flags; never
  ``MNN.tools``), run with the Express ``Module`` API, ``numThread = threads``, default precision (MNN's
  "normal"; on x86 this is fp32 compute);
* LiteRT: ``litert_torch.convert(module, (x,)).export(path)`` of the un-lowered module, run with the LiteRT
  interpreter edgedeploy's ``litert`` runtime uses (``ai_edge_litert``, XNNPACK, ``num_threads = threads``);
* ncnn: ``torch.jit.trace(module, x)`` saved, then the pnnx executable with only ``inputshape=[1,3,H,W]``
  (pnnx's defaults otherwise: ``optlevel=2``, fp16 weights), run with edgedeploy's ``ncnn`` runtime (fp32 compute:
  every reduced-precision option off, ``num_threads = threads``). If pnnx writes no loadable file the table says so
  with pnnx's or ncnn's reason; a file whose output differs from PyTorch is timed and flagged.

edgedeploy's path is the toolkit's own fp32 export for each format (lowering, exporter choice, converter flags,
runtime settings: whatever the toolkit does by default), made with the public API (``edgedeploy.export``,
parity-checked; a failed parity aborts the run) and loaded with the runtimes the toolkit's ``bench`` uses
(``edgedeploy.runtimes``), ``threads`` threads.

Method (TOOLCHAIN_NOTES.md, "Timing on this machine"): per model, every session (naive / edgedeploy per runtime)
and per runtime a control (a second session of the naive file, last in the session order) are loaded in this
process and timed in interleaved blocks (order reversed every other block), ``iters`` timed runs per session per
block after 2 warm-up runs. Reported: the median over all samples per session; per runtime the median of per-block
paired ratios edgedeploy / naive and naive-again / naive (the control); best-vs-best: the paired ratio of
edgedeploy's fastest runtime (by median) against the naive path's fastest runtime; slow blocks (a block median
above 1.3× the fastest block median of the same session).

``--int8`` (onnxruntime): two int8 candidates join the same interleaved blocks. naive int8 = what a user gets
without edgedeploy: ``onnxruntime.quantization.quantize_static(naive.onnx, out, reader)`` with its defaults (QDQ,
per-tensor int8 weights and activations, MinMax; no ``quant_pre_process``), calibrated on the calibration images
edgedeploy uses (``edgedeploy.export.calibration.default_calibration_set``); edgedeploy int8 =
``edgedeploy.export(model, "onnx", precision="int8")`` (parity-checked; a failed parity is reported, not timed).
Each gets its top-1 agreement with PyTorch fp32 and with its own fp32 file, and the logits' cosine, on
``int8_speedup.agreement_set`` (≥ 200 inputs, none a calibration image; ``int8_speedup.agreement_of``). The best-
vs-best table then takes, per side, the fastest qualifying candidate of any precision: fp32 whose output matches
PyTorch, or int8 with top-1 agreement ≥ ``INT8_GATE`` (0.99) vs PyTorch fp32; int8 rows that do not qualify are
listed with the reason. The fp32-only best vs best stays beside it.

Efficiency: the 2048 × 2048 × 2048 fp32 GEMM (``numpy.matmul``, OpenBLAS with ``threads`` threads) is timed
``--gemm-reps`` times before and after every model, on the same clock; its median GMAC/s (2048³ MACs / time) is the
machine's ceiling. Per model and runtime: GMAC/s = the un-lowered zoo module's MACs (``edgedeploy.zoo.count_macs``:
conv + linear + matmul, the EdgeFormer / MobileViT convention) ÷ the median time, and its share of the ceiling.
With ``--ceiling runtime`` each runtime's own 2048³ product is timed as well, the same number of times and on
the same clock (``gemm_ceiling.sessions``: edgedeploy's parity-checked artifact of ``nn.Linear(2048, 2048)``
loaded as ``bench`` loads it), and each runtime's table uses that runtime's GEMM as its ceiling (MNN: its
MatMul / convolution kernel, not OpenBLAS); numpy's stays in the JSON. MNN shares its CPU thread pool between at
most two multi-threaded runtimes of a process, so use it with ``--threads 1`` for MNN.
The load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import threads_from_argv

# OpenBLAS (numpy's matmul, the GEMM ceiling) reads its thread count at import
os.environ.setdefault("OPENBLAS_NUM_THREADS", threads_from_argv(sys.argv, "2"))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before anything imports onnxruntime

import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    comma_choices,
    cpu_flags,
    dual_interleaved,
    first_line,
    gemm_ceiling,
    interleaved,
    load_note,
    machine_description,
    summarize_pair,
    write_results,
)
from int8_speedup import agreement_of, agreement_set

from edgedeploy._util import captured_fd_output
from edgedeploy.cards import get_card
from edgedeploy.data import real_image
from edgedeploy.export.calibration import default_calibration_set
from edgedeploy.export.mnn import onnx_to_mnn
from edgedeploy.export.pipeline import export_model
from edgedeploy.export.quantize import ort_calibration_reader
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.runtimes.mnn_rt import import_mnn
from edgedeploy.zoo import build_model, count_macs

DEFAULT_MODELS = "edgeformer_s,mobilevit_s,emo_5m,edgevit_xs"
#: runtime -> (edgedeploy format, label in session names and tables)
RUNTIMES = {"onnxruntime": ("onnx", "onnxruntime"), "mnn": ("mnn", "MNN"), "litert": ("tflite", "LiteRT"),
            "ncnn": ("ncnn", "ncnn")}  # fmt: skip
FORMAT_OF = {rt: fmt for rt, (fmt, _) in RUNTIMES.items()}
LABEL_OF = {rt: label for rt, (_, label) in RUNTIMES.items()}
#: runtime → its 2048³ product (``--ceiling runtime``), filled by :func:`main`
GEMM_SESSIONS: dict[str, Callable[[], Any]] = {}
#: a naive artifact whose output is further than this from PyTorch's (max abs, logits) is flagged "wrong"
WRONG_ABS = 1e-2


# ------------------------------------------------------------------------------------------------ naive path


def naive_onnx(module: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    """``torch.onnx.export(module, (x,), path)`` (default exporter) then onnxsim; returns the simplified file."""
    import onnx
    import onnxsim

    if path.is_file():  # --cache-dir: converted once
        return path
    raw = path.with_name(path.stem + ".raw.onnx")
    with warnings.catch_warnings(), torch.no_grad(), captured_fd_output():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(raw))
    model = onnx.load(str(raw))  # loads a side .onnx.data file too, when the exporter wrote one
    with captured_fd_output():
        simplified, ok = onnxsim.simplify(model)
    onnx.save(simplified if ok else model, str(path))
    return path


def naive_tflite(module: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    """``litert_torch.convert(module, (x,)).export(path)``: what a LiteRT user does without a toolkit."""
    if path.is_file():
        return path
    import litert_torch

    with warnings.catch_warnings(), torch.no_grad(), captured_fd_output():
        warnings.simplefilter("ignore")
        litert_torch.convert(module.eval(), (x,)).export(str(path))
    return path


def naive_ncnn(module: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    """``torch.jit.trace`` + the pnnx executable with only ``inputshape`` (pnnx's defaults): ``path`` (.param).

    Raises ``RuntimeError`` with pnnx's last line when it writes no ncnn pair.
    """
    from edgedeploy.export.ncnn import bin_path, pnnx_executable

    if path.is_file() and bin_path(path).is_file():
        return path
    work = path.parent / (path.stem + ".pnnx")
    work.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.jit.trace(module.eval(), (x,)).save(str(work / "model.pt"))
    shape = ",".join(str(int(d)) for d in x.shape)
    proc = subprocess.run(
        [str(pnnx_executable()), "model.pt", f"inputshape=[{shape}]"],
        cwd=work, capture_output=True, text=True, errors="replace", timeout=1800, check=False,
    )  # fmt: skip
    (work / "pnnx.log").write_text(proc.stdout + proc.stderr)
    param, weights = work / "model.ncnn.param", work / "model.ncnn.bin"
    if proc.returncode != 0 or not param.is_file() or not weights.is_file():
        tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise RuntimeError(f"pnnx exit {proc.returncode}, no ncnn pair: {tail[-1][:200] if tail else 'no output'}")
    os.replace(weights, bin_path(path))
    os.replace(param, path)
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


def naive_int8_onnx(src: Path, dst: Path, size: int) -> tuple[Path, list[str]]:
    """``quantize_static(src, dst, reader)`` with onnxruntime's defaults (QDQ, per-tensor int8 weights and
    activations, MinMax) on the naive fp32 file, calibrated on edgedeploy's default calibration set
    (:func:`~edgedeploy.export.calibration.default_calibration_set`: the embedded photo's 16 crops and flips).

    Returns ``(dst, the quantizer's logged warnings)``; exceptions propagate (a failure is a result).
    """
    import logging

    import onnx
    from onnxruntime import quantization as q

    if dst.is_file():  # --cache-dir: quantized once
        return dst, []
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    arrays = default_calibration_set(size).arrays("NCHW")

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(first_line(record.getMessage()))

    keep = Keep()
    root = logging.getLogger()
    root.addHandler(keep)
    part = dst.with_name(dst.stem + ".part.onnx")
    try:
        with warnings.catch_warnings(), captured_fd_output():
            warnings.simplefilter("ignore")
            q.quantize_static(str(src), str(part), ort_calibration_reader(name, arrays))
    finally:
        root.removeHandler(keep)
    os.replace(part, dst)
    return dst, sorted(set(keep.lines))


def _naive_runtime(
    runtime: str, module: torch.nn.Module, x: torch.Tensor, ref: np.ndarray, folder: Path, threads: int
) -> tuple[list[Callable[[], Any]], dict[str, Any]]:
    """Convert the naive artifact for ``runtime`` and load it twice: ([fn, control fn], info)."""
    xn = x.numpy()
    model = folder.name
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    if runtime in ("onnxruntime", "mnn"):
        onnx_path = naive_onnx(module, x, folder / f"{model}.naive.onnx")
        if runtime == "onnxruntime":
            import onnx

            g = onnx.load(str(onnx_path), load_external_data=False)
            info["onnx_opset"] = next((o.version for o in g.opset_import if o.domain in ("", "ai.onnx")), None)
            info["onnx_nodes"] = len(g.graph.node)
            info["convert_s"] = round(time.perf_counter() - t0, 2)
            sessions = [naive_ort(onnx_path, threads) for _ in range(2)]
            in_name = sessions[0].get_inputs()[0].name
            feed = {in_name: xn}
            out = sessions[0].run(None, feed)[0]
            fns = [lambda s=s: s.run(None, feed) for s in sessions]
        else:
            mnn_path = folder / f"{model}.naive.mnn"
            if not mnn_path.is_file():
                onnx_to_mnn(onnx_path, mnn_path)  # the compiled converter with default flags (+ --bizCode)
            info["convert_s"] = round(time.perf_counter() - t0, 2)
            mods = [naive_mnn(mnn_path, threads) for _ in range(2)]
            F = import_mnn().expr
            var = F.const(xn, list(xn.shape), F.NCHW)
            out = np.array(mods[0].forward(var).read(), dtype=np.float32).reshape(ref.shape)
            fns = [lambda m=m: m.forward(var).read() for m in mods]
    elif runtime == "litert":
        path = naive_tflite(module, x, folder / f"{model}.naive.tflite")
        info["convert_s"] = round(time.perf_counter() - t0, 2)
        from edgedeploy.runtimes.litert_rt import tflite_op_census

        census = tflite_op_census(path)
        info["ops"] = sum(census.values())
        info["op_census"] = census
        rt = get_runtime("litert")
        sessions = [rt.load(path, threads) for _ in range(2)]
        out = sessions[0].run(xn).reshape(ref.shape)
        fns = [s.prepare(xn) for s in sessions]
    elif runtime == "ncnn":
        from edgedeploy.export.ncnn import unconverted_layers
        from edgedeploy.runtimes.ncnn_rt import ncnn_op_census

        path = naive_ncnn(module, x, folder / f"{model}.naive.param")
        info["convert_s"] = round(time.perf_counter() - t0, 2)
        census = ncnn_op_census(path)
        info["ops"] = sum(census.values())
        info["op_census"] = census
        left = unconverted_layers(path)
        if left:
            info["unconverted"] = {k: len(v) for k, v in left.items()}
        rt = get_runtime("ncnn")
        try:
            sessions = [rt.load(path, threads) for _ in range(2)]
        except Exception as e:
            names = ", ".join(f"{k} ×{len(v)}" for k, v in left.items())
            raise RuntimeError(
                f"pnnx left ops ncnn has no layer for ({names}); ncnn: {first_line(e)}" if left else first_line(e)
            ) from e
        out = sessions[0].run(xn).reshape(ref.shape)
        fns = [s.prepare(xn) for s in sessions]
    else:
        raise SystemExit(f"unknown runtime {runtime!r} (one of {', '.join(RUNTIMES)})")
    info["max_abs_error_vs_torch"] = float(np.abs(out - ref).max())
    info["top1_equal_torch"] = bool(int(out.argmax()) == int(ref.argmax()))
    if info["max_abs_error_vs_torch"] > WRONG_ABS:
        info["wrong_output"] = True
    return fns, info


def naive_sessions(
    model: str, folder: Path, threads: int, runtimes: list[str]
) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """{"naive <label>": fn, "naive <label> again": control fn, ...} and info per runtime (errors, failures)."""
    card = get_card(model)
    size = card.input_size
    module = build_model(card, size).eval()
    x = torch.from_numpy(real_image(size))
    with torch.no_grad():
        ref = module(x).numpy()
    info: dict[str, Any] = {"macs": count_macs(module, size).total}
    fns: dict[str, Callable[[], Any]] = {}
    for runtime in runtimes:
        label = LABEL_OF[runtime]
        print(f"   naive {label} ...", flush=True)
        try:
            (fn, again), info[runtime] = _naive_runtime(runtime, module, x, ref, folder, threads)
        except Exception as e:  # noqa: BLE001 - a naive path that fails is a result
            info[runtime] = {"error": f"{type(e).__name__}: {first_line(e)}"}
            print(f"   naive {label} failed: {info[runtime]['error']}", flush=True)
            continue
        fns[f"naive {label}"] = fn
        fns[f"naive {label} again"] = again
    return fns, info


# ------------------------------------------------------------------------------------------ edgedeploy path
def edgedeploy_sessions(
    model: str, folder: Path, threads: int, runtimes: list[str]
) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """{"edgedeploy onnxruntime": fn, "edgedeploy MNN": fn, ...} from the toolkit's own fp32 exports.

    Exports go through the public API (``edgedeploy.export``, parity-checked; from edgedeploy's export cache when
    ``folder`` is None); sessions are the runtimes' ``load`` with the toolkit's default settings, as
    ``edgedeploy bench`` uses them.
    """
    import edgedeploy

    size = get_card(model).input_size
    x = real_image(size)
    fns: dict[str, Callable[[], Any]] = {}
    info: dict[str, Any] = {}
    for runtime in runtimes:
        fmt = FORMAT_OF[runtime]
        print(f"   edgedeploy {fmt} ...", flush=True)
        t0 = time.perf_counter()
        if folder is None:
            outcome = edgedeploy.export(model, fmt, cache=True)
        elif hasattr(edgedeploy, "export"):
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
            "artifact": str(outcome.artifact),
            "exporter": m.exporter,
            "opset": m.opset,
            "rewritten_modules": len(m.lowering.get("rewritten", [])),
            "op_census_total": sum(m.op_census.values()),
            "op_census": m.op_census,
            "parity_max_abs": outcome.parity.to_dict().get("max_abs_error"),
            "notes": m.notes,
            "runtime_settings": getattr(session, "settings", {}),
        }
        fns[f"edgedeploy {LABEL_OF[runtime]}"] = session.prepare(x)
    return fns, info


# ------------------------------------------------------------------------------------------- int8 (--int8)
#: an int8 candidate qualifies for best-vs-best when its top-1 agreement with PyTorch fp32 is at least this
INT8_GATE = 0.99
INT8_NAIVE, INT8_OURS = "naive onnxruntime int8", "edgedeploy onnxruntime int8"
NAIVE_INT8_METHOD = "quantize_static(fp32 file, out, reader) with onnxruntime's defaults: QDQ, per-tensor int8 " \
    "weights and int8 activations, MinMax; no pre-processing"  # fmt: skip


def _qualify(entry: dict[str, Any]) -> None:
    """Set ``entry["qualifies"]`` and ``entry["reason"]`` from its error or its top-1 agreement (:data:`INT8_GATE`)."""
    if "error" in entry:
        entry["qualifies"], entry["reason"] = False, entry["error"]
        return
    a = entry["agreement"]
    top1 = a["top1_int8_vs_torch"]
    entry["qualifies"] = top1 >= INT8_GATE
    sign = "≥" if entry["qualifies"] else "<"
    entry["reason"] = f"top-1 vs PyTorch fp32 {top1:.3f} {sign} {INT8_GATE} on {a['inputs']} inputs"


def int8_sessions(
    model: str, folder: Path, cached: bool, threads: int, ed_fp32: Path
) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """The onnxruntime int8 candidates of ``--int8``: ``{INT8_NAIVE: fn, INT8_OURS: fn}`` (those that were made and,
    for edgedeploy's, passed the export's parity) and per candidate how it was made, its agreement
    (``int8_speedup.agreement_of`` on ``int8_speedup.agreement_set``: ≥ 200 inputs, none a calibration image) with
    PyTorch fp32 and with the fp32 file it came from (``folder/<model>.naive.onnx`` / ``ed_fp32``), and whether it
    qualifies for best-vs-best (:func:`_qualify`). edgedeploy's is ``edgedeploy.export(model, "onnx",
    precision="int8")`` from the export cache when ``cached``, else written into ``folder / "onnx_int8"``.
    A candidate that cannot be made is recorded with its error, not raised.
    """
    import edgedeploy

    card = get_card(model)
    size = card.input_size
    module = build_model(card, size).eval()
    inputs, names = agreement_set(size)
    with torch.no_grad():
        ref = [module(torch.from_numpy(a)).numpy() for a in inputs]
    xn = real_image(size)
    fns: dict[str, Callable[[], Any]] = {}
    naive: dict[str, Any] = {"method": NAIVE_INT8_METHOD, "calibration": default_calibration_set(size).describe()}
    ours: dict[str, Any] = {}
    print(f"   {INT8_NAIVE} ...", flush=True)
    src, t0 = folder / f"{model}.naive.onnx", time.perf_counter()
    try:
        path, naive["quantizer_log"] = naive_int8_onnx(src, folder / f"{model}.naive.int8.onnx", size)
        naive["quantize_s"] = round(time.perf_counter() - t0, 2)
        naive["artifact"], naive["artifact_bytes"] = str(path), path.stat().st_size
        f32, i8 = naive_ort(src, threads), naive_ort(path, threads)
        n32, n8 = f32.get_inputs()[0].name, i8.get_inputs()[0].name
        runs = {"fp32": lambda a: f32.run(None, {n32: a})[0], "int8": lambda a: i8.run(None, {n8: a})[0]}
        naive["agreement"] = agreement_of(runs, inputs, ref, names)
        feed = {n8: xn}
        fns[INT8_NAIVE] = lambda: i8.run(None, feed)
    except Exception as e:  # noqa: BLE001 - a naive int8 path that fails is a result
        naive["error"] = f"{type(e).__name__}: {first_line(e)}"
    print(f"   {INT8_OURS} ...", flush=True)
    t0 = time.perf_counter()
    try:
        if cached:
            outcome = edgedeploy.export(model, "onnx", precision="int8", cache=True)
        else:
            outcome = edgedeploy.export(model, "onnx", precision="int8", out=folder / "onnx_int8")
        m = outcome.manifest
        ours.update(export_s=round(time.perf_counter() - t0, 2), artifact=str(outcome.artifact),
                    artifact_bytes=m.size_bytes, method=(m.quantization or {}).get("method", "?"),
                    calibration=(m.quantization or {}).get("calibration"), parity=outcome.parity.to_dict())  # fmt: skip
        if outcome.parity.status != "passed":
            ours["error"] = f"edgedeploy's int8 artifact failed its export parity ({outcome.parity.status}): not timed"
        else:
            rt = get_runtime("onnxruntime")
            s8, s32 = rt.load(outcome.artifact, threads), rt.load(ed_fp32, threads)
            ours["agreement"] = agreement_of({"fp32": s32.run, "int8": s8.run}, inputs, ref, names)
            fns[INT8_OURS] = s8.prepare(xn)
    except Exception as e:  # noqa: BLE001 - an export that fails is a result
        ours["error"] = f"{type(e).__name__}: {first_line(e)}"
    for entry in (naive, ours):
        _qualify(entry)
    info = {"agreement_inputs": len(inputs), "gate_top1_vs_torch": INT8_GATE, INT8_NAIVE: naive, INT8_OURS: ours}
    for k in (INT8_NAIVE, INT8_OURS):
        print(f"   {k}: {info[k]['reason']}", flush=True)
    return fns, info


def _int8_results(res: dict[str, Any], samples: dict[str, Any], wall: dict[str, Any]) -> None:
    """``res["int8_pairs"]``: each int8 candidate paired with the fp32 session of its own side (b / a = int8 /
    fp32, < 1: int8 faster) and edgedeploy's int8 with the naive int8 (``"int8 vs int8"``), on both clocks."""
    pairs: dict[str, Any] = {}
    for a, b in (("naive onnxruntime", INT8_NAIVE), ("edgedeploy onnxruntime", INT8_OURS), (INT8_NAIVE, INT8_OURS)):
        if a in samples and b in samples:
            key = "int8 vs int8" if a == INT8_NAIVE else b
            wp = summarize_pair(wall[a], wall[b])["median_paired_ratio"]
            pairs[key] = {**summarize_pair(samples[a], samples[b]), "wall_median_paired_ratio": wp}
    res["int8_pairs"] = pairs


def _best(res: dict[str, Any], samples: dict[str, Any], wall: dict[str, Any], candidates: tuple[list, list]) -> Any:
    """The paired ratio of the fastest (by median) of ``candidates[1]`` (edgedeploy) against the fastest of
    ``candidates[0]`` (naive), on both clocks; None when either side has no candidate."""
    naive, ours = candidates
    if not naive or not ours:
        return None
    nb = min(naive, key=lambda k: res["median_ms"][k])
    eb = min(ours, key=lambda k: res["median_ms"][k])
    return {"naive": nb, "edgedeploy": eb, **summarize_pair(samples[nb], samples[eb]),
            "wall_median_paired_ratio": summarize_pair(wall[nb], wall[eb])["median_paired_ratio"]}  # fmt: skip


# ----------------------------------------------------------------------------------------------------- main
def runtime_gemm(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[dict[str, float]]]:
    """``reps`` timings of each runtime's 2048³ product (``gemm_ceiling.sessions``), as :func:`gemm_ceiling`."""
    out: dict[str, list[dict[str, float]]] = {}
    for name, fn in fns.items():
        fn()  # warm-up
        out[name] = []
        for _ in range(reps):
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            w1, c1 = time.perf_counter(), time.process_time()
            out[name].append({"cpu_s": c1 - c0, "wall_s": w1 - w0, "gmacs_cpu": 2048**3 / (c1 - c0) / 1e9,
                              "gmacs_wall": 2048**3 / (w1 - w0) / 1e9})  # fmt: skip
    return out


def run_model(model: str, args: argparse.Namespace, folder: Path, runtimes: list[str]) -> dict[str, Any]:
    print(f"== {model}", flush=True)
    gemm_before = gemm_ceiling(args.gemm_reps)
    rt_gemm_before = runtime_gemm(GEMM_SESSIONS, args.gemm_reps)
    mfolder = folder / model
    mfolder.mkdir(parents=True, exist_ok=True)
    naive, ninfo = naive_sessions(model, mfolder, args.threads, runtimes)
    ours, einfo = edgedeploy_sessions(model, None if args.cache_dir else mfolder, args.threads, runtimes)
    int8: dict[str, Callable[[], Any]] = {}
    if args.int8:
        int8, iinfo = int8_sessions(model, mfolder, bool(args.cache_dir), args.threads, Path(einfo["onnx"]["artifact"]))
    controls = {k: naive.pop(k) for k in [k for k in naive if k.endswith(" again")]}
    fns = {**naive, **ours, **int8, **controls}  # controls last: each is timed after a different session than its pair
    if args.clock == "wall":
        samples = interleaved(fns, args.blocks, args.iters)
        wall = samples
    else:
        samples, wall = dual_interleaved(fns, args.blocks, args.iters)
    gemm_after = gemm_ceiling(args.gemm_reps)
    rt_gemm_after = runtime_gemm(GEMM_SESSIONS, args.gemm_reps)
    res: dict[str, Any] = {
        "model": model,
        "input_size": get_card(model).input_size,
        "macs": ninfo.pop("macs"),
        "naive": ninfo,
        "edgedeploy": einfo,
        "gemm": gemm_before + gemm_after,
    }
    if GEMM_SESSIONS:
        res["gemm_runtime"] = {k: rt_gemm_before[k] + rt_gemm_after[k] for k in GEMM_SESSIONS}
    res["samples_ms"] = samples
    if args.clock == "cpu":
        res["wall_samples_ms"] = wall
    res["median_ms"] = {k: float(np.median(np.concatenate(v))) for k, v in samples.items()}
    res["wall_median_ms"] = {k: float(np.median(np.concatenate(v))) for k, v in wall.items()}
    res["pairs"], res["wall_pairs"], res["controls"] = {}, {}, {}
    for rt in runtimes:
        label = LABEL_OF[rt]
        a, b, c = f"naive {label}", f"edgedeploy {label}", f"naive {label} again"
        if a in samples and b in samples:
            res["pairs"][rt] = summarize_pair(samples[a], samples[b])
            res["wall_pairs"][rt] = summarize_pair(wall[a], wall[b])
        if a in samples and c in samples:
            res["controls"][rt] = summarize_pair(samples[a], samples[c])
    fp32_keys = [k for k in samples if not k.endswith((" again", " int8"))]
    naive_ok = [k for k in fp32_keys if k.startswith("naive") and not ninfo.get(_runtime_of(k), {}).get("wrong_output")]
    ed_fp32 = [k for k in fp32_keys if k.startswith("edgedeploy")]  # every one passed parity (else the run stops)
    if best := _best(res, samples, wall, (naive_ok, ed_fp32)):
        res["best"] = best  # fp32 only
    if args.int8:
        res["int8"] = iinfo
        _int8_results(res, samples, wall)
        ok = [k for k in (INT8_NAIVE, INT8_OURS) if iinfo[k]["qualifies"] and k in samples]
        naive_any = naive_ok + [k for k in ok if k.startswith("naive")]
        res["best_qualifying"] = _best(res, samples, wall, (naive_any, ed_fp32 + [k for k in ok if k == INT8_OURS]))
    for k, v in res["median_ms"].items():
        print(f"   {k:26s} median {v:7.2f} ms ({args.clock}); wall {res['wall_median_ms'][k]:7.2f} ms", flush=True)
    for rt, p in res["pairs"].items():
        c = res["controls"].get(rt, {}).get("median_paired_ratio", float("nan"))
        print(f"   {rt:11s} edgedeploy/naive paired {p['median_paired_ratio']:.3f} (slow blocks {p['slow_blocks']}); "
              f"control {c:.3f}", flush=True)  # fmt: skip
    for k, p in res.get("int8_pairs", {}).items():
        print(f"   {k:28s} paired {p['median_paired_ratio']:.3f} (slow blocks {p['slow_blocks']})", flush=True)
    if b := res.get("best_qualifying"):
        print(f"   best qualifying: {b['edgedeploy']} / {b['naive']} paired {b['median_paired_ratio']:.3f}", flush=True)
    return res


def _runtime_of(session: str) -> str:
    label = session.split()[1]
    return next(rt for rt, lab in LABEL_OF.items() if lab == label)


def ceiling(payload: dict[str, Any], runtime: str | None = None) -> float:
    """The GEMM ceiling in GMAC/s on the run's clock: the median over every timed 2048³ product of the run —
    ``runtime``'s own product when the run timed it (``--ceiling runtime``), else numpy's."""
    key = "gmacs_cpu" if payload["clock"] == "cpu" else "gmacs_wall"
    if runtime and all(runtime in r.get("gemm_runtime", {}) for r in payload["models"]):
        return float(np.median([g[key] for r in payload["models"] for g in r["gemm_runtime"][runtime]]))
    return float(np.median([g[key] for r in payload["models"] for g in r["gemm"]]))


def _eff(r: dict[str, Any], session: str, ceil: float) -> str:
    if session not in r["median_ms"]:
        return "–"
    g = r["macs"] / (r["median_ms"][session] * 1e-3) / 1e9
    return f"{g:.1f} ({100 * g / ceil:.0f} %)"


def _ratio(pair: dict[str, Any] | None) -> str:
    return f"{pair['median_paired_ratio']:.3f}" if pair else "–"


def _naive_why(n: dict[str, Any]) -> str:
    if "error" in n:
        return f"naive: no file — {n['error']}"
    s = f"max abs vs torch {n['max_abs_error_vs_torch']:.1e}"
    if n.get("wrong_output"):
        s += f" — **naive output wrong** (top-1 {'kept' if n.get('top1_equal_torch') else 'changed'})"
    if n.get("ops"):
        s += f"; {n['ops']} ops"
    if n.get("onnx_nodes"):
        s += f"; ONNX opset {n.get('onnx_opset')}, {n['onnx_nodes']} nodes after onnxsim"
    return s


def markdown(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    ceil = ceiling(payload)
    clock = "process CPU time per inference" if payload.get("clock") == "cpu" else "wall (latency)"
    gkey = "gmacs_cpu" if payload["clock"] == "cpu" else "gmacs_wall"
    gemms = [g[gkey] for r in payload["models"] for g in r["gemm"]]
    v = payload["versions"]
    lines = [
        f"# edgedeploy vs the naive path ({payload['label']})",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} logical cores, flags {' '.join(payload['cpu_flags'])}; "
        f"{m['platform']}, Python {m['python']}, torch {torch.__version__}, "
        + ", ".join(f"{k} {val}" for k, val in v.items() if k != "torch")
        + f"; edgedeploy commit {str(m.get('package_commit') or '?')[:10]}; {m['date']}.",
        f"Load average (1/5/15 min) before {'/'.join(f'{x:.2f}' for x in payload['load_before'])}, after "
        f"{'/'.join(f'{x:.2f}' for x in payload['load_after'])}: "
        f"{load_note(payload['load_before'][0], payload['load_after'][0], m['cores'])}."
        + (f" {payload['conditions']}" if payload.get("conditions") else ""),
        f"Clock: {clock}; {payload['threads']} thread(s), {payload['blocks']} interleaved blocks × {payload['iters']} "
        f"runs per session; wall {payload['wall_s']} s. Ratios are medians of per-block paired ratios edgedeploy / "
        "naive (< 1: edgedeploy faster). 'control': a second session of the naive file of the same runtime, paired "
        "with the first the same way: its distance from 1.000 is the harness's own bias and noise for identical "
        "graphs. Slow blocks: either side's block median > 1.3× its fastest block (pair / control).",
        f"Ceiling: 2048³ fp32 GEMM (numpy.matmul, OpenBLAS, {payload['threads']} thread(s)), same clock, "
        f"{len(gemms)} products before / after each model: median **{ceil:.1f} GMAC/s** (min {min(gemms):.1f}, "
        f"max {max(gemms):.1f}). GMAC/s = the un-lowered model's MACs (conv + linear + matmul, "
        "`edgedeploy.zoo.count_macs`) ÷ median time; (%) = share of the ceiling.",
    ]
    for rt in payload["runtimes"]:
        label = LABEL_OF[rt]
        rt_ceil = ceiling(payload, rt)
        lines += [
            "",
            f"## {label}",
            "",
            *(
                [
                    f"Ceiling of this table: {label}'s own 2048³ fp32 GEMM (`gemm_ceiling.py`'s session), same clock, "
                    f"before / after each model: median **{rt_ceil:.1f} GMAC/s**.",
                    "",
                ]
                if rt_ceil != ceil
                else []
            ),
            "| model | GMACs | naive ms | edgedeploy ms | edgedeploy ÷ naive (paired) | wall-clock paired | "
            "control (same file) | slow blocks pair / control | naive GMAC/s (% ceiling) | "
            "edgedeploy GMAC/s (% ceiling) | naive path |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
        ]
        for r in payload["models"]:
            med, n = r["median_ms"], r["naive"].get(rt, {})
            a, b = f"naive {label}", f"edgedeploy {label}"
            p, wp, c = r["pairs"].get(rt), r["wall_pairs"].get(rt), r["controls"].get(rt)
            lines.append(
                f"| {r['model']} @{r['input_size']} | {r['macs'] / 1e9:.2f} | "
                f"{f'{med[a]:.2f}' if a in med else '–'} | {f'{med[b]:.2f}' if b in med else '–'} | "
                f"{_ratio(p)} | {_ratio(wp)} | {_ratio(c)} | "
                f"{p['slow_blocks'] if p else '–'} / {c['slow_blocks'] if c else '–'} of {payload['blocks']} | "
                f"{_eff(r, a, rt_ceil)} | {_eff(r, b, rt_ceil)} | {_naive_why(n)} |"
            )
    if payload.get("int8"):
        lines += int8_markdown(payload)
    if len(payload["runtimes"]) > 1:
        title = "fp32 only" if payload.get("int8") else "paired"
        lines += ["", f"## Best edgedeploy artifact vs best naive one ({title})", ""]
        lines += ["| model | best naive | best edgedeploy | paired ratio | slow blocks |", "|---|---|---|---:|---:|"]
        for r in payload["models"]:
            b = r.get("best")
            if b:
                lines.append(
                    f"| {r['model']} | {b['naive']} {b['median_a_ms']:.2f} ms | {b['edgedeploy']} "
                    f"{b['median_b_ms']:.2f} ms | {b['median_paired_ratio']:.3f} | {b['slow_blocks']} |"
                )
    lines += ["", "## What each side ran", ""]
    for r in payload["models"]:
        lines.append(f"- **{r['model']}**")
        for rt in payload["runtimes"]:
            n = r["naive"].get(rt, {})
            lines.append(f"  - naive {LABEL_OF[rt]}: {_naive_why(n)}"
                         + (f"; converted in {n['convert_s']} s" if "convert_s" in n else ""))  # fmt: skip
        for fmt, e in r["edgedeploy"].items():
            lines.append(
                f"  - edgedeploy {fmt}: {e['exporter']}; opset {e['opset']}; {e['op_census_total']} ops; "
                f"parity max abs {e['parity_max_abs']}"
                + (f"; runtime settings {e['runtime_settings']}" if e.get("runtime_settings") else "")
            )
    return "\n".join(lines) + "\n"


def _agreement_cells(a: dict[str, Any]) -> str:
    return (
        f"{a['top1_int8_vs_torch']:.3f} ({a['inputs']}; {a['distinct_fp32_classes']}) | {a['top1_int8_vs_fp32']:.3f} | "
        f"{a['cosine_min']:.4f} / {a['cosine_median']:.4f} | {a['cosine_min_vs_torch']:.4f}"
    )


def int8_markdown(payload: dict[str, Any]) -> list[str]:
    """The ``--int8`` sections: the int8 candidates (qualifying or not, with the reason) and best vs best over
    every qualifying candidate."""
    gate = payload.get("int8_gate", INT8_GATE)
    lines = [
        "",
        "## int8 candidates (onnxruntime)",
        "",
        f"naive int8: {NAIVE_INT8_METHOD}, calibrated on edgedeploy's default calibration set (the embedded photo's "
        '16 crops and flips, `edgedeploy.export.calibration`). edgedeploy int8: `edgedeploy.export(model, "onnx", '
        'precision="int8")` (its method column). Agreement: `int8_speedup.agreement_set` (seeded views of the '
        "embedded photo and of matplotlib's other sample pictures; none equals a calibration image, checked by "
        "sha256), top-1 of int8 vs PyTorch fp32 and vs the fp32 file it was quantized from; cosine of the logits. "
        f"Qualifies for best vs best: top-1 vs PyTorch fp32 ≥ {gate}. int8 ÷ fp32: paired ratio against the fp32 "
        "session of the same side (< 1: int8 faster), same blocks and clock as the tables above.",
        "",
        "| model | candidate | int8 ms | int8 ÷ its fp32 (paired) | wall paired | slow blocks | top-1 vs PyTorch "
        "fp32 (inputs; distinct fp32 classes) | top-1 vs its fp32 file | cosine vs fp32 file min / median | "
        "cosine vs PyTorch min | qualifies | method |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in payload["models"]:
        for k in (INT8_NAIVE, INT8_OURS):
            e, p = r["int8"][k], r.get("int8_pairs", {}).get(k)
            a = e.get("agreement")
            ms = f"{r['median_ms'][k]:.2f}" if k in r["median_ms"] else "–"
            timing = f"{_ratio(p)} | {p['wall_median_paired_ratio']:.3f} | {p['slow_blocks']} of {p['blocks']}" if p \
                else "– | – | –"  # fmt: skip
            agree = _agreement_cells(a) if a else "– | – | – | –"
            verdict = ("yes" if e["qualifies"] else "**no**") + f": {e['reason']}"
            lines.append(f"| {r['model']} @{r['input_size']} | {k} | {ms} | {timing} | {agree} | {verdict} | "
                         f"{e.get('method', '?')} |")  # fmt: skip
    one = [
        r["model"]
        for r in payload["models"]
        if any(r["int8"][k].get("agreement", {}).get("distinct_fp32_classes") == 1 for k in (INT8_NAIVE, INT8_OURS))
    ]
    if one:
        lines += [
            "",
            f"Caveat: for {', '.join(one)} PyTorch fp32 gives every agreement input the same top-1 class (1 distinct "
            "class; the zoo's weights are random-init), so top-1 agreement there tests little: the cosine columns are "
            "the stronger evidence that int8 tracks fp32.",
        ]
    lines += [
        "",
        "edgedeploy int8 ÷ naive int8 (paired, same blocks): "
        + "; ".join(
            f"{r['model']} {_ratio(r['int8_pairs'].get('int8 vs int8'))}"
            for r in payload["models"]
            if r.get("int8_pairs")
        )
        + ".",
        "",
        "## Best edgedeploy artifact vs best naive one, any precision (paired)",
        "",
        "Candidates: every session of the tables above. Qualifying = an fp32 artifact whose output matches PyTorch "
        f"(naive: max abs ≤ {WRONG_ABS:g} on the photo; edgedeploy: its export parity passed), or an int8 artifact "
        f"with top-1 agreement ≥ {gate} vs PyTorch fp32 on the agreement inputs. Best = the qualifying candidate "
        "with the lowest median; ratio = median of per-block paired ratios best edgedeploy / best naive "
        "(< 1: edgedeploy faster). Issue 22's target: ≤ 0.80.",
        "",
        "| model | best naive | best edgedeploy | paired ratio | wall paired | slow blocks | fp32-only ratio | "
        "≤ 0.80 | int8 candidates left out |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in payload["models"]:
        b, f = r.get("best_qualifying"), r.get("best")
        out = "; ".join(
            f"{k}: {r['int8'][k]['reason']}" for k in (INT8_NAIVE, INT8_OURS) if not r["int8"][k]["qualifies"]
        )
        if not b:
            lines.append(f"| {r['model']} | – | – | – | – | – | {_ratio(f)} | – | {out or 'none'} |")
            continue
        lines.append(
            f"| {r['model']} | {b['naive']} {b['median_a_ms']:.2f} ms | {b['edgedeploy']} {b['median_b_ms']:.2f} ms | "
            f"**{b['median_paired_ratio']:.3f}** | {b['wall_median_paired_ratio']:.3f} | {b['slow_blocks']} | "
            f"{_ratio(f)} | {'yes' if b['median_paired_ratio'] <= 0.80 else 'no'} | {out or 'none'} |"
        )
    return lines


def _versions(runtimes: list[str]) -> dict[str, str]:
    from importlib.metadata import version

    out = {"torch": torch.__version__, "numpy": np.__version__}
    for rt in runtimes:
        out[rt] = get_runtime(rt).version()
    pkgs = {"onnxruntime": ("onnxsim",), "mnn": ("onnxsim",), "litert": ("litert-torch",), "ncnn": ("pnnx",)}
    for rt in runtimes:
        for pkg in pkgs[rt]:
            try:
                out[pkg] = version(pkg)
            except Exception:  # noqa: BLE001 - a missing distribution is reported, not fatal
                out[pkg] = "?"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--runtimes", default="onnxruntime,mnn", help=f"comma list of {', '.join(RUNTIMES)}")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="naive_vs_edgedeploy")
    ap.add_argument("--label", default="", help="free text for the results title (e.g. 'before')")
    ap.add_argument("--conditions", default="", help="free text on the run's conditions (load, shared cores)")
    ap.add_argument("--cache-dir", default="", help="keep naive artifacts here; edgedeploy's from its export cache")
    ap.add_argument("--gemm-reps", type=int, default=3, help="2048³ GEMM timings before and after every model")
    ap.add_argument(
        "--ceiling", choices=("numpy", "runtime"), default="numpy",
        help="runtime: each runtime's table against that runtime's own 2048³ GEMM (gemm_ceiling.py's sessions)",
    )  # fmt: skip
    ap.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="wall: perf_counter latency; cpu: process CPU time per inference (use with --threads 1 on a busy host)",
    )  # fmt: skip
    ap.add_argument(
        "--int8", action="store_true",
        help="add onnxruntime int8 candidates (naive quantize_static defaults, edgedeploy's int8 export) with their "
        "top-1 agreement; best vs best over every qualifying candidate",
    )  # fmt: skip
    args = ap.parse_args()
    runtimes = comma_choices(args.runtimes, RUNTIMES, "runtime")
    if args.int8 and "onnxruntime" not in runtimes:
        raise SystemExit("--int8 compares onnxruntime int8 artifacts: add onnxruntime to --runtimes")
    torch.set_num_threads(args.threads)
    started = time.time()
    payload: dict[str, Any] = {
        "label": args.label or args.name,
        "runtimes": runtimes,
        "threads": args.threads,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "clock": args.clock,
        "blocks": args.blocks,
        "iters": args.iters,
        "conditions": args.conditions,
        "ceiling": args.ceiling,
        "int8": args.int8,
        "int8_gate": INT8_GATE if args.int8 else None,
        "cpu_flags": cpu_flags(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "load_before": list(os.getloadavg()),
        "machine": machine_description(),
        "versions": _versions(runtimes),
        "models": [],
    }
    with tempfile.TemporaryDirectory(prefix="edgedeploy-naive-") as tmp:
        folder = Path(args.cache_dir) if args.cache_dir else Path(tmp)
        if args.ceiling == "runtime":
            from gemm_ceiling import sessions as gemm_sessions

            (Path(tmp) / "gemm").mkdir()
            fns, skipped = gemm_sessions(runtimes, args.threads, Path(tmp) / "gemm")
            GEMM_SESSIONS.update({rt: fns[rt] for rt in runtimes if rt in fns})
            payload["gemm_runtime_skipped"] = skipped
        for model in args.models.split(","):
            payload["models"].append(run_model(model, args, folder, runtimes))
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
