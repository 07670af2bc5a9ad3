"""The machine's GEMM ceiling as each runtime sees it: a 2048³ fp32 product in numpy, torch and every runtime.

Run: ``python benchmarks/gemm_ceiling.py [--threads 1] [--blocks 6] [--iters 3] [--runtimes onnxruntime,mnn,litert,ncnn]
[--name gemm_ceiling]``. Writes ``benchmarks/results/<name>.{json,md}``.

Why: ``naive_vs_edgedeploy.py`` divides each model's GMAC/s by numpy's 2048³ fp32 GEMM (OpenBLAS), and on this CPU
some models reached 100–135 % of it (issue 22): OpenBLAS on one thread is not the machine's limit. Here the same
product — ``Y = X · W``, ``X`` (1, 1, 2048, 2048) NCHW float32, ``W`` a constant 2048 × 2048 — runs in

* ``numpy.matmul`` (OpenBLAS; ``OPENBLAS_NUM_THREADS = threads``, set before numpy is imported),
* ``torch.matmul`` (torch's CPU BLAS, ``torch.set_num_threads(threads)``),
* each runtime, on the artifact ``edgedeploy.export`` makes of ``nn.Linear(2048, 2048, bias=False)`` applied to
  ``X`` (parity-checked; onnxruntime: MLAS ``MatMul``, MNN: its MatMul / convolution kernel, LiteRT: XNNPACK
  ``FULLY_CONNECTED``, ncnn: ``Gemm`` / ``InnerProduct``), loaded as ``edgedeploy bench`` loads it,
* onnxruntime int8: ``MatMulInteger`` on uint8 ``X`` × int8 ``W`` → int32 (MLAS's u8s8 kernel, VNNI where the CPU
  has it), the ceiling an int8 model's convolutions and MatMuls can approach,

interleaved in blocks (order reversed every other block), CPU time and wall time per product. The ceiling per
runtime is its median GMAC/s (2048³ multiply-accumulates ÷ time); the machine's fp32 ceiling is the highest of them.
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import threads_from_argv

os.environ.setdefault("OPENBLAS_NUM_THREADS", threads_from_argv(sys.argv, "1"))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    GEMM_N,
    block_parser,
    cpu_flags,
    dual_interleaved,
    first_line,
    machine_description,
    machine_markdown,
    write_results,
)

import edgedeploy
from edgedeploy.runtimes.base import get_runtime

MACS = GEMM_N**3


class GemmNet(torch.nn.Module):
    """``(1, 1, N, N)`` → ``(1, 1, N, N)``: ``X · Wᵀ`` with a constant ``N × N`` weight (no bias)."""

    def __init__(self, n: int = GEMM_N) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(n, n, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _ort_int8(threads: int, workdir: Path) -> Callable[[], Any]:
    """onnxruntime ``MatMulInteger``: uint8 (1, 1, N, N) × int8 (N, N) constant → int32."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, (GEMM_N, GEMM_N), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "w"], ["y"])],
        "matmul_integer",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, GEMM_N, GEMM_N])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1, GEMM_N, GEMM_N])],
        [onnx.numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = workdir / "matmul_integer.onnx"
    onnx.save(model, str(path))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = rng.integers(0, 256, (1, 1, GEMM_N, GEMM_N), dtype=np.uint8)
    ref = x[0, 0].astype(np.int64) @ w.astype(np.int64)
    if not np.array_equal(sess.run(None, {"x": x})[0][0, 0], ref):
        raise SystemExit("onnxruntime MatMulInteger gave a wrong product; refusing to time it")
    return lambda: sess.run(None, {"x": x})


def sessions(runtimes: list[str], threads: int, workdir: Path) -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:
    """Name → zero-argument product, and name → why a runtime could not take part."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, GEMM_N, GEMM_N), dtype=np.float32)
    w = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    out = np.empty((GEMM_N, GEMM_N), dtype=np.float32)
    torch.set_num_threads(threads)
    tx, tw = torch.from_numpy(x[0, 0]), torch.from_numpy(w)
    fns: dict[str, Callable[[], Any]] = {
        "numpy (OpenBLAS)": lambda: np.matmul(x[0, 0], w, out=out),
        "torch": lambda: torch.matmul(tx, tw),
    }
    skipped: dict[str, str] = {}
    model = GemmNet().eval()
    for rt_name in runtimes:
        rt = get_runtime(rt_name)
        try:
            outcome = edgedeploy.export(model, rt.formats[0], input_shape=(1, 1, GEMM_N, GEMM_N), out=workdir)
            if not outcome.parity.passed:
                raise RuntimeError(f"parity {outcome.parity.status}")
            fns[rt_name] = rt.load(outcome.artifact, threads).prepare(x)
        except Exception as e:  # noqa: BLE001  (a runtime missing here must not stop the others)
            skipped[rt_name] = first_line(e)
    if "onnxruntime" in fns:
        fns["onnxruntime int8 (MatMulInteger u8s8)"] = _ort_int8(threads, workdir)
    return fns, skipped


def summarize(cpu: dict[str, list[list[float]]], wall: dict[str, list[list[float]]]) -> list[dict[str, Any]]:
    """Per session: median ms (CPU, wall) and GMAC/s, sorted fastest first."""
    rows = []
    for name in cpu:
        c = float(np.median([s for b in cpu[name] for s in b]))
        w = float(np.median([s for b in wall[name] for s in b]))
        rows.append({"session": name, "cpu_ms": c, "wall_ms": w, "gmacs_cpu": MACS / c / 1e6,
                     "gmacs_wall": MACS / w / 1e6, "samples": sum(len(b) for b in cpu[name])})  # fmt: skip
    return sorted(rows, key=lambda r: -r["gmacs_cpu"])


def render(payload: dict[str, Any]) -> str:
    rows, fp32 = payload["rows"], payload["fp32_ceiling_gmacs_cpu"]
    lines = [
        f"# GEMM ceiling per runtime ({payload['threads']} thread(s), 2048³)",
        "",
        machine_markdown(payload["machine"]) + f"CPU flags: {' '.join(payload['cpu_flags'])}.",
        "",
        f"Clock: process CPU time (and wall) per product; {payload['blocks']} interleaved blocks × "
        f"{payload['iters']} products per session. GMAC/s = 2048³ ÷ median time. The machine's fp32 ceiling is the "
        f"fastest fp32 session: **{fp32:.1f} GMAC/s** (CPU clock).",
        "",
        "| session | median ms (CPU) | median ms (wall) | GMAC/s (CPU) | GMAC/s (wall) | ÷ fp32 ceiling |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['session']} | {r['cpu_ms']:.1f} | {r['wall_ms']:.1f} | {r['gmacs_cpu']:.1f} | "
                     f"{r['gmacs_wall']:.1f} | {r['gmacs_cpu'] / fp32:.2f} |")  # fmt: skip
    for name, why in payload["skipped"].items():
        lines.append(f"| {name} | not run: {why} | | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = block_parser(__doc__, blocks=6, iters=3, threads=1)
    ap.add_argument("--runtimes", default="onnxruntime,mnn,litert,ncnn")
    ap.add_argument("--name", default="gemm_ceiling")
    args = ap.parse_args()
    if not (1 <= args.threads <= os.cpu_count() * 4 and 1 <= args.blocks <= 100 and 1 <= args.iters <= 100):
        ap.error("--threads 1..4×cores, --blocks and --iters 1..100")
    machine = machine_description()
    with tempfile.TemporaryDirectory(prefix="gemm-ceiling-") as tmp:
        fns, skipped = sessions(args.runtimes.split(","), args.threads, Path(tmp))
        cpu, wall = dual_interleaved(fns, args.blocks, args.iters, warmup=1)
    rows = summarize(cpu, wall)
    fp32 = max(r["gmacs_cpu"] for r in rows if "int8" not in r["session"])
    payload = {"threads": args.threads, "blocks": args.blocks, "iters": args.iters, "machine": machine,
               "machine_after": machine_description(), "cpu_flags": cpu_flags(), "rows": rows, "skipped": skipped,
               "fp32_ceiling_gmacs_cpu": fp32, "samples_cpu_ms": cpu, "samples_wall_ms": wall}  # fmt: skip
    write_results(args.name, payload, render(payload))
    print(render(payload))


if __name__ == "__main__":
    main()
