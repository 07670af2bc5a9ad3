"""Memory and size of one case: ``artifact_bytes``, ``peak_rss_mb`` and ``rss_delta_mb``.

Memory is measured in a process that holds only the runtime. On the host that is a **fresh child process per
case**: the stdlib-only board runner (:mod:`edgedeploy.devices.runner`) started with this Python (``python -I``, so
neither edgedeploy nor torch is importable in it) imports the runtime and numpy, reads its resident set, loads the
artifact, runs the first inference, one warm-up run and a few timed runs, and reads its resident set again; on a
board the same runner does the same on the board (:mod:`edgedeploy.devices.remote`). The warm latency samples of a
host run are still timed in the calling process (:func:`edgedeploy.bench.run.bench_local`): the child's only job
is the memory figure (``benchmarks/memory_overhead.py`` measures what the harness itself adds).

Figures (MB = 2**20 bytes):

- ``artifact_bytes``: the size of the artifact file plus the files that travel with it (ncnn's ``.bin``, ONNX
  external data), in bytes, as stored on disk.
- ``peak_rss_mb``: the high-water resident set (``VmHWM``) of the process that ran the runtime, after load, first
  inference and runs. It includes the Python interpreter, numpy and the runtime's resident library pages, the
  weights as the runtime holds them, its arenas and workspaces, the input and output buffers. It excludes pages
  never touched or swapped out, memory of other processes, accelerator memory (GPU / NPU / DSP), and kernel memory.
  Under qemu-user (the emulated test boards) it includes the emulator's own memory.
- ``rss_delta_mb``: ``peak_rss_mb`` minus the resident set just before the model load (the runtime already
  imported): what loading and running this model adds to a process that has the runtime.

A figure that cannot be measured is ``None`` with its reason in ``not_measured`` (field name -> reason), never 0:
the torch runtime (it times the eager module in the calling process, which holds torch), a system without
``/proc/self/status``, a child that failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedeploy import registry

#: timed runs the memory child makes after its first inference and one warm-up run
CHILD_ITERATIONS = 3
CHILD_TIMEOUT_S = 900.0
MEMORY_FIELDS = ("peak_rss_mb", "rss_delta_mb")


@dataclass(frozen=True)
class MemoryRequest:
    """One host memory measurement: ``artifact`` run by ``runtime`` (an edgedeploy runtime name) at ``threads``.

    ``input_shape`` is the artifact's input (e.g. ``(1, 3, 256, 256)`` NCHW; the runtime's own static shape wins).
    """

    artifact: Path
    runtime: str
    threads: int
    input_shape: tuple[int, ...]
    precision: str = "fp32"
    iterations: int = CHILD_ITERATIONS
    timeout_s: float = CHILD_TIMEOUT_S


@dataclass
class MemoryReading:
    """``peak_rss_mb`` / ``rss_delta_mb`` (MB) or ``None`` with ``not_measured[field]``; ``detail`` is the raw
    reading (method, resident set before the load, the child's load / first-inference times …)."""

    peak_rss_mb: float | None = None
    rss_delta_mb: float | None = None
    not_measured: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unmeasured(cls, reason: str) -> MemoryReading:
        return cls(not_measured=dict.fromkeys(MEMORY_FIELDS, reason), detail={"reason": reason})

    @classmethod
    def from_runner(cls, memory: dict[str, Any] | None, where: str) -> MemoryReading:
        """From the ``memory`` object of the runner's ``RESULT`` (``None``: an old runner that has none)."""
        if not memory:
            return cls.unmeasured(f"the runner on {where} reported no memory reading (a runner older than issue 20's)")
        reading = cls(memory.get("peak_rss_mb"), memory.get("rss_delta_mb"), detail={**memory, "where": where})
        for name in MEMORY_FIELDS:
            if getattr(reading, name) is None:
                reading.not_measured[name] = memory.get("reason") or "not reported by the runner"
        return reading

    def result_fields(self) -> dict[str, Any]:
        """The :class:`~edgedeploy.results.result.BenchResult` fields this reading fills."""
        return {"peak_rss_mb": self.peak_rss_mb, "rss_delta_mb": self.rss_delta_mb, "memory": self.detail,
                "not_measured": dict(self.not_measured)}  # fmt: skip


def artifact_bytes(artifact: Path | None) -> int | None:
    """Bytes on disk of ``artifact`` and its side files (``None`` for no file, e.g. the torch runtime)."""
    if artifact is None:
        return None
    files = [Path(artifact), *registry.side_files(artifact)]
    return sum(f.stat().st_size for f in files if f.is_file())


def runner_path() -> Path:
    """The stdlib-only runner script (the same file that is pushed to boards)."""
    from edgedeploy.devices import runner

    return Path(runner.__file__)


def child_command(req: MemoryRequest) -> list[str]:
    """The fresh child's argv: ``python -I runner.py --artifact … --iterations N --warmup 1``.

    Raises :class:`~edgedeploy.errors.UnknownRuntimeError` for a runtime the runner does not know.
    """
    rt = registry.device_runtime(req.runtime)
    return [
        sys.executable, "-I", str(runner_path()), "--artifact", str(req.artifact), "--runtime", rt,
        "--iterations", str(req.iterations), "--warmup", "1", "--threads", str(req.threads),
        "--precision", req.precision, "--input-shape", ",".join(str(d) for d in req.input_shape),
        "--state-every", "0",
    ]  # fmt: skip


#: seconds an interrupted runner child gets to report what it measured (one inference, then its RESULT line)
INTERRUPT_GRACE_S = 60.0


def run_runner_child(argv: list[str], timeout_s: float) -> dict[str, Any]:
    """Run the runner as a child of this process and return its ``RESULT`` object.

    Raises :class:`~edgedeploy.errors.RemoteCommandError` (non-zero exit, no ``RESULT`` line) and
    :class:`~edgedeploy.errors.DeviceError` on a timeout (s). On SIGINT / SIGTERM (``Interrupted`` in this process,
    :mod:`edgedeploy.signals`) the signal is passed on to the child (its own session: a terminal's Ctrl-C does not
    reach it), and the interrupt is re-raised carrying the child's ``RESULT`` (or ``None``) as ``runner_result``.
    """
    from edgedeploy.errors import DeviceError, RemoteCommandError
    from edgedeploy.signals import Interrupted

    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C reaches this process only; it decides what the child gets
    )  # fmt: skip
    try:
        stdout, stderr = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        child.kill()
        child.communicate()
        raise DeviceError(f"the runner child timed out after {timeout_s:g} s") from e
    except Interrupted as e:  # pass the signal on; a runner in its sustained phase reports what it measured
        child.send_signal(e.signum)
        try:
            stdout, stderr = child.communicate(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise e from None
        e.runner_result = _result_line(stdout)  # type: ignore[attr-defined]
        raise
    except BaseException:
        child.kill()
        child.communicate()
        raise
    p = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
    if p.returncode != 0:
        raise RemoteCommandError(" ".join(argv), p.returncode, p.stderr[-2000:] or p.stdout[-2000:])
    res = _result_line(p.stdout)
    if res is None:
        raise RemoteCommandError(" ".join(argv), p.returncode, "the runner printed no RESULT line: " + p.stderr[-2000:])
    return res


def _result_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return None


def measure_host_memory(req: MemoryRequest) -> MemoryReading:
    """Load and run ``req.artifact`` in a fresh child process that holds only the runtime; never raises for a
    measurement that fails (the reading is then ``None`` + reason, and the latency result is kept)."""
    from edgedeploy.errors import EdgeDeployError

    spec = registry.runtime_spec(req.runtime)
    if spec.device_name is None:
        return MemoryReading.unmeasured(
            f"the {spec.name} runtime runs only inside edgedeploy's own process (which holds torch): "
            "no process holds only this runtime"
        )
    try:
        res = run_runner_child(child_command(req), req.timeout_s)
    except (EdgeDeployError, OSError, ValueError) as e:
        return MemoryReading.unmeasured(f"the memory child failed: {type(e).__name__}: {e}"[:500])
    reading = MemoryReading.from_runner(res.get("memory"), "the host (a fresh child process)")
    reading.detail.update(child_load_ms=res.get("load_ms"), child_first_ms=res.get("first_ms"),
                          child_runtime_version=res.get("runtime_version"),
                          calling_process_rss_mb=calling_process_rss_mb())  # fmt: skip
    return reading


def calling_process_rss_mb() -> float | None:
    """Resident set of this (the calling, torch-holding) process in MB, via psutil; shows why the child exists."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:  # noqa: BLE001 - informational only
        return None


def with_host_memory(result: Any, artifact: Path | None, runtime: str, precision: str) -> Any:
    """``result`` (a local :class:`~edgedeploy.results.result.BenchResult`) with ``artifact_bytes`` and the memory
    figures of a fresh child process at the result's thread count and input shape. A SIGINT / SIGTERM while the
    child runs keeps the samples: the result becomes ``partial`` with the memory ``null`` and the reason."""
    update: dict[str, Any] = {"artifact_bytes": artifact_bytes(artifact)}
    not_measured = dict(result.not_measured)
    if artifact is None:
        not_measured["artifact_bytes"] = "no artifact file (the torch runtime times the eager module)"
        reading = MemoryReading.unmeasured(
            "the torch runtime runs only inside edgedeploy's own process (which holds torch): "
            "no process holds only this runtime"
        )
    else:
        from edgedeploy.signals import Interrupted

        req = MemoryRequest(Path(artifact), runtime, result.threads, tuple(result.input_shape), precision)
        try:
            reading = measure_host_memory(req)
        except Interrupted as e:  # the timed samples are kept: the result is partial, its memory not measured
            why = f"interrupted ({e}) before the memory child reported"
            reading = MemoryReading.unmeasured(why)
            update.update(status="partial", warnings=[*result.warnings, why])
    fields = reading.result_fields()
    fields["not_measured"] = {**not_measured, **fields["not_measured"]}
    return result.model_copy(update={**update, **fields})


def runner_memory_fields(res: dict[str, Any] | None, files: list[Path], where: str) -> dict[str, Any]:
    """The result fields of a board run: ``artifact_bytes`` of the pushed ``files`` and the runner's own
    ``/proc/self/status`` reading (``res`` is its ``RESULT``; ``None`` for a native tool)."""
    size = sum(f.stat().st_size for f in files if f.is_file())
    if res is None or "samples_ms" not in res or "memory" not in res:
        reading = MemoryReading.unmeasured(
            f"no memory reading from {where}: a native tool reports none"
            if res is not None and "memory" not in res
            else f"no runner result from {where}"
        )
    else:
        reading = MemoryReading.from_runner(res.get("memory"), where)
    return {"artifact_bytes": size, **reading.result_fields()}
