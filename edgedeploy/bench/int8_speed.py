"""Is this int8 artifact faster than its fp32 artifact here? A short, bounded measurement at export.

:func:`measure_int8_speed` loads the int8 artifact and the fp32 artifact of the same module and format in the
format's host runtime (``registry.default_runtime``: onnxruntime for ONNX, MNN, LiteRT, ncnn), 1 thread each, and
times them with the interleaved A/B harness (:func:`edgedeploy.bench.ab.run_interleaved`) on the process CPU time
clock: a first untimed inference and ``warmup`` runs per side, then blocks in which the two sides alternate run by
run, until ``blocks`` blocks or ``max_seconds`` of timing. The ratio is the median of the per-block ratios (median
fp32 ms ÷ median int8 ms of the block): > 1 int8 is faster.

Why these choices: another process sharing the core slows both sides of a block alike, and with 1 runtime thread
the CPU time of an inference is the work it does, nearly independent of that sharing (the wall clock is not;
/work/shared/TOOLCHAIN_NOTES.md, ``benchmarks/int8_per_runtime.py`` uses the same clock). The ratio is a property
of this host's CPU (int8 kernels differ by ISA: MNN's int8 on x86 AVX-512 was 0.70× its fp32 for EdgeFormer-S
while onnxruntime's was 1.48×, ``benchmarks/results/int8_per_runtime.md``), which is why the record says so.

Not measured (``Int8Speed.measured`` False, with the reason): the runtime is not installed or cannot load the
artifact here, or one inference takes more than a tenth of the budget (a huge input: a few blocks would not fit).

Interrupted (Ctrl-C, or SIGTERM under the CLI): :class:`Int8SpeedInterrupted` carries the record of the blocks
timed so far (its reason says "interrupted"); the caller writes it into the manifest and lets the interrupt end
the command (exit 130 / 143).
"""

from __future__ import annotations

import os
import platform
import signal
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedeploy.bench.ab import BlockPlan, run_interleaved
from edgedeploy.bench.envinfo import cpu_model
from edgedeploy.errors import ConfigError, EdgeDeployError
from edgedeploy.export.manifest import Int8Speed, read_manifest
from edgedeploy.registry import default_runtime
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.signals import Interrupted, received_signal

#: default budget of the whole measurement (s, warm-up included); ``ExportOptions.int8_speed_seconds``
DEFAULT_SECONDS = 5.0
#: paired blocks aimed at (fewer when the budget runs out first)
DEFAULT_BLOCKS = 7
#: one side's block lasts about this long (ms), at least 3 runs
BLOCK_MS = 60.0
#: an inference slower than this share of the budget is not timed ("the input is huge")
MAX_SHARE_PER_INFERENCE = 0.1


@dataclass(frozen=True)
class Int8SpeedCheck:
    """How long and how: ``max_seconds`` budget (> 0, s), ``blocks`` paired blocks at most, ``warmup`` untimed runs
    per side after the first inference, ``threads`` per session (1: the ratio of the kernels, not of threading)."""

    max_seconds: float = DEFAULT_SECONDS
    blocks: int = DEFAULT_BLOCKS
    warmup: int = 2
    threads: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.max_seconds <= 600:
            raise ConfigError(f"int8_speed_seconds must be in (0, 600] (got {self.max_seconds})")
        if self.blocks < 1 or self.warmup < 0 or self.threads < 1:
            raise ConfigError("int8 speed check: blocks and threads must be >= 1, warmup >= 0")


class Int8SpeedInterrupted(Interrupted):
    """SIGINT / SIGTERM during :func:`measure_int8_speed`; ``speed`` is the record of what was timed before it
    (``measured`` True with the blocks so far, or False when no block was complete), reason "interrupted ..."."""

    def __init__(self, signum: int, speed: Int8Speed) -> None:
        super().__init__(signum)
        self.speed = speed


def host_description() -> str:
    """``<CPU model>, <n> logical cores, <arch>``: where the ratio was measured."""
    return f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.machine()}"


def _input_for(artifact: Path) -> np.ndarray:
    """A seeded N(0, 1) float32 input of the artifact's input shape (from its manifest)."""
    manifest = read_manifest(artifact, verify=False)
    if manifest is None:
        raise ConfigError(f"{artifact} has no manifest: its input shape is unknown")
    return np.random.default_rng(0).standard_normal(manifest.input.shape).astype(np.float32)


def measure_int8_speed(
    int8_artifact: str | Path, fp32_artifact: str | Path, fmt: str, check: Int8SpeedCheck | None = None
) -> Int8Speed:
    """Time ``int8_artifact`` against ``fp32_artifact`` (both of format ``fmt``, with their manifests) on this host
    (module docstring). Inputs: each artifact's manifest input shape (NCHW or NHWC), float32, batch 1. Returns an
    :class:`~edgedeploy.export.manifest.Int8Speed` (times in ms per inference, CPU time); never raises for a
    runtime that is missing or fails here (``measured`` False with the reason). Raises :class:`ConfigError` for
    an artifact without a manifest, :class:`Int8SpeedInterrupted` (a ``KeyboardInterrupt``, with the partial
    record) when SIGINT / SIGTERM stops the timing.
    """
    check = check or Int8SpeedCheck()
    runtime_name = default_runtime(fmt)
    base = {"runtime": runtime_name, "threads": check.threads, "fp32_artifact": str(fp32_artifact)}
    inputs = {"fp32": _input_for(Path(fp32_artifact)), "int8": _input_for(Path(int8_artifact))}
    started = time.monotonic()
    try:
        runtime = get_runtime(runtime_name)
        sessions = {
            p: runtime.load(Path(a), check.threads) for p, a in (("fp32", fp32_artifact), ("int8", int8_artifact))
        }
        infers = {p: s.prepare(inputs[p]) for p, s in sessions.items()}
        first_s = {}
        for p, infer in infers.items():  # the first inference (allocations, lazy init), also the size check
            t0 = time.process_time()
            infer()
            first_s[p] = time.process_time() - t0
    except EdgeDeployError as e:
        return Int8Speed(measured=False, reason=str(e).splitlines()[0], **base)
    except Exception as e:  # noqa: BLE001 - a runtime's own error loading / running here: recorded, not fatal
        return Int8Speed(measured=False, reason=f"{runtime_name} failed here: {type(e).__name__}: {e}", **base)
    slowest = max(first_s.values())
    if slowest > MAX_SHARE_PER_INFERENCE * check.max_seconds:
        reason = (
            f"one inference takes {slowest * 1e3:.0f} ms of CPU time, more than "
            f"{MAX_SHARE_PER_INFERENCE:.0%} of the {check.max_seconds:g} s budget (raise int8_speed_seconds)"
        )
        return Int8Speed(measured=False, reason=reason, **base)
    left = check.max_seconds - (time.monotonic() - started)
    plan = BlockPlan(block_ms=BLOCK_MS, max_seconds=max(left, 1e-3), warmup=check.warmup, max_blocks=check.blocks,
                     clock="cpu")  # fmt: skip
    timing = run_interleaved(infers["fp32"], infers["int8"], plan, lambda b, _c: len(b) >= check.blocks)
    ratios = [
        statistics.median(f) / max(statistics.median(q), 1e-9)
        for f, q in zip(timing.baseline, timing.candidate, strict=True)
    ]
    interrupted = timing.stopped == "interrupted"
    if not ratios:
        speed = Int8Speed(measured=False, reason="interrupted before a block was timed", **base)
        raise Int8SpeedInterrupted(received_signal() or signal.SIGINT, speed)
    fp32_all = [ms for block in timing.baseline for ms in block]
    int8_all = [ms for block in timing.candidate for ms in block]
    speed = Int8Speed(
        measured=True,
        reason=f"interrupted after {len(ratios)} of {check.blocks} blocks" if interrupted else None,
        ratio=round(statistics.median(ratios), 4),
        fp32_ms=round(statistics.median(fp32_all), 4),
        int8_ms=round(statistics.median(int8_all), 4),
        blocks=len(ratios),
        runs_per_block=timing.block_size,
        block_ratios=[round(r, 4) for r in ratios],
        clock=timing.clock,
        elapsed_s=round(time.monotonic() - started, 3),
        host=host_description(),
        **base,
    )
    if interrupted:
        raise Int8SpeedInterrupted(received_signal() or signal.SIGINT, speed)
    return speed
