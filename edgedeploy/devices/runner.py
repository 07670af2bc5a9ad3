#!/usr/bin/env python3
"""Device-side benchmark runner: ONE stdlib-only file, copied to the board and run with the board's Python.

It imports whichever runtime the board has (onnxruntime, MNN, ai-edge-litert / tflite_runtime, ncnn; numpy comes
with each of them), loads the artifact with a thread count, runs one first inference, ``--warmup`` warm-up runs and
``--iterations`` timed batch-1 runs around the inference call alone (``time.perf_counter_ns``, monotonic), and prints
one line ``RESULT {json}`` at the end. Each timed sample is also printed at once as ``S <ms>`` and appended to
``--progress FILE`` (flushed), so samples survive a dropped connection. Every ``--state-every`` iterations the
current frequency of the CPUs the process may run on is read from sysfs (outside the timed region).

Before every run (warm-up and timed) the input is copied into the runtime afresh, outside the timed region: MNN
3.6.1 overwrites the session's input tensor during ``runSession``. ``RESULT`` carries summaries of the output after
the warm-up (``output``) and after the last timed run (``output_last``) and ``repeat_identical`` (the same input
gave bit-identical outputs on the first and the last run).

Board-side parity: ``--parity-inputs DIR`` runs each ``DIR/in-<i>.npy`` (float32, in the artifact's input layout,
e.g. ``(1, 3, H, W)`` NCHW) once before the benchmark and writes its first output to
``--parity-outputs DIR/out-<i>.npy`` (float32); the host pulls them and compares them with PyTorch
(:mod:`edgedeploy.devices.board_parity`).

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

RUNNER_VERSION = 2
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


class Model:
    """A loaded artifact: ``feed(x)`` copies ``x`` (float32, the artifact's input layout) into the runtime's input,
    ``infer()`` runs one inference (the only call that is timed), ``output()`` returns the first output as a
    float32 array. ``feed`` is called before EVERY inference: MNN 3.6.1 overwrites the session's input tensor
    during ``runSession``, so an input copied once is a different input from the second run on."""

    def __init__(self, feed, infer, output, version, shape):
        self.feed, self.infer, self.output, self.version, self.shape = feed, infer, output, version, shape


def load(runtime, path, threads, shape, precision):
    """Return a :class:`Model` for ``path``; ``shape`` is used where the artifact does not fix its input shape."""
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
        feeds = {}
        box = {}

        def feed(x):
            feeds[inp.name] = np.ascontiguousarray(x, dtype=np.float32)

        def infer():
            box["out"] = sess.run(None, feeds)

        return Model(feed, infer, lambda: np.asarray(box["out"][0], dtype=np.float32), version, shape)
    if runtime == "mnn":
        interp = mod.Interpreter(path)
        prec = "high" if precision == "fp32" else "low"
        session = interp.createSession({"numThread": threads, "precision": prec})
        t_in = interp.getSessionInput(session)
        interp.resizeTensor(t_in, tuple(shape))
        interp.resizeSession(session)
        hosts = {}  # one host tensor per distinct input array, made once (outside the timed region)

        def feed(x):
            key = id(x)
            if key not in hosts:
                x = np.ascontiguousarray(x, dtype=np.float32)
                hosts[key] = (x, mod.Tensor(tuple(shape), mod.Halide_Type_Float, x, mod.Tensor_DimensionType_Caffe))
            t_in.copyFrom(hosts[key][1])

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

        return Model(feed, infer, output, version, shape)
    if runtime == "tflite":
        it = mod.Interpreter(model_path=path, num_threads=threads)
        it.allocate_tensors()
        d_in = it.get_input_details()[0]
        d_out = it.get_output_details()[0]
        shape = [int(s) for s in d_in["shape"]]

        def feed(x):
            x = np.asarray(x, dtype=np.float32)
            if d_in["dtype"] != np.float32:  # full-integer model: quantize with the input's scale / zero point
                scale, zero = d_in["quantization"]
                info = np.iinfo(d_in["dtype"])
                x = np.clip(np.round(x / scale + zero), info.min, info.max)
            it.set_tensor(d_in["index"], np.ascontiguousarray(x.astype(d_in["dtype"])))

        def output():
            y = it.get_tensor(d_out["index"])
            if d_out["dtype"] != np.float32:
                scale, zero = d_out["quantization"]
                return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
            return np.array(y, dtype=np.float32)

        return Model(feed, it.invoke, output, version, shape)
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
        view = np.array(mat, copy=False)
        box = {}

        def feed(x):
            view[...] = np.asarray(x, dtype=np.float32).reshape(c, h, w)

        def infer():
            ex = net.create_extractor()
            ex.input(in_name, mat)
            box["out"] = ex.extract(out_name)[1]

        return Model(feed, infer, lambda: np.array(box["out"], dtype=np.float32).reshape(1, -1), version, shape)
    raise ValueError(f"unknown runtime {runtime!r}")


def _summary(out):
    flat = out.reshape(-1)
    return {"shape": list(out.shape), "sum": float(flat.sum()), "head": [float(v) for v in flat[:5]]}


def run_parity_inputs(np, model, in_dir, out_dir):
    """Run ``in_dir/in-0.npy``, ``in-1.npy``, … (float32, the artifact's input layout) once each and write the first
    output to ``out_dir/out-<i>.npy``; returns the file names written, in input order. The folder is not listed
    (under qemu-user a 32-bit ``readdir`` on ext4 can return nothing): files are opened by index until one is
    missing."""
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    written = []
    for i in range(10000):
        src = os.path.join(in_dir, f"in-{i}.npy")
        if not os.path.isfile(src):
            break
        model.feed(np.load(src))
        model.infer()
        name = f"out-{i}.npy"
        np.save(os.path.join(out_dir, name), model.output())
        written.append(name)
    return written


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


# ---------------------------------------------------------------------------------------------------- memory
# The runner reads its own resident set from /proc/self/status (stdlib only; Linux and Android). VmHWM is the
# high-water mark of the resident set; writing "5" to /proc/self/clear_refs (Linux >= 4.0) resets it to the current
# resident set, so the peak measured after the run is the peak since just before the model load. Where the reset is
# refused the peak is the process's whole-life high-water mark (imports included) and "hwm_reset" says so.
def read_status_kb(keys=("VmRSS", "VmHWM")):
    """``{key: kB}`` of ``/proc/self/status`` for ``keys``; ``{}`` where the file does not exist (not Linux)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in keys:
                    out[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def memory_before_load(runtime=None):
    """The reading just before the model load: ``{"rss_kb", "hwm_reset"}``, or ``{"reason"}`` (no procfs).

    ``runtime`` (and numpy) is imported first, so the rise measured afterwards is the model's, not the import's."""
    if runtime:
        try:
            _import(runtime)
            import numpy  # noqa: F401
        except Exception:  # noqa: BLE001 - the load that follows reports it
            pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    st = read_status_kb()
    if "VmRSS" not in st:
        return {"reason": "no VmRSS in /proc/self/status on this system"}
    return {"rss_kb": st["VmRSS"], "hwm_reset": reset}


def memory_after_run(before):
    """``peak_rss_mb`` (VmHWM after the run), ``rss_delta_mb`` (peak minus VmRSS just before the load), in MB
    (2**20 bytes); a figure that cannot be read is ``None`` with ``reason``."""
    st = read_status_kb()
    res = {"method": "/proc/self/status VmHWM / VmRSS", "hwm_reset": before.get("hwm_reset"),
           "torch_imported": "torch" in sys.modules}  # fmt: skip
    if "VmHWM" not in st or "rss_kb" not in before:
        res.update(peak_rss_mb=None, rss_delta_mb=None, reason=before.get("reason") or "no VmHWM in /proc/self/status")
        return res
    res.update(
        peak_rss_mb=st["VmHWM"] / 1024.0,
        rss_delta_mb=(st["VmHWM"] - before["rss_kb"]) / 1024.0,
        rss_before_load_mb=before["rss_kb"] / 1024.0,
        rss_after_mb=st.get("VmRSS", 0) / 1024.0,
    )
    if not before.get("hwm_reset"):
        res["note"] = "clear_refs refused: the peak is the process's whole-life high-water mark (imports included)"
    return res


# ---------------------------------------------------------------------------------------------------- sustained
def read_temps():
    """``({zone type or name: °C}, reason)`` from ``/sys/class/thermal/thermal_zone*/temp`` (millidegrees); an
    empty dict with the reason where there is none (a VM, qemu-user, a locked-down Android)."""
    base = "/sys/class/thermal"
    out = {}
    try:
        zones = [z for z in os.listdir(base) if z.startswith("thermal_zone")]
    except OSError as e:
        return out, f"no {base} ({e.strerror or e})"
    for z in sorted(zones):
        try:
            with open(os.path.join(base, z, "temp")) as f:
                milli = int(f.read().strip())
            try:
                with open(os.path.join(base, z, "type")) as f:
                    name = f.read().strip() or z
            except OSError:
                name = z
            out[name if name not in out else z] = milli / 1000.0
        except (OSError, ValueError):
            continue
    return out, ("" if out else f"no readable thermal zone under {base}")


def run_sustained(model, x, seconds, cpus, every_s=1.0):
    """Back-to-back timed runs for ``seconds``: each sample (ms) with the time it ended (s since the start, monotonic),
    and every ``every_s`` s (outside the timed region) the temperatures and the allowed CPUs' frequencies. SIGINT /
    SIGTERM end the phase early: the samples so far are reported, ``interrupted`` names the signal."""
    import signal
    import threading

    stop = []  # SIGINT / SIGTERM end the phase after the inference in progress; what was measured is reported
    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, lambda signum, _frame: stop.append(signal.Signals(signum).name))
    clock = time.perf_counter_ns
    samples, t_s, thermal = [], [], []
    start = clock()
    end = start + int(seconds * 1e9)
    next_read = start
    temp_reason = freq_reason = ""
    while not stop:
        now = clock()
        if now >= end:
            break
        if now >= next_read:
            temps, temp_reason = read_temps()
            freqs = read_freqs(cpus)
            if not freqs:
                freq_reason = "no /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq for the allowed CPUs"
            thermal.append({"t_s": (now - start) / 1e9, "temp_c": temps or None, "freq_khz": freqs or None})
            next_read = now + int(every_s * 1e9)
        model.feed(x)
        t0 = clock()
        model.infer()
        t1 = clock()
        samples.append((t1 - t0) / 1e6)
        t_s.append((t1 - start) / 1e9)
    for sig, handler in old.items():
        signal.signal(sig, handler)
    return {
        "interrupted": stop[0] if stop else None,
        "seconds": seconds,
        "duration_s": (clock() - start) / 1e9,
        "samples_ms": samples,
        "t_s": t_s,
        "thermal": thermal,
        "temperature_reason": temp_reason or None,
        "frequency_reason": freq_reason or None,
    }


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
    ap.add_argument("--parity-inputs", help="folder of in-<i>.npy inputs to run once each (board-side parity)")
    ap.add_argument("--parity-outputs", help="folder to write out-<i>.npy (the first output of each input) into")
    ap.add_argument("--sustained", type=float, default=0.0, help="after the timed runs: back-to-back runs for SECONDS")
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
    mem_before = memory_before_load(runtime)
    try:
        t0 = time.perf_counter_ns()
        model = load(runtime, a.artifact, a.threads, shape, a.precision)
        load_ms = (time.perf_counter_ns() - t0) / 1e6
    except Exception as e:  # noqa: BLE001 - report any load failure as one line
        print(f"runner: {runtime} cannot load {a.artifact}: {type(e).__name__}: {e}", file=sys.stderr)
        return 3
    import numpy as np

    shape = model.shape
    parity_files = []
    if a.parity_inputs:
        if not a.parity_outputs:
            print("runner: --parity-inputs needs --parity-outputs", file=sys.stderr)
            return 2
        parity_files = run_parity_inputs(np, model, a.parity_inputs, a.parity_outputs)
    x = _input_array(np, shape)
    cpus = _allowed_cpus()
    clock = time.perf_counter_ns
    model.feed(x)
    t0 = clock()
    model.infer()
    first_ms = (clock() - t0) / 1e6
    first = model.output()
    warm = []
    for _ in range(a.warmup):
        model.feed(x)  # a fresh input before every run, outside the timed region
        t0 = clock()
        model.infer()
        warm.append((clock() - t0) / 1e6)
    summary = _summary(model.output())
    progress = open(a.progress, "a") if a.progress else None
    samples, trace = [], []
    for i in range(a.iterations):
        if a.state_every > 0 and i % a.state_every == 0:
            trace.append({"i": i, "t": time.monotonic(), "freq_khz": read_freqs(cpus)})
        model.feed(x)
        t0 = clock()
        model.infer()
        t1 = clock()
        ms = (t1 - t0) / 1e6
        samples.append(ms)
        sys.stdout.write(f"S {ms:.6f}\n")
        sys.stdout.flush()
        if progress is not None:
            progress.write(f"{ms:.6f}\n")
            progress.flush()
    trace.append({"i": a.iterations, "t": time.monotonic(), "freq_khz": read_freqs(cpus)})
    sustained = run_sustained(model, x, a.sustained, cpus) if a.sustained > 0 else None
    if progress is not None:
        progress.close()
    last = model.output()
    result = {
        "runner_version": RUNNER_VERSION,
        "runtime": runtime,
        "runtime_version": model.version,
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
        "output_last": _summary(last),
        # the same input gave bit-identical outputs on the first and on the last timed run
        "repeat_identical": bool(np.array_equal(first, last)),
        "parity_outputs": parity_files,
        "freq_trace": trace,
    }
    result["memory"] = memory_after_run(mem_before)
    if sustained is not None:
        result["sustained"] = sustained
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------- A/B (``ab``)
def _ab_median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _ab_verdict(ratios, tcrit, threshold_pct, min_blocks):
    """The host's sequential rule (edgedeploy.results.ab_verdict) with its critical values ``tcrit[n]``: a
    t-interval on the log block ratios against the band [1 - t, 1 + t]; None while undecided."""
    import math

    n = len(ratios)
    if n < max(2, min_blocks) or n >= len(tcrit):
        return None
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
    half = tcrit[n] * sd / math.sqrt(n)
    low, high, t = math.exp(mean - half), math.exp(mean + half), threshold_pct / 100.0
    if low > 1 + t:
        return "regression"
    if high < 1 - t:
        return "improvement"
    if low >= 1 - t and high <= 1 + t:
        return "unchanged"
    return None


def ab_main(argv):
    """``runner.py ab``: load BOTH artifacts in this one process and time them in interleaved blocks (the sides
    alternate run by run, A B, B A …; even blocks start with the baseline), ``--block-size`` runs per side per
    block (0: sized to ``--block-ms`` from the warm-up), until the sequential rule decides (``--tcrit`` critical
    values computed by the host, ``--threshold-pct``, ``--min-blocks``), ``--max-seconds`` or ``--max-blocks``.
    Each block is printed at once as ``B {json}``; ``RESULT {json}`` at the end holds every block's samples (ms)
    and ``stopped``."""
    ap = argparse.ArgumentParser(prog="runner.py ab", description="edgedeploy device-side interleaved A/B")
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--candidate", required=True)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--input-shape", default="1,3,224,224")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--block-size", type=int, default=0)
    ap.add_argument("--block-ms", type=float, default=100.0)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--max-blocks", type=int, default=500)
    ap.add_argument("--threshold-pct", type=float, default=3.0)
    ap.add_argument("--min-blocks", type=int, default=6)
    ap.add_argument("--tcrit", default="", help="comma-separated critical values t[n] for n = 0 .. max blocks")
    a = ap.parse_args(argv)
    if a.threads < 1 or a.warmup < 0 or a.block_size < 0 or not a.max_seconds > 0 or a.max_blocks < 1:
        print("runner ab: need --threads >= 1, --warmup >= 0, --block-size >= 0, --max-seconds > 0", file=sys.stderr)
        return 2
    tcrit = [float(v) for v in a.tcrit.split(",") if v]
    runtime = _guess_runtime(a.baseline) if a.runtime == "auto" else a.runtime
    if runtime not in RUNTIMES:
        print("runner: unknown runtime {!r} (known: {})".format(runtime, ", ".join(RUNTIMES)), file=sys.stderr)
        return 2
    shape = [int(s) for s in a.input_shape.split(",") if s]
    models = {}
    for side in ("baseline", "candidate"):
        path = getattr(a, side)
        try:
            models[side] = load(runtime, path, a.threads, shape, a.precision)
        except Exception as e:  # noqa: BLE001 - report any load failure as one line
            print(f"runner: {runtime} cannot load {path}: {type(e).__name__}: {e}", file=sys.stderr)
            return 3
    if list(models["baseline"].shape) != list(models["candidate"].shape):
        print(f"runner ab: the two sides take different inputs: {models['baseline'].shape}, "
              f"{models['candidate'].shape}", file=sys.stderr)  # fmt: skip
        return 2
    import numpy as np

    x = _input_array(np, models["baseline"].shape)
    clock = time.perf_counter_ns

    def timed(model, n):
        out = []
        for _ in range(n):
            model.feed(x)  # a fresh input before every run, outside the timed region
            t0 = clock()
            model.infer()
            out.append((clock() - t0) / 1e6)
        return out

    warm = []
    for side in ("baseline", "candidate"):
        timed(models[side], 1)  # first inference: never timed
        warm += timed(models[side], a.warmup)
    n = a.block_size or max(3, min(10000, round(a.block_ms / max(_ab_median(warm) if warm else 1.0, 1e-3))))
    blocks = {"baseline": [], "candidate": []}
    ratios = []
    stopped = "max_blocks"
    start = time.monotonic()
    while len(ratios) < a.max_blocks:
        order = ("baseline", "candidate") if len(ratios) % 2 == 0 else ("candidate", "baseline")
        got = {"baseline": [], "candidate": []}
        for j in range(n):  # run by run: A B, B A, A B … (see edgedeploy.bench.ab)
            for side in order if j % 2 == 0 else order[::-1]:
                got[side].extend(timed(models[side], 1))
        for side in ("baseline", "candidate"):
            blocks[side].append(got[side])
        ratios.append(_ab_median(got["candidate"]) / _ab_median(got["baseline"]))
        sys.stdout.write("B " + json.dumps({"i": len(ratios) - 1, "first": order[0], **got}) + "\n")
        sys.stdout.flush()
        if _ab_verdict(ratios, tcrit, a.threshold_pct, a.min_blocks) is not None:
            stopped = "rule"
            break
        if time.monotonic() - start >= a.max_seconds:
            stopped = "max_seconds"
            break
    result = {
        "runner_version": RUNNER_VERSION, "runtime": runtime, "runtime_version": models["baseline"].version,
        "arch": platform.machine(), "pid": os.getpid(), "threads": a.threads, "input_shape": models["baseline"].shape,
        "block_size": n, "baseline": blocks["baseline"], "candidate": blocks["candidate"], "stopped": stopped,
        "elapsed_s": time.monotonic() - start,
    }  # fmt: skip
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(ab_main(sys.argv[2:]) if sys.argv[1:2] == ["ab"] else main())
