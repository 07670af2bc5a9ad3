"""Remote benchmark orchestration: push, pin, read state, run, parse, retry — one :class:`BenchResult` out.

Steps of :func:`bench_on_device`:

1. take the device's lock (local ``flock`` + ``mkdir`` lock on the device, :mod:`edgedeploy.devices.lock`);
2. push the runner (cached by its sha256) and the artifact into ``<workdir>/artifacts/<sha256>/`` — pushed once,
   skipped when the device already has a file with that hash (side files travel along: ncnn's ``.bin``,
   ONNX external data ``<name>.data``);
3. optionally cool down (``profile.cooldown``) and, on Android, ask for fixed-performance mode
   (``profile.fixed_performance``; undone afterwards);
4. read the device state, pin the run with ``taskset`` to ``profile.pin_mask`` or to the fastest cores found in
   ``cpuinfo_max_freq``, run the runner (or a native tool), read the state again and flag throttling;
5. on a dropped connection: reconnect with back-off (``retry_backoff_s``, doubling, ``retries`` times), keep the
   samples already measured (from the device's progress file or the output received before the drop), measure the
   remaining iterations, and mark the result ``status: partial`` with a warning saying what happened.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedeploy import registry
from edgedeploy._util import sha256_file
from edgedeploy.bench import interrupt
from edgedeploy.devices import runner as runner_module
from edgedeploy.devices.connect import connect
from edgedeploy.devices.lock import LocalDeviceLock, RemoteDeviceLock
from edgedeploy.devices.profile import NATIVE_TOOLS, PYTHON_RUNTIMES, RUNNER_TOOLS, DeviceProfile
from edgedeploy.devices.push import artifact_digest, push_cached
from edgedeploy.devices.request import RemoteBench
from edgedeploy.devices.state import fastest_cores, read_device_state, throttling
from edgedeploy.devices.transport import Transport
from edgedeploy.errors import (
    ConfigError,
    ConnectionDroppedError,
    DeviceError,
    RemoteCommandError,
    UnknownRuntimeError,
)
from edgedeploy.results.result import BenchResult, utc_now_iso


def push_runner(transport: Transport, workdir: str) -> str:
    """The device path of the runner script, pushed if the device lacks this version."""
    src = Path(runner_module.__file__)
    digest = sha256_file(src)
    (path,), _ = push_cached(transport, [src], f"{workdir}/runner/{digest[:16]}")
    return path


def has_command(transport: Transport, tool: str) -> bool:
    return transport.sh(f"command -v {shlex.quote(tool)} >/dev/null 2>&1", check=False, timeout=60).ok


def _cool_down(transport: Transport, profile: DeviceProfile, warnings: list[str]) -> dict[str, Any]:
    cd = profile.cooldown
    state = read_device_state(transport)
    if cd is None:
        return state
    deadline = time.monotonic() + cd.timeout_s
    waited = 0.0
    t0 = time.monotonic()
    while state.get("max_temp_c") is not None and state["max_temp_c"] > cd.max_temp_c:
        if time.monotonic() >= deadline:
            warnings.append(
                f"cool-down: still {state['max_temp_c']:.1f} C after {cd.timeout_s:g} s (target {cd.max_temp_c:g} C)"
            )
            break
        time.sleep(cd.poll_s)
        state = read_device_state(transport)
    waited = time.monotonic() - t0
    state["cooldown_s"] = round(waited, 3)
    return state


@contextlib.contextmanager
def _fixed_performance(transport: Transport, profile: DeviceProfile, warnings: list[str]) -> Iterator[bool]:
    if not (profile.fixed_performance and profile.os == "android"):
        yield False
        return
    on = transport.sh("cmd power set-fixed-performance-mode-enabled true", check=False, timeout=60)
    if not on.ok:
        warnings.append(f"fixed-performance mode not available: {(on.stderr or on.stdout).strip()[:200]}")
    try:
        yield on.ok
    finally:
        if on.ok:
            with contextlib.suppress(DeviceError):
                transport.sh("cmd power set-fixed-performance-mode-enabled false", check=False, timeout=60)


def _parse_runner_output(text: str) -> tuple[list[float], dict[str, Any] | None]:
    samples: list[float] = []
    result = None
    for line in text.splitlines():
        if line.startswith("S "):
            with contextlib.suppress(ValueError):
                samples.append(float(line[2:]))
        elif line.startswith("RESULT "):
            result = json.loads(line[7:])
    return samples, result


def _reconnect(transport: Transport, profile: DeviceProfile, attempt: int, log: list[str]) -> bool:
    delay = profile.retry_backoff_s * (2**attempt)
    time.sleep(delay)
    try:
        transport.reconnect()
    except DeviceError as e:
        log.append(f"reconnect attempt {attempt + 1} after {delay:g} s failed: {e}")
        return False
    log.append(f"reconnected after {delay:g} s (attempt {attempt + 1})")
    return True


def probe_device(transport: Transport, profile: DeviceProfile) -> dict[str, Any]:
    """Run the runner's ``--probe`` on the device: arch, Python version and runtimes importable there.

    Raises :class:`RemoteCommandError` when the device's Python cannot run it.
    """
    workdir = transport.expand_path(profile.workdir or ".")
    if profile.python is None:  # native tools only
        res = {"python": None, "runtimes": {}, "errors": {}, "arch": read_device_state(transport).get("arch")}
    else:
        runner = push_runner(transport, workdir)
        r = transport.run([profile.python, runner, "--probe"], timeout=300)
        _, res = _parse_runner_output(r.stdout)
        if res is None:
            raise RemoteCommandError(f"{profile.python} {runner} --probe", r.exit_status, r.stderr or r.stdout)
    native = {}
    for tool, path in profile.native_tools.items():
        native[tool] = path if transport.sh(f"[ -x {shlex.quote(path)} ]", check=False, timeout=60).ok else None
    res["native_tools"] = native
    return res


def bench_on_device(profile: DeviceProfile, req: RemoteBench) -> BenchResult:
    """Benchmark ``req.artifact`` on the device described by ``profile`` and return one :class:`BenchResult`.

    ``req``: the :class:`~edgedeploy.devices.request.RemoteBench` request (runtime or native tool from
    ``profile.native_tools``, iterations, warm-up, threads, core mask, parity …; latencies in ms).

    Raises :class:`ConfigError` (bad numbers, missing artifact), :class:`UnknownRuntimeError`,
    :class:`DeviceBusyError`, :class:`DeviceUnreachableError`, :class:`DeviceAuthError`,
    :class:`RemoteCommandError` (with the device's stderr), and :class:`ConnectionDroppedError` only when the
    connection was lost before any sample was measured and every retry failed.
    """
    artifact = Path(req.artifact)
    runtime, iterations, warmup, threads = req.runtime, req.iterations, req.warmup, req.threads
    if not artifact.is_file():
        raise ConfigError(f"artifact {artifact}: no such file")
    from edgedeploy.limits import check_run_options, profile_cores

    warnings: list[str] = check_run_options(
        iterations, warmup, threads, profile_cores(profile), req.allow_oversubscribe
    )
    native_tool = runtime[7:] if runtime.startswith("native:") else runtime if runtime in NATIVE_TOOLS else None
    if native_tool is not None:
        if native_tool not in profile.native_tools:
            raise UnknownRuntimeError(runtime, [*PYTHON_RUNTIMES, *(f"native:{t}" for t in profile.native_tools)])
        py_runtime = None
    else:
        try:
            py_runtime = registry.device_runtime(runtime)
        except UnknownRuntimeError:
            raise UnknownRuntimeError(
                runtime, [*registry.device_runtime_names(), *(f"native:{t}" for t in profile.native_tools)]
            ) from None
    if native_tool is None and profile.python is None:
        raise ConfigError(
            f"{profile.name} has no Python (python: null in its profile): use a native tool, "
            f"--runtime {' or '.join(f'native:{t}' for t in profile.native_tools) or 'native:TOOL'}"
        )
    files = [artifact, *registry.side_files(artifact)]
    for f in files[1:]:
        if not f.is_file():
            raise ConfigError(f"artifact {artifact} needs {f.name} beside it")
    retry_log: list[str] = []
    local_lock = LocalDeviceLock(profile)
    local_lock.acquire()
    try:
        transport = connect(profile)
        try:
            return _bench(transport, profile, files, req, (py_runtime, native_tool), warnings, retry_log)
        finally:
            transport.close()
    finally:
        local_lock.release()


@dataclass
class _RunnerJob:
    """What one runner process needs besides the request: the command, the pushed artifact, the runner's runtime
    name, the thread count and ``taskset`` prefix decided on the device, the work folder and the parity folders."""

    runner_cmd: list[str]
    remote_artifact: str
    runtime: str
    threads: int
    prefix: list[str]
    workdir: str
    parity_dirs: tuple[str, str] | None = None


def _bench(
    transport: Transport,
    profile: DeviceProfile,
    files: list[Path],
    req: RemoteBench,
    runtimes: tuple[str | None, str | None],
    warnings: list[str],
    retry_log: list[str],
) -> BenchResult:
    """``runtimes``: (the runner's Python runtime, the native tool), one of them set."""
    from edgedeploy.limits import check_threads, profile_cores

    py_runtime, native_tool = runtimes
    iterations, warmup, threads, precision, input_shape = (
        req.iterations, req.warmup, req.threads, req.precision, req.input_shape
    )  # fmt: skip
    parity_dirs: tuple[str, str] | None = None

    workdir = transport.expand_path(profile.workdir or ".")
    transport.makedirs(workdir)
    rlock = RemoteDeviceLock(transport, workdir)
    rlock.acquire()
    try:
        digest = artifact_digest(files)
        t0 = time.monotonic()
        remote_files, pushed = push_cached(transport, files, f"{workdir}/artifacts/{digest}")
        push_s = time.monotonic() - t0
        # the runner: the Python script with the device's python, or a native tool speaking its protocol
        if native_tool in RUNNER_TOOLS:
            runner_cmd, runner_rt = [profile.native_tools[native_tool]], RUNNER_TOOLS[native_tool]
        elif py_runtime:
            runner_cmd, runner_rt = [profile.python or "python3", push_runner(transport, workdir)], py_runtime
        else:
            runner_cmd, runner_rt = [], ""
        parity_req = req.parity
        if parity_req is not None and runner_cmd:
            from edgedeploy.devices.parity_io import push_inputs

            parity_dirs = (
                push_inputs(transport, parity_req, workdir),
                f"{workdir}/runs/{uuid.uuid4().hex}",
            )
        before = _cool_down(transport, profile, warnings)
        mask = req.core_mask or profile.pin_mask
        if mask is None:
            cores = fastest_cores(before)
            mask = hex(sum(1 << c for c in cores)) if cores else None
        pin = bool(req.pin) and mask is not None
        if pin and not has_command(transport, "taskset"):
            warnings.append("taskset not found on the device: the run is not pinned to a core mask")
            pin = False
        if mask is None:
            warnings.append("no core mask known (profile has no clusters, sysfs has no cpufreq): not pinned")
        pin_cores = [i for i in range(64) if mask and (int(mask, 16) >> i) & 1]
        if threads is None:
            threads = len(pin_cores) if pin and pin_cores else int(before.get("nproc") or 1)
        elif profile_cores(profile) is None and before.get("nproc"):  # the profile did not say; the device does
            warnings += check_threads(threads, int(before["nproc"]), req.allow_oversubscribe)
        if pin and threads > len(pin_cores):
            warnings.append(f"{threads} threads on {len(pin_cores)} pinned cores (mask {mask}): oversubscribed")
        prefix = ["taskset", mask] if pin and mask else []
        started_at = utc_now_iso()  # the timed phase: the runner's (or native tool's) warm-up and timed runs
        with _fixed_performance(transport, profile, warnings) as fixed_perf:
            if not runner_cmd:
                from edgedeploy.devices.native import run_native

                run = run_native(transport, profile, native_tool or "", remote_files[0], req, threads, prefix)
                samples, res, status = run["samples_ms"], run, "complete"
                warnings.extend(run.get("warnings", []))
            else:
                job = _RunnerJob(runner_cmd, remote_files[0], runner_rt, threads, prefix, workdir, parity_dirs)
                samples, res, status = _run_with_retries(transport, profile, req, job, warnings, retry_log)
        finished_at = utc_now_iso()
        try:
            after = read_device_state(transport)
        except DeviceError as e:  # the board went away after the run: keep the samples it measured
            if status != "partial":
                raise
            after = {"error": f"{type(e).__name__}: {e}"}
            warnings.append(f"device state after the run not read: {e}")
    finally:
        with contextlib.suppress(DeviceError):
            rlock.release()
    trace = res.get("freq_trace", []) if res else []
    throttled = throttling(before, after, trace, pin_cores or fastest_cores(before))
    warnings.extend(throttled)
    arch = (res or {}).get("arch") or after.get("arch") or profile.arch
    if profile.arch and arch and arch != profile.arch:
        warnings.append(f"profile says arch {profile.arch}, the device says {arch}")
    env = {
        "device": profile.name,
        "transport": profile.transport,
        "address": profile.address,
        "os": profile.os,
        "arch": arch,
        "kernel": after.get("kernel"),
        "clusters": [c.model_dump() for c in profile.clusters],
        "core_mask": mask if pin else None,
        "pinned": pin,
        "threads": threads,
        "governor": before.get("governor"),
        "max_temp_c_before": before.get("max_temp_c"),
        "max_temp_c_after": after.get("max_temp_c"),
        "throttled": bool(throttled),
        "fixed_performance": fixed_perf,
        "python": (res or {}).get("python"),
        "runtime_version": (res or {}).get("runtime_version"),
        "runner_version": (res or {}).get("runner_version"),
        "cpus_allowed": (res or {}).get("cpus_allowed"),
        "workdir": workdir,
        "artifact_pushed": pushed,
        "push_s": round(push_s, 3),
    }
    if retry_log:
        env["retries"] = retry_log
    state = {"before": before, "after": after, "freq_trace": trace}
    extra: dict[str, Any] = {}
    if res and "output" in res:
        extra["output_summary"] = res["output"]
    if res and res.get("repeat_identical") is False:
        warnings.append(
            "the same input gave different outputs on the first and the last run: the runtime does not compute the "
            f"same thing on repeated runs (output sum {res['output']['sum']:.6g} then {res['output_last']['sum']:.6g})"
        )
    from edgedeploy.bench.memory import runner_memory_fields

    extra.update(runner_memory_fields(res if runner_cmd else {}, files, profile.name))
    if res and res.get("sustained"):
        extra["sustained"] = res["sustained"]  # raw; edgedeploy.bench.sustained.apply summarizes it
    if parity_req is not None:
        label = (runner_rt, native_tool, arch)
        extra["board_parity"] = _board_parity(transport, parity_req, res, label, parity_dirs)
    if native_tool is not None and not runner_cmd:
        extra["native"] = {k: v for k, v in res.items() if k not in ("samples_ms", "warnings")}
        # no raw samples from these tools: carry the statistics they printed (see edgedeploy.devices.native)
        for k in ("median_ms", "mean_ms", "p90_ms", "p99_ms", "std_ms", "min_ms", "max_ms"):
            if res.get(k) is not None:
                extra[k] = res[k]
    return BenchResult(
        model=req.model,
        format=req.fmt,
        precision=precision,
        runtime=py_runtime or native_tool or "",
        device=profile.name,
        threads=threads,
        iterations=iterations,
        warmup=warmup,
        input_shape=list((res or {}).get("input_shape") or input_shape),
        samples_ms=samples,
        load_ms=(res or {}).get("load_ms", (res or {}).get("init_ms")),
        first_ms=(res or {}).get("first_ms"),
        status=status,
        source=f"native:{native_tool}" if native_tool else "python-runner",
        artifact={"path": str(files[0]), "sha256": digest, "remote_path": remote_files[0]},
        warnings=warnings,
        device_state=state,
        env=env,
        git_commit=req.git_commit,
        started_at=started_at,
        finished_at=finished_at,
        **extra,
    )


def _board_parity(
    transport: Transport,
    request: Any,
    res: dict[str, Any] | None,
    label: tuple[str | None, str | None, str | None],
    dirs: tuple[str, str] | None,
) -> dict[str, Any]:
    """Pull the board's parity outputs and compare them with the reference (see board_parity); ``label``: the
    runner's runtime, the native tool and the device's architecture; ``dirs``: the inputs and outputs folders."""
    from edgedeploy.devices.parity_io import collect
    from edgedeploy.export.parity import ParityReport

    py_runtime, native_tool, arch = label
    if dirs is None:
        report = ParityReport.not_run(
            f"native tool {native_tool} prints no outputs; board-side parity needs the runner"
        )
        report.runtime = native_tool
        return report.to_dict()
    tool = f" (native:{native_tool})" if native_tool else ""
    label = f"{py_runtime} {(res or {}).get('runtime_version', '?')}{tool} on {arch}"
    return collect(transport, request, dirs[1], list((res or {}).get("parity_outputs") or []), label).to_dict()


def _run_with_retries(
    transport: Transport,
    profile: DeviceProfile,
    req: RemoteBench,
    job: _RunnerJob,
    warnings: list[str],
    retry_log: list[str],
) -> tuple[list[float], dict[str, Any] | None, str]:
    """Run the runner until ``req.iterations`` samples exist or the retries are spent; returns samples, the last
    runner result (or ``None``) and the status."""
    iterations, warmup, precision, input_shape = req.iterations, req.warmup, req.precision, req.input_shape
    runner_cmd, remote_artifact, runtime, threads = job.runner_cmd, job.remote_artifact, job.runtime, job.threads
    prefix, workdir = job.prefix, job.workdir
    kept: list[float] = []
    last: dict[str, Any] | None = None
    status = "complete"
    timeout = float(req.timeout_s)
    attempt = 0
    transport.makedirs(f"{workdir}/runs")
    while len(kept) < iterations:
        remaining = iterations - len(kept)
        progress = f"{workdir}/runs/{uuid.uuid4().hex}.samples"
        argv = [
            *prefix, *runner_cmd, "--artifact", remote_artifact, "--runtime", runtime,
            "--iterations", str(remaining), "--warmup", str(warmup), "--threads", str(threads),
            "--precision", precision, "--input-shape", ",".join(str(d) for d in input_shape),
            "--progress", progress, "--state-every", str(int(req.state_every)),
        ]  # fmt: skip
        from edgedeploy.bench.sustained import runner_args

        argv += runner_args(req.sustained_s)
        if job.parity_dirs and last is None:  # board-side parity: in the first complete runner process
            argv += ["--parity-inputs", job.parity_dirs[0], "--parity-outputs", job.parity_dirs[1]]
        try:
            with interrupt.interruptible():  # a suite's SIGINT / SIGTERM or case timeout ends the wait
                r = transport.run(argv, timeout=timeout, check=False)
        except interrupt.StopRequested as e:
            got = _stop_runner(transport, progress)
            kept.extend(got[:remaining])
            if not kept:
                raise
            status = "partial"
            warnings.append(f"{e.reason} after {len(kept)} of {iterations} iterations: the samples measured were kept")
            break
        except ConnectionDroppedError as e:
            status = "partial"
            got = _recover_samples(transport, profile, progress, e, attempt, retry_log)
            kept.extend(got[:remaining])
            warnings.append(
                f"connection dropped during the run ({e}); {len(got)} samples measured before the drop were kept"
            )
            attempt += 1
            if attempt > profile.retries or not _alive(transport):
                if not kept:
                    raise ConnectionDroppedError(
                        f"{profile.name}: connection lost and not regained after {profile.retries} retries; "
                        "no sample was measured"
                    ) from e
                warnings.append(f"gave up after {attempt} attempt(s): {iterations - len(kept)} iterations not run")
                break
            continue
        if r.exit_status != 0:
            raise RemoteCommandError(shlex.join(argv), r.exit_status, r.stderr or r.stdout)
        got, res = _parse_runner_output(r.stdout)
        if res is None:
            raise RemoteCommandError(shlex.join(argv), r.exit_status, "runner printed no RESULT line: " + r.stderr)
        kept.extend(res["samples_ms"])
        if last is not None and "parity_outputs" in last:
            res["parity_outputs"] = last["parity_outputs"]
        last = res
        transport.run(["rm", "-f", progress], check=False, timeout=60)
    if status == "partial" and len(kept) >= iterations:
        warnings.append(f"samples come from {attempt + 1} runner processes (each re-loaded and warmed up)")
    return kept, last, status


def _stop_runner(transport: Transport, progress: str) -> list[float]:
    """Stop the runner writing ``progress`` (its unique path is in its command line) and return the samples in
    that file (ms). Best effort: a board that does not answer gives what the file had, or nothing."""
    vals: list[float] = []
    folder, _, name = progress.rpartition("/")
    pattern = f"{folder}/[{name[0]}]{name[1:]}"  # a regex that matches the runner, not this shell's command line
    with contextlib.suppress(DeviceError):
        transport.sh(f"pkill -f -- {shlex.quote(pattern)} 2>/dev/null; true", check=False, timeout=30)
        for line in (transport.read_text(progress) or "").splitlines():
            with contextlib.suppress(ValueError):
                vals.append(float(line))
        transport.run(["rm", "-f", progress], check=False, timeout=60)
    return vals


def _alive(transport: Transport) -> bool:
    try:
        return transport.sh("true", timeout=30, check=False).ok
    except DeviceError:
        return False


def _recover_samples(
    transport: Transport,
    profile: DeviceProfile,
    progress: str,
    err: ConnectionDroppedError,
    attempt: int,
    retry_log: list[str],
) -> list[float]:
    """Samples of a run whose connection dropped: from the device's progress file after reconnecting (bounded by
    ``profile.retries`` attempts with doubling back-off), else from the output received before the drop."""
    partial = getattr(err, "partial_stdout", "") or ""
    for k in range(attempt, profile.retries + 1):
        if _reconnect(transport, profile, k, retry_log):
            # the runner may still be alive on the device for a moment; let it be killed by the hang-up first
            text = transport.read_text(progress) or ""
            vals = []
            for line in text.splitlines():
                with contextlib.suppress(ValueError):
                    vals.append(float(line))
            transport.run(["rm", "-f", progress], check=False, timeout=60)
            from_stdout = _parse_runner_output(partial)[0]
            return vals if len(vals) >= len(from_stdout) else from_stdout
    return _parse_runner_output(partial)[0]
