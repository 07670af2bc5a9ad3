"""The memory harness's own share of ``rss_delta_mb``, and why the figure comes from a fresh child process.

For EdgeFormer-S (fp32 and int8, onnxruntime and MNN, the cached exports ``bench`` uses) this runs, interleaved,
``--rounds`` times each:

* ``runner`` — the memory child :mod:`edgedeploy.bench.memory` starts for every host case (``python -I runner.py``:
  the board runner, stdlib + the runtime + numpy), reporting ``peak_rss_mb`` / ``rss_delta_mb``;
* ``bare``   — the smallest program that does the same work: import the runtime and numpy, reset the high-water
  mark, read ``VmRSS``, load the file, run it as many times as the runner does (first + 1 warm-up + 3), read
  ``VmHWM``; no argument parsing, no sample lists, no output summaries, no parity hooks.

The harness's own memory is ``median(runner rss_delta) − median(bare rss_delta)`` and its share is that over the
runner's ``rss_delta_mb`` (target < 5 %). It also records the resident set of the calling process (which imports
edgedeploy and torch, psutil) and what the same load + runs add to it in-process: the reason memory is not measured
where the warm timing runs. Usage::

    python benchmarks/memory_overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import psutil
from _common import machine_description, machine_markdown, write_results

import edgedeploy
from edgedeploy.bench.memory import MemoryRequest, child_command, run_runner_child

BARE = r"""
import json, os, sys
os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # as the runner does: onnxruntime >= 1.29 phones home otherwise
rt, path, threads, precision = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import numpy as np
if rt == "onnxruntime":
    import onnxruntime as ort
else:
    import MNN
def status():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out
open("/proc/self/clear_refs", "w").write("5")
before = status()["VmRSS"]
x = np.linspace(-1, 1, 3 * 256 * 256, dtype=np.float32).reshape(1, 3, 256, 256)
if rt == "onnxruntime":
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    run = lambda: s.run(None, {name: x})
else:
    it = MNN.Interpreter(path)
    s = it.createSession({"numThread": threads, "precision": "high" if precision == "fp32" else "low"})
    t = it.getSessionInput(s)
    host = MNN.Tensor((1, 3, 256, 256), MNN.Halide_Type_Float, x, MNN.Tensor_DimensionType_Caffe)
    def run():
        t.copyFrom(host)
        it.runSession(s)
for _ in range(5):
    run()
st = status()
print("BARE " + json.dumps({"peak_rss_mb": st["VmHWM"] / 1024, "rss_delta_mb": (st["VmHWM"] - before) / 1024}))
"""


def bare(runtime: str, path: str, threads: int, precision: str) -> dict:
    p = subprocess.run([sys.executable, "-I", "-c", BARE, runtime, path, str(threads), precision],
                       capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("BARE "))  # MNN prints its own lines too
    return json.loads(line[5:])


def in_process(runtime: str, path: str, threads: int) -> dict:
    """What the same load + 5 runs add to THIS process (edgedeploy + torch imported), via psutil."""
    import numpy as np

    from edgedeploy.runtimes.base import get_runtime

    proc = psutil.Process()
    rt = get_runtime(runtime)
    before = proc.memory_info().rss
    sess = rt.load(path, threads)
    infer = sess.prepare(np.linspace(-1, 1, 3 * 256 * 256, dtype=np.float32).reshape(1, 3, 256, 256))
    for _ in range(5):
        infer()
    after = proc.memory_info().rss
    del infer, sess
    return {"rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20, "rise_mb": (after - before) / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch  # noqa: F401 - the calling process of `bench` holds torch; measure it as it is

    machine = machine_description()
    rows = []
    for runtime in ("onnxruntime", "mnn"):
        for precision in ("fp32", "int8"):
            fmt = "onnx" if runtime == "onnxruntime" else "mnn"
            outcome = edgedeploy.export("edgeformer_s", fmt, precision=precision, cache=True)
            path = str(outcome.artifact)
            req = MemoryRequest(outcome.artifact, runtime, a.threads, (1, 3, 256, 256), precision)
            runner_d, runner_p, bare_d, bare_p = [], [], [], []
            for _ in range(a.rounds):
                m = run_runner_child(child_command(req), 600)["memory"]
                runner_d.append(m["rss_delta_mb"])
                runner_p.append(m["peak_rss_mb"])
                b = bare(runtime, path, a.threads, precision)
                bare_d.append(b["rss_delta_mb"])
                bare_p.append(b["peak_rss_mb"])
            row = {
                "runtime": runtime, "precision": precision, "artifact_bytes": outcome.artifact.stat().st_size,
                "runner_rss_delta_mb": statistics.median(runner_d), "runner_peak_rss_mb": statistics.median(runner_p),
                "runner_rss_delta_all": runner_d,
                "bare_rss_delta_mb": statistics.median(bare_d) if bare_d else None,
                "bare_peak_rss_mb": statistics.median(bare_p) if bare_p else None,
                "bare_rss_delta_all": bare_d,
                "in_process": in_process(runtime, path, a.threads),
            }  # fmt: skip
            if bare_d:
                row["harness_mb"] = row["runner_rss_delta_mb"] - row["bare_rss_delta_mb"]
                row["harness_share_pct"] = 100.0 * row["harness_mb"] / row["runner_rss_delta_mb"]
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("_all")}), flush=True)
    caller = psutil.Process().memory_info().rss / 2**20
    payload = {"machine": machine, "rounds": a.rounds, "threads": a.threads, "rows": rows,
               "calling_process_rss_mb": caller}  # fmt: skip
    md = [
        "# Memory harness overhead (EdgeFormer-S, 256×256, batch 1)",
        "",
        machine_markdown(machine),
        f"{a.rounds} interleaved rounds per row, {a.threads} thread(s); medians. `runner` = the fresh child that "
        "`bench` starts per host case (`python -I runner.py`), `bare` = the minimal script doing the same loads "
        "and runs. harness = runner Δ − bare Δ. In-process = the same load + runs measured with psutil inside a "
        f"process that has imported edgedeploy and torch (this one: {caller:.0f} MB resident at the end).",
        "",
        "| runtime | precision | artifact MB | runner peak MB | runner Δ MB | bare Δ MB | harness MB | share | "
        "in-process before → after MB (rise) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ip = r["in_process"]
        share = f"{r['harness_share_pct']:.1f} %" if "harness_share_pct" in r else "n/a"
        hmb = f"{r['harness_mb']:+.2f}" if "harness_mb" in r else "n/a"
        bare_cell = f"{r['bare_rss_delta_mb']:.1f}" if r["bare_rss_delta_mb"] is not None else "n/a"
        md.append(
            f"| {r['runtime']} | {r['precision']} | {r['artifact_bytes'] / 2**20:.2f} | {r['runner_peak_rss_mb']:.1f} "
            f"| {r['runner_rss_delta_mb']:.1f} | {bare_cell} | {hmb} | {share} | "
            f"{ip['rss_before_mb']:.0f} → {ip['rss_after_mb']:.0f} ({ip['rise_mb']:+.1f}) |"
        )
    shares = [r["harness_share_pct"] for r in rows if "harness_share_pct" in r]
    worst_mb = max(r["harness_mb"] for r in rows if "harness_mb" in r)
    md += [
        "",
        f"Harness share of rss_delta_mb: {min(shares):+.1f} % … {max(shares):+.1f} %; the most the runner held beyond "
        f"the bare program: {worst_mb:+.2f} MB. A negative share means the runner's process rose LESS than the bare "
        "program's (allocation order differs between the two programs); the runner's own bookkeeping (argument "
        "parsing, sample list, output summaries) does not show at this resolution.",
        "",
        "Decision: memory is measured in the fresh child; warm latency stays timed in the calling process "
        "(`bench/harness.py`: progress bar, interruption keeps the samples). The in-process column shows why the "
        "calling process cannot give the figure: it already holds torch and edgedeploy, and an allocator that "
        "re-uses freed pages hides a second model's rise entirely.",
        "",
    ]
    write_results("memory_overhead", payload, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
