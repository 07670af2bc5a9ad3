"""``bench --sustained SECONDS``: back-to-back inference for a fixed time, and whether the device throttles.

The runner (:func:`edgedeploy.devices.runner.run_sustained`; on the host in a fresh child process that holds only
the runtime, on a board the pushed runner itself) loads the artifact, runs the first inference and the warm-up,
then times back-to-back batch-1 runs until SECONDS have passed. It records each iteration's latency (ms) and the
time it ended (s since the start of the sustained phase, monotonic clock), and about once a second, between two
iterations (outside the timed region), the temperatures of ``/sys/class/thermal/thermal_zone*`` (°C) and the
current frequency of the CPUs the process may run on (``scaling_cur_freq``, kHz). Where sysfs has none (a VM,
qemu-user) the trace holds ``null`` and ``not_measured`` says why.

:func:`summarize` derives, from the raw trace (kept in the result):

- ``first_window_p50_ms`` and ``last_window_p50_ms``: the p50 of the iterations that ended in the first and in the
  last window. The window is **60 s** for runs of at least 120 s (the first and the last minute); for shorter runs
  it is **a third of the run** (so the windows never overlap and each holds a third of the samples), and
  ``window_note`` says so;
- ``throttle_ratio`` = last / first window p50: 1.0 steady, above 1 slower at the end (thermal throttling, or
  other load), below 1 faster (caches and clocks still warming up in the first window);
- ``temperature_c_first`` / ``temperature_c_last`` / ``temperature_c_max`` (hottest zone) and
  ``freq_mhz_first`` / ``freq_mhz_last`` (mean of the allowed CPUs), ``None`` + reason where not readable.

The result's ``samples_ms`` are the sustained phase's samples (``iterations`` = their count), so every statistic
and ``compare`` work on them as on any run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

#: a run at least this long (s) uses 60 s windows; a shorter one uses thirds
MINUTE_WINDOWS_FROM_S = 120.0
WINDOW_S = 60.0


def windows(duration_s: float) -> tuple[float, str]:
    """The window length (s) for a run of ``duration_s`` and the sentence that says how it was chosen."""
    if duration_s >= MINUTE_WINDOWS_FROM_S:
        return WINDOW_S, "first and last 60 s of the run"
    w = duration_s / 3.0
    return w, (
        f"run shorter than {MINUTE_WINDOWS_FROM_S:g} s: the windows are the first and the last third of it "
        f"({w:.1f} s each) instead of the first and last minute"
    )


def _hottest(entry: dict[str, Any]) -> float | None:
    temps = entry.get("temp_c") or {}
    return max(temps.values()) if temps else None


def _mean_mhz(entry: dict[str, Any]) -> float | None:
    freqs = entry.get("freq_khz") or {}
    return sum(freqs.values()) / len(freqs) / 1000.0 if freqs else None


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """The sustained block of a result from the runner's raw ``sustained`` object (see the module docstring).

    ``raw``: ``samples_ms`` (ms), ``t_s`` (s, end of each iteration), ``duration_s``, ``thermal`` (list of
    ``{"t_s", "temp_c": {zone: °C} | None, "freq_khz": {cpu: kHz} | None}``), ``temperature_reason``,
    ``frequency_reason``. Raises ``ValueError`` when the run measured no sample.
    """
    samples: Sequence[float] = raw.get("samples_ms") or []
    t_s: Sequence[float] = raw.get("t_s") or []
    if not samples or len(samples) != len(t_s):
        raise ValueError("the sustained run measured no sample (or its timestamps do not match its samples)")
    duration = float(raw.get("duration_s") or t_s[-1])
    w, note = windows(duration)
    first = [s for s, t in zip(samples, t_s, strict=True) if t <= w]
    last = [s for s, t in zip(samples, t_s, strict=True) if t >= duration - w]
    first = first or [samples[0]]
    last = last or [samples[-1]]
    p_first, p_last = statistics.median(first), statistics.median(last)
    trace = list(raw.get("thermal") or [])
    temps = [(e["t_s"], _hottest(e)) for e in trace if _hottest(e) is not None]
    freqs = [(e["t_s"], _mean_mhz(e)) for e in trace if _mean_mhz(e) is not None]
    not_measured: dict[str, str] = {}
    if not temps:
        not_measured["temperature"] = raw.get("temperature_reason") or "no temperature reading in the trace"
    if not freqs:
        not_measured["frequency"] = raw.get("frequency_reason") or "no frequency reading in the trace"
    return {
        "seconds": raw.get("seconds"),
        "duration_s": duration,
        "iterations": len(samples),
        "t_s": list(t_s),
        "window_s": w,
        "window_note": note,
        "first_window_n": len(first),
        "last_window_n": len(last),
        "first_window_p50_ms": p_first,
        "last_window_p50_ms": p_last,
        "throttle_ratio": p_last / p_first if p_first > 0 else None,
        "thermal_trace": trace,
        "temperature_c_first": temps[0][1] if temps else None,
        "temperature_c_last": temps[-1][1] if temps else None,
        "temperature_c_max": max(t for _, t in temps) if temps else None,
        "freq_mhz_first": freqs[0][1] if freqs else None,
        "freq_mhz_last": freqs[-1][1] if freqs else None,
        "not_measured": not_measured,
    }


def apply(result: Any, raw: dict[str, Any] | None) -> Any:
    """``result`` (a :class:`~edgedeploy.results.result.BenchResult` whose runner ran ``--sustained``) with the
    sustained phase's samples as its ``samples_ms`` and the summary as ``sustained``.

    Raises :class:`~edgedeploy.errors.DeviceError` when the runner returned no sustained phase.
    """
    from edgedeploy.errors import DeviceError

    if not raw:
        raise DeviceError(f"{result.device}: the runner returned no sustained phase (runner older than this one?)")
    summary = summarize(raw)
    not_measured = {**result.not_measured, **summary["not_measured"]}
    update = {"samples_ms": list(raw["samples_ms"]), "iterations": summary["iterations"], "sustained": summary,
              "not_measured": not_measured}  # fmt: skip
    data = {**result.model_dump(), **update}
    return type(result).model_validate(data)  # re-derives the statistics from the new samples


def runner_args(seconds: float | None) -> list[str]:
    """The runner's extra arguments for a sustained run (``[]`` for none)."""
    return ["--sustained", f"{seconds:g}"] if seconds else []


def bench_sustained_local(target: Any, threads: int | None, warmup: int, seconds: float) -> Any:
    """``--sustained`` on the host: the runner in a fresh child process (only the runtime in it) runs ``target``
    (a :class:`~edgedeploy.bench.run.BenchTarget` with an artifact) for ``seconds``; returns a ``BenchResult``
    with the sustained samples, the summary and the child's memory figures.

    SIGINT / SIGTERM stop the child's phase: the samples it measured are returned as a ``partial`` result.
    Raises :class:`~edgedeploy.errors.ConfigError` for the torch runtime (no artifact to hand to a runner),
    :class:`~edgedeploy.errors.RemoteCommandError` / ``DeviceError`` when the child fails.
    """
    import os

    from edgedeploy._util import sha256_file
    from edgedeploy.bench.envinfo import local_fingerprint
    from edgedeploy.bench.memory import MemoryReading, MemoryRequest, artifact_bytes, child_command, run_runner_child
    from edgedeploy.errors import ConfigError
    from edgedeploy.results.result import BenchResult, utc_now_iso
    from edgedeploy.runtimes.base import get_runtime
    from edgedeploy.signals import Interrupted

    if target.artifact is None:
        raise ConfigError("--sustained runs an artifact in the runner; the torch runtime has none")
    threads = threads or os.cpu_count() or 1
    req = MemoryRequest(target.artifact, target.runtime, threads, tuple(target.input_shape), target.precision, 1)
    argv = child_command(req)
    argv[argv.index("--warmup") + 1] = str(warmup)
    started_at = utc_now_iso()
    warnings: list[str] = []
    try:
        res = run_runner_child([*argv, *runner_args(seconds)], timeout_s=seconds + 900.0)
    except Interrupted as e:  # the child stopped its sustained phase and reported: keep what it measured
        res = getattr(e, "runner_result", None)
        if not res or not (res.get("sustained") or {}).get("samples_ms"):
            raise
        phase = res["sustained"]
        warnings.append(f"interrupted ({phase.get('interrupted') or e}) after {phase['duration_s']:.1f} of "
                        f"{seconds:g} s: the {len(phase['samples_ms'])} samples measured were kept")  # fmt: skip
    finished_at = utc_now_iso()
    reading = MemoryReading.from_runner(res.get("memory"), "the host (a fresh child process)")
    env = local_fingerprint({target.runtime: get_runtime(target.runtime).version()})
    env["threads"] = threads
    result = BenchResult(
        model=target.model, format=target.format, precision=target.precision, runtime=target.runtime,
        device="local", threads=threads, iterations=1, warmup=warmup, input_shape=list(res.get("input_shape") or []),
        samples_ms=list(res["samples_ms"]), load_ms=res.get("load_ms"), first_ms=res.get("first_ms"),
        source="python-runner (host child, sustained)",
        artifact={"path": str(target.artifact), "sha256": sha256_file(target.artifact)},
        env=env, git_commit=env.get("git_commit") or env.get("package_commit"), started_at=started_at,
        finished_at=finished_at, verified=target.verified, artifact_bytes=artifact_bytes(target.artifact),
        status="partial" if warnings else "complete", warnings=warnings, **reading.result_fields(),
    )  # fmt: skip
    return apply(result, res.get("sustained"))
