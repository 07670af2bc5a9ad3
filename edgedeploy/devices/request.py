"""The remote-bench request: everything :func:`edgedeploy.devices.remote.bench_on_device` needs besides the device
profile, as one typed object the API builds and the remote bench, the native tools and the runner loop read as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgedeploy.devices.parity_io import ParityRequest


@dataclass
class RemoteBench:
    """One benchmark on a board.

    ``artifact``: the local file (side files beside it travel along). ``runtime``: a runner runtime
    (``onnxruntime``, ``mnn``, ``tflite`` / ``litert``, ``ncnn``) or a native tool (``mnn-benchmark``, also as
    ``native:<tool>``). ``model`` / ``fmt`` / ``precision`` label the result. ``input_shape``: NCHW (the model's
    own static shape wins where the runtime knows it). Latencies in ms: ``iterations`` timed runs after ``warmup``
    warm-up runs at ``threads`` threads (``None``: one per pinned core, else one per online core).
    ``core_mask``: hex string overriding the profile's; ``pin``: pin with ``taskset``; ``state_every``: iterations
    between frequency readings; ``timeout_s``: per runner process (s); ``git_commit``: recorded in the result;
    ``parity``: a :class:`~edgedeploy.devices.parity_io.ParityRequest` (the runner also runs the reference inputs
    and the result carries ``board_parity``); ``allow_oversubscribe``: accept more threads than cores (warned);
    ``sustained_s``: a sustained phase of that many seconds after the timed runs (per-iteration timestamps).
    """

    artifact: Path
    runtime: str
    model: str
    fmt: str
    precision: str
    input_shape: list[int]
    iterations: int = 100
    warmup: int = 10
    threads: int | None = None
    core_mask: str | None = None
    pin: bool = True
    state_every: int = 10
    timeout_s: float = 3600.0
    git_commit: str | None = None
    parity: ParityRequest | None = None
    allow_oversubscribe: bool = False
    #: after the timed runs, run back-to-back for this many seconds (edgedeploy.bench.sustained); None: no
    sustained_s: float | None = None
