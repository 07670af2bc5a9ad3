#!/usr/bin/env python3
"""Device-side benchmark runner: ONE stdlib-only file, copied to the board and run with the board's Python.

It imports whichever runtime the board has (onnxruntime, MNN, ai-edge-litert / tflite_runtime, ncnn; numpy comes
with each of them), loads the artifact with a thread count, runs one first inference, ``--warmup`` warm-up runs and
``--iterations`` timed batch-1 runs around the inference call alone (``time.perf_counter_ns``, monotonic), and prints
one line ``RESULT {json}`` at the end. Each timed sample is also printed at once as ``S <ms>`` and appended to
``--progress FILE`` (flushed), so samples survive a dropped connection. Every ``--state-every`` iterations the
current frequency of the CPUs the process may run on is read from sysfs (outside the timed region).

``--probe`` prints ``RESULT {json}`` with the machine, the Python and the runtimes importable, and exits.

Exit status: 0 on success, 2 for bad arguments / unknown runtime, 3 when no runtime can load the artifact.
Keep it Python 3.7-compatible and free of third-party imports at module level.
"""

import argparse
import json
import os
import platform
import sys
import time

# onnxruntime >= 1.29 uploads 1DS telemetry on Linux/Android unless this is set before it is imported
# (microsoft/onnxruntime#27379); the runner must never phone home from a user's board.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

RUNNER_VERSION = 1
RUNTIMES = ("onnxruntime", "mnn", "tflite", "ncnn")


def _version(mod):
    v = getattr(mod, "__version__", None) or getattr(mod, "version", "unknown")
    return str(v() if callable(v) else v)


def probe():
    found = {}
    for name in RUNTIMES:
        try:
            found[name] = _import(name)[1]
        except Exception as e:  # noqa: BLE001 - a runtime may fail to import in many ways
            found[name] = None
            found[name + "_error"] = f"{type(e).__name__}: {e}"
    return {
        "runner_version": RUNNER_VERSION,
        "arch": platform.machine(),
        "python": platform.python_version(),
        "system": platform.system(),
        "runtimes": {k: v for k, v in found.items() if not k.endswith("_error") and v is not None},
        "errors": {k[:-6]: v for k, v in found.items() if k.endswith("_error")},
    }


def _import(name):
    if name == "onnxruntime":
        import onnxruntime as m

        return m, _version(m)
    if name == "mnn":
        import MNN as m

        return m, _version(m)
    if name == "ncnn":
        import ncnn as m

        return m, _version(m)
    if name == "tflite":
        try:
            import ai_edge_litert as pkg
            from ai_edge_litert import interpreter as m

            return m, "ai-edge-litert " + _version(pkg)
        except ImportError:
            import tflite_runtime as pkg
            from tflite_runtime import interpreter as m

            return m, "tflite_runtime " + _version(pkg)
    raise ValueError("unknown runtime {!r} (known: {})".format(name, ", ".join(RUNTIMES)))


def _guess_runtime(path):
    ext = os.path.splitext(path)[1].lower()
    return {".onnx": "onnxruntime", ".mnn": "mnn", ".tflite": "tflite", ".param": "ncnn"}.get(ext)


def _input_array(np, shape):
    """A deterministic input (same on every device): linspace over [-1, 1] in the given shape, float32."""
    n = 1
    for d in shape:
        n *= d
    return np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape(shape)


def load(runtime, path, threads, shape, precision):
    """Return (infer, output_fn, runtime_version, input_shape); infer() runs one inference."""
    import numpy as np

    mod, version = _import(runtime)
    if runtime == "onnxruntime":
        so = mod.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = mod.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        if all(isinstance(d, int) for d in inp.shape):
            shape = list(inp.shape)
        x = _input_array(np, shape)
        feeds = {inp.name: x}
        box = {}

        def infer():
            box["out"] = sess.run(None, feeds)

        return infer, lambda: box["out"][0], version, shape
    if runtime == "mnn":
        interp = mod.Interpreter(path)
        prec = "high" if precision == "fp32" else "low"
        session = interp.createSession({"numThread": threads, "precision": prec})
        t_in = interp.getSessionInput(session)
        interp.resizeTensor(t_in, tuple(shape))
        interp.resizeSession(session)
        x = _input_array(np, shape)
        host = mod.Tensor(tuple(shape), mod.Halide_Type_Float, x, mod.Tensor_DimensionType_Caffe)
        t_in.copyFrom(host)

        def infer():
            interp.runSession(session)

        def output():
            t_out = interp.getSessionOutput(session)
            tmp = mod.Tensor(
                t_out.getShape(),
                mod.Halide_Type_Float,
                np.zeros(t_out.getShape(), np.float32),
                mod.Tensor_DimensionType_Caffe,
            )
            t_out.copyToHostTensor(tmp)
            return np.array(tmp.getNumpyData(), dtype=np.float32)

        return infer, output, version, shape
    if runtime == "tflite":
        it = mod.Interpreter(model_path=path, num_threads=threads)
        it.allocate_tensors()
        d_in = it.get_input_details()[0]
        d_out = it.get_output_details()[0]
        shape = [int(s) for s in d_in["shape"]]
        x = _input_array(np, shape).astype(d_in["dtype"])
        it.set_tensor(d_in["index"], x)

        def infer():
            it.invoke()

        return infer, lambda: it.get_tensor(d_out["index"]), version, shape
    if runtime == "ncnn":
        net = mod.Net()
        net.opt.num_threads = threads
        if precision == "fp32":  # fp16 / bf16 storage and arithmetic change the numbers
            net.opt.use_fp16_packed = False
            net.opt.use_fp16_storage = False
            net.opt.use_fp16_arithmetic = False
            net.opt.use_bf16_storage = False
        if net.load_param(path) != 0 or net.load_model(os.path.splitext(path)[0] + ".bin") != 0:
            raise RuntimeError(f"ncnn could not load {path} (+ .bin)")
        in_name, out_name = net.input_names()[0], net.output_names()[0]
        c, h, w = shape[-3], shape[-2], shape[-1]
        mat = mod.Mat(w, h, c)  # ncnn-owned memory (wrapping numpy memory is unsafe on armv7l)
        np.array(mat, copy=False)[...] = _input_array(np, [c, h, w])
        box = {}

        def infer():
            ex = net.create_extractor()
            ex.input(in_name, mat)
            box["out"] = ex.extract(out_name)[1]

        return infer, lambda: np.array(box["out"]).reshape(1, -1), version, shape
    raise ValueError(f"unknown runtime {runtime!r}")


def _allowed_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def read_freqs(cpus):
    out = {}
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_cur_freq") as f:
                out[str(c)] = int(f.read().strip())
        except (OSError, ValueError):
            pass
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="edgedeploy device-side runner")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--artifact")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--input-shape", default="1,3,224,224")
    ap.add_argument("--progress")
    ap.add_argument("--state-every", type=int, default=10)
    a = ap.parse_args(argv)
    if a.probe:
        print("RESULT " + json.dumps(probe()), flush=True)
        return 0
    if not a.artifact or a.iterations < 1 or a.warmup < 0 or a.threads < 1:
        print("runner: need --artifact, --iterations >= 1, --warmup >= 0, --threads >= 1", file=sys.stderr)
        return 2
    runtime = _guess_runtime(a.artifact) if a.runtime == "auto" else a.runtime
    if runtime not in RUNTIMES:
        print("runner: unknown runtime {!r} (known: {})".format(runtime, ", ".join(RUNTIMES)), file=sys.stderr)
        return 2
    shape = [int(s) for s in a.input_shape.split(",") if s]
    try:
        t0 = time.perf_counter_ns()
        infer, output, version, shape = load(runtime, a.artifact, a.threads, shape, a.precision)
        load_ms = (time.perf_counter_ns() - t0) / 1e6
    except Exception as e:  # noqa: BLE001 - report any load failure as one line
        print(f"runner: {runtime} cannot load {a.artifact}: {type(e).__name__}: {e}", file=sys.stderr)
        return 3
    cpus = _allowed_cpus()
    clock = time.perf_counter_ns
    t0 = clock()
    infer()
    first_ms = (clock() - t0) / 1e6
    warm = []
    for _ in range(a.warmup):
        t0 = clock()
        infer()
        warm.append((clock() - t0) / 1e6)
    out = output()
    flat = out.reshape(-1)
    summary = {"shape": list(out.shape), "sum": float(flat.sum()), "head": [float(v) for v in flat[:5]]}
    progress = open(a.progress, "a") if a.progress else None
    samples, trace = [], []
    for i in range(a.iterations):
        if a.state_every > 0 and i % a.state_every == 0:
            trace.append({"i": i, "t": time.monotonic(), "freq_khz": read_freqs(cpus)})
        t0 = clock()
        infer()
        t1 = clock()
        ms = (t1 - t0) / 1e6
        samples.append(ms)
        sys.stdout.write(f"S {ms:.6f}\n")
        sys.stdout.flush()
        if progress is not None:
            progress.write(f"{ms:.6f}\n")
            progress.flush()
    trace.append({"i": a.iterations, "t": time.monotonic(), "freq_khz": read_freqs(cpus)})
    if progress is not None:
        progress.close()
    result = {
        "runner_version": RUNNER_VERSION,
        "runtime": runtime,
        "runtime_version": version,
        "arch": platform.machine(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "pid": os.getpid(),
        "cpus_allowed": cpus,
        "threads": a.threads,
        "input_shape": shape,
        "load_ms": load_ms,
        "first_ms": first_ms,
        "warmup_ms": warm,
        "samples_ms": samples,
        "output": summary,
        "freq_trace": trace,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
