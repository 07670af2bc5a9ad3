"""Native benchmark tools a user has on the board, run with the right flags and their output parsed.

Tools (the keys of ``profile.native_tools``, value = path on the device):

* ``mnn-benchmark`` — MNN's ``benchmark.out MODELS_DIR LOOP WARMUP FORWARD THREADS PRECISION``; prints
  ``[ - ] model.mnn max = X ms min = Y ms avg = Z ms`` per model in the folder (latencies in ms);
* ``tflite-benchmark_model`` — TFLite's ``benchmark_model --graph=... --num_threads=... --num_runs=...``; prints
  ``count=N first=.. curr=.. min=.. max=.. avg=.. std=..`` in microseconds (the last such line is the timed run);
* ``onnxruntime_perf_test`` — ``onnxruntime_perf_test -e cpu -m times -r N -x THREADS -I MODEL``; prints the average
  (ms) and, in newer builds, min / max / P50 / P90 / P95 / P99 latencies (s);
* ``benchncnn`` — ncnn's ``benchncnn LOOP THREADS POWERSAVE GPU_DEVICE COOLING_DOWN param=MODEL.param
  shape=[W,H,C]``, run in the model's folder (builds without the ``param=`` option bench only their built-in model
  list); prints ``NAME  min = X  max = Y  avg = Z`` per model (ms). benchncnn loads the ``.param`` only and fills the
  weights with random numbers: its latency is valid, its outputs are not (no parity);
* ``mnn-runner`` — edgedeploy's own static MNN runner (``tools/native/mnn_runner.cpp``, cross-built by
  ``tools/build_native.sh``). It takes the Python runner's arguments and prints the same protocol (``S <ms>`` per
  sample, ``RESULT {json}``, ``--parity-inputs`` / ``--parity-outputs`` ``.npy`` files), so
  :mod:`edgedeploy.devices.remote` drives it like the runner: raw samples and board-side parity where no Python runs
  (Android, or an armv7l board without an MNN wheel).

Under qemu-user a 32-bit ``readdir`` on ext4 can list nothing (64-bit directory offsets): a tool that lists a
folder (``mnn-benchmark``, ``benchncnn``) must read it from tmpfs there; the emulated boards' ``/tmp`` is a tmpfs.

The benchmark tools print summary statistics only, never the raw per-iteration samples: results from them carry an empty
``samples_ms``, the statistics the tool printed, and a warning saying so. The parsers are tested on genuine outputs
(``tests/fixtures/native_outputs/README.md`` names their origin).
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

from edgedeploy import registry
from edgedeploy.errors import ConfigError, RemoteCommandError

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile
    from edgedeploy.devices.request import RemoteBench
    from edgedeploy.devices.transport import Transport

#: the edgedeploy runtime whose artifact format each native tool runs (what ``bench --runtime native:TOOL`` exports);
#: declared by each runtime in the registry (``RuntimeSpec.native_tools``)
TOOL_FORMAT_RUNTIME = registry.native_tools()
NO_SAMPLES = "native tool reports summary statistics only: no raw per-iteration samples"
_NUM = r"([0-9]+(?:\.[0-9]+)?)"


def tool_runtime(runtime: str | None) -> str | None:
    """For ``native:TOOL`` (or a bare tool name), the runtime whose format TOOL runs; ``None`` for anything else.

    Raises :class:`ConfigError` for ``native:`` followed by a tool edgedeploy does not know."""
    if not runtime:
        return None
    tool = runtime[7:] if runtime.startswith("native:") else runtime
    if tool in TOOL_FORMAT_RUNTIME:
        return TOOL_FORMAT_RUNTIME[tool]
    if runtime.startswith("native:"):
        raise ConfigError(f"unknown native tool {tool!r} (known: {', '.join(TOOL_FORMAT_RUNTIME)})")
    return None


def _model_row(rows: list[tuple[str, ...]], keys: tuple[str, str], model: str | None, what: str) -> dict[str, Any]:
    """The result of one ``(name, a, b, avg)`` row (ms) of a native tool: ``model``'s line, else the last one.

    ``keys`` name ``a`` and ``b`` in the order the tool prints them; raises :class:`ValueError` ("no ``what``")."""
    if not rows:
        raise ValueError(f"no {what}")
    if model is not None:
        rows = [r for r in rows if r[0] == model] or rows
    name, a, b, avg = rows[-1]
    return {"model": name, keys[0]: float(a), keys[1]: float(b), "mean_ms": float(avg)}


def parse_mnn_benchmark(text: str, model_file: str | None = None) -> dict[str, Any]:
    """Parse MNN ``benchmark.out`` output; ``model_file`` picks one model's line (default: the only / last one).

    Returns ``{"model", "max_ms", "min_ms", "mean_ms", "threads", "precision", "forward", "loop"}``; raises
    :class:`ValueError` when no result line is found.
    """
    pattern = rf"\[ - \]\s+(\S+)\s+max\s*=\s*{_NUM}\s*ms\s+min\s*=\s*{_NUM}\s*ms\s+avg\s*=\s*{_NUM}\s*ms"
    what = "'[ - ] model max = .. min = .. avg = ..' line in MNN benchmark output"
    out = _model_row(re.findall(pattern, text), ("max_ms", "min_ms"), model_file, what)
    m = re.search(r"Forward type: \**(\w+)\**\s+thread=(\d+)\**\s+precision=(\d+)", text)
    if m:
        out.update(forward=m.group(1), threads=int(m.group(2)), precision=int(m.group(3)))
    m = re.search(r"Benchmarking\.\.\. loop = (\d+)", text)
    if m:
        out["loop"] = int(m.group(1))
    return out


def parse_tflite_benchmark(text: str) -> dict[str, Any]:
    """Parse TFLite ``benchmark_model`` output (microseconds in, ms out).

    Returns ``{"count", "first_ms", "min_ms", "max_ms", "mean_ms", "std_ms", "warmup_mean_ms", "init_ms"}`` (the
    last ``count=`` line is the timed run, an earlier one the warm-up); raises :class:`ValueError` without one.
    """
    rows = re.findall(
        r"count=(\d+) first=(\d+) curr=(\d+) min=(\d+) max=(\d+) avg=([0-9.e+]+) std=(\d+)",
        text,
    )
    if not rows:
        raise ValueError("no 'count=.. first=.. min=.. max=.. avg=.. std=..' line in benchmark_model output")
    count, first, _curr, mn, mx, avg, std = rows[-1]
    out: dict[str, Any] = {
        "count": int(count),
        "first_ms": int(first) / 1000,
        "min_ms": int(mn) / 1000,
        "max_ms": int(mx) / 1000,
        "mean_ms": float(avg) / 1000,
        "std_ms": int(std) / 1000,
    }
    if len(rows) > 1:
        out["warmup_mean_ms"] = float(rows[-2][5]) / 1000
    m = re.search(r"Init: ([0-9.]+)", text)
    if m:
        out["init_ms"] = float(m.group(1)) / 1000
    m = re.search(r"Initialized session in ([0-9.]+)ms", text)
    if m:
        out["init_ms"] = float(m.group(1))
    return out


def parse_ort_perf_test(text: str) -> dict[str, Any]:
    """Parse ``onnxruntime_perf_test`` output (ms out).

    Returns ``{"count", "mean_ms", "min_ms", "max_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms",
    "load_ms"}`` with what the build printed; raises :class:`ValueError` without an average line.
    """
    out: dict[str, Any] = {}
    m = re.search(r"Average (?:inference )?time cost:\s*([0-9.e+-]+) ms", text)
    if not m:
        raise ValueError("no 'Average ... time cost: X ms' line in onnxruntime_perf_test output")
    out["mean_ms"] = float(m.group(1))
    m = re.search(r"Total (?:iterations|inference requests):\s*(\d+)", text)
    if m:
        out["count"] = int(m.group(1))
    m = re.search(r"Session creation time cost:\s*([0-9.e+-]+) s", text)
    if m:
        out["load_ms"] = float(m.group(1)) * 1000
    for label, key in (
        ("Min", "min_ms"),
        ("Max", "max_ms"),
        ("P50", "median_ms"),
        ("P90", "p90_ms"),
        ("P95", "p95_ms"),
        ("P99", "p99_ms"),
        ("P999", "p999_ms"),
    ):
        m = re.search(rf"^{label} Latency(?: is|:)\s*([0-9.e+-]+) s", text, re.M)
        if m:
            out[key] = float(m.group(1)) * 1000
    return out


def parse_benchncnn(text: str, model: str | None = None) -> dict[str, Any]:
    """Parse ncnn ``benchncnn`` output; ``model`` picks one model's line (default: the only / last one).

    Returns ``{"model", "min_ms", "max_ms", "mean_ms", "loop", "threads", "powersave", "gpu_device",
    "cooling_down"}`` (the header fields the build printed); raises :class:`ValueError` without a result line.
    """
    rows = re.findall(rf"^\s*(\S+)\s+min\s*=\s*{_NUM}\s+max\s*=\s*{_NUM}\s+avg\s*=\s*{_NUM}\s*$", text, re.M)
    out = _model_row(rows, ("min_ms", "max_ms"), model, "'NAME  min = ..  max = ..  avg = ..' line in benchncnn output")
    for key, field in (("loop_count", "loop"), ("num_threads", "threads"), ("powersave", "powersave"),
                       ("gpu_device", "gpu_device"), ("cooling_down", "cooling_down")):  # fmt: skip
        m = re.search(rf"^{key} = (-?\d+)", text, re.M)
        if m:
            out[field] = int(m.group(1))
    return out


def native_command(
    tool: str,
    tool_path: str,
    artifact: str,
    iterations: int,
    warmup: int,
    threads: int,
    precision: str,
    shape: str | None = None,
) -> list[str]:
    """The argument list that runs ``tool`` on ``artifact`` (device paths; ``shape``: benchncnn's ``[W,H,C]``).

    Raises :class:`ConfigError` for a tool without a command here (``mnn-runner`` is driven like the runner)."""
    if tool == "mnn-benchmark":
        folder = artifact.rsplit("/", 1)[0] or "."
        prec = "1" if precision == "fp32" else "2"  # 1 = Precision_High (fp32), 2 = Precision_Low (fp16 where fast)
        return [tool_path, folder, str(iterations), str(warmup), "0", str(threads), prec]
    if tool == "tflite-benchmark_model":
        return [
            tool_path, f"--graph={artifact}", f"--num_threads={threads}", f"--num_runs={iterations}",
            "--min_secs=0", f"--warmup_runs={warmup}", "--warmup_min_secs=0",
        ]  # fmt: skip
    if tool == "onnxruntime_perf_test":
        return [tool_path, "-e", "cpu", "-m", "times", "-r", str(iterations), "-x", str(threads), "-I", artifact]
    if tool == "benchncnn":
        folder, _, name = artifact.rpartition("/")
        # benchncnn reads the .param from its working directory: cd there first (arguments passed positionally)
        return [
            "sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", folder or ".", tool_path, str(iterations),
            str(threads), "0", "-1", "0", f"param={name}", *([f"shape={shape}"] if shape else []),
        ]  # fmt: skip
    raise ConfigError(f"unknown native tool {tool!r}")


def run_native(
    transport: Transport,
    profile: DeviceProfile,
    tool: str,
    artifact: str,
    req: RemoteBench,
    threads: int,
    prefix: list[str],
) -> dict[str, Any]:
    """Run a native tool on the device and parse its output. ``artifact``: the device path; ``req``: iterations,
    warm-up, precision and the NCHW input shape (benchncnn's ``shape=``); ``threads`` and the ``taskset``
    ``prefix`` as decided on the device.

    Returns the parsed statistics plus ``samples_ms`` (empty), ``warnings`` and ``stdout`` (the tool's output).
    Raises :class:`RemoteCommandError` when the tool fails or prints nothing parseable.
    """
    iterations, warmup, precision, input_shape = req.iterations, req.warmup, req.precision, req.input_shape
    argv = [
        *prefix,
        *native_command(
            tool, profile.native_tools[tool], artifact, iterations, warmup, threads, precision,
            f"[{input_shape[3]},{input_shape[2]},{input_shape[1]}]" if input_shape and len(input_shape) == 4 else None,
        ),
    ]  # fmt: skip
    r = transport.run(argv, timeout=3600, check=False)
    text = r.stdout + "\n" + r.stderr
    if r.exit_status != 0:
        raise RemoteCommandError(shlex.join(argv), r.exit_status, r.stderr or r.stdout)
    try:
        if tool == "mnn-benchmark":
            stats = parse_mnn_benchmark(text, artifact.rsplit("/", 1)[-1])
        elif tool == "tflite-benchmark_model":
            stats = parse_tflite_benchmark(text)
        elif tool == "benchncnn":
            stats = parse_benchncnn(text, artifact.rsplit("/", 1)[-1].removesuffix(".param"))
        else:
            stats = parse_ort_perf_test(text)
    except ValueError as e:
        raise RemoteCommandError(shlex.join(argv), r.exit_status, f"{e}: {text.strip()[-300:]}") from e
    return {**stats, "tool": tool, "samples_ms": [], "warnings": [NO_SAMPLES], "stdout": text[-20000:]}
