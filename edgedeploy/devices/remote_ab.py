"""A/B on a board: both artifacts pushed, loaded in ONE runner process (``runner.py ab``), timed interleaved.

The runner applies the host's sequential rule with critical values the host computed (it has no scipy), so it
stops when the host would; the host then re-judges the returned block samples itself
(:mod:`edgedeploy.results.ab`). The board's lock is held for the whole A/B; the run is pinned to the profile's
core mask when it has one and ``taskset`` exists.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from edgedeploy import registry
from edgedeploy.bench.ab import ABTiming, BlockPlan
from edgedeploy.devices.connect import connect
from edgedeploy.devices.lock import LocalDeviceLock, RemoteDeviceLock
from edgedeploy.devices.profile import DeviceProfile
from edgedeploy.devices.push import artifact_digest, push_cached
from edgedeploy.devices.remote import has_command, push_runner
from edgedeploy.errors import ConfigError, RemoteCommandError

#: blocks the board runner may time at most (the critical-value table is sent on its command line)
MAX_BOARD_BLOCKS = 400


@dataclass(frozen=True)
class BoardABRequest:
    """What the board runs: the two artifacts (one format), the runtime the runner imports, ``threads`` (None:
    1), ``input_shape`` NCHW, the block plan, the band (percent), ``min_blocks`` and ``tcrit[n]`` (the t critical
    value for n blocks, n = 0 … ``MAX_BOARD_BLOCKS``)."""

    artifacts: tuple[Path, Path]
    runtime: str
    threads: int | None
    input_shape: tuple[int, ...]
    plan: BlockPlan
    threshold_pct: float
    min_blocks: int
    tcrit: tuple[float, ...]


def _files(artifact: Path) -> list[Path]:
    files = [artifact, *registry.side_files(artifact)]
    for f in files:
        if not f.is_file():
            raise ConfigError(f"artifact {artifact} needs {f.name}" if f != artifact else f"{artifact}: no such file")
    return files


def ab_on_device(profile: DeviceProfile, req: BoardABRequest) -> ABTiming:
    """Push both artifacts and the runner, run ``runner.py ab`` once, return its blocks (ms samples).

    Raises :class:`ConfigError` (missing artifact, no Python on the device), the transport's ``DeviceError``s and
    :class:`RemoteCommandError` (the runner failed; its stderr in the message).
    """
    if profile.python is None:
        raise ConfigError(f"{profile.name} has no Python (python: null in its profile): ab needs the Python runner")
    files = [_files(a) for a in req.artifacts]
    local_lock = LocalDeviceLock(profile)
    local_lock.acquire()
    try:
        transport = connect(profile)
        try:
            workdir = transport.expand_path(profile.workdir or ".")
            transport.makedirs(workdir)
            rlock = RemoteDeviceLock(transport, workdir)
            rlock.acquire()
            try:
                remote = [
                    push_cached(transport, fs, f"{workdir}/artifacts/{artifact_digest(fs)}")[0][0] for fs in files
                ]
                runner = push_runner(transport, workdir)
                prefix: list[str] = []
                if profile.pin_mask and has_command(transport, "taskset"):
                    prefix = ["taskset", profile.pin_mask]
                argv = [
                    *prefix, profile.python, runner, "ab", "--baseline", remote[0], "--candidate", remote[1],
                    "--runtime", req.runtime, "--threads", str(req.threads or 1),
                    "--input-shape", ",".join(str(d) for d in req.input_shape), "--warmup", str(req.plan.warmup),
                    "--block-size", str(req.plan.block_size or 0), "--block-ms", str(req.plan.block_ms),
                    "--max-seconds", str(req.plan.max_seconds), "--max-blocks", str(MAX_BOARD_BLOCKS),
                    "--threshold-pct", str(req.threshold_pct), "--min-blocks", str(req.min_blocks),
                    "--tcrit", ",".join(f"{t:.6g}" for t in req.tcrit[: MAX_BOARD_BLOCKS + 1]),
                ]  # fmt: skip
                r = transport.run(argv, timeout=req.plan.max_seconds * 4 + 600, check=False)
            finally:
                rlock.release()
        finally:
            transport.close()
    finally:
        local_lock.release()
    res = None
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
    if r.exit_status != 0 or res is None:
        raise RemoteCommandError(shlex.join(argv), r.exit_status, r.stderr or "runner printed no RESULT line")
    n = len(res["baseline"])
    return ABTiming(res["baseline"], res["candidate"], ["baseline" if i % 2 == 0 else "candidate" for i in range(n)],
                    block_size=int(res["block_size"]), elapsed_s=float(res["elapsed_s"]), stopped=str(res["stopped"]),
                    clock="wall",  # the board's runner times with time.perf_counter_ns
                    process={k: res.get(k) for k in ("pid", "arch", "runtime_version")})  # fmt: skip
