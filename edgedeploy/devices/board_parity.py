"""Board-side parity: run the reference inputs ON THE DEVICE and compare its outputs with PyTorch fp32 on the host.

A latency measured on a board is only worth something if the board computed the right thing, so
``edgedeploy bench … --device PROFILE --parity`` and ``edgedeploy parity ARTIFACT --device PROFILE`` do this:

1. the host builds the reference inputs of :mod:`edgedeploy.export.parity` — the embedded photo (with the model's
   mean / std) and 4 seeded standard-normal tensors, ``(1, C, H, W)`` float32 NCHW, transposed to ``(1, H, W, C)``
   for an NHWC artifact — and the reference outputs: the original (un-lowered) PyTorch module in fp32, or
   onnxruntime on the source file for an artifact exported from ONNX (model, source, input shape, weights,
   precision and layout from the artifact's manifest; from the zoo card when the artifact has none);
2. the inputs travel to the board as ``in-<i>.npy`` files (cached there by sha256, like the artifact); the board's
   runner (:mod:`edgedeploy.devices.runner`, or a native runner printing the same protocol) runs each once and writes
   ``out-<i>.npy``; the host pulls them;
3. :func:`edgedeploy.export.parity.compare_outputs` compares them under the same gates as the host
   (:data:`~edgedeploy.export.parity.DEFAULT_THRESHOLDS` for the artifact's precision, overridable) and the
   :class:`~edgedeploy.results.result.BenchResult` carries the verdict as ``board_parity`` (a ParityReport dict whose
   ``runtime`` names the runtime, its version and the device's architecture).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgedeploy.devices.parity_io import prepare

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile
    from edgedeploy.export.parity import Thresholds
    from edgedeploy.results.result import BenchResult


def verdict_line(result: BenchResult) -> str | None:
    """One line saying why board-side parity failed, or ``None`` when it passed or was not run."""
    bp = getattr(result, "board_parity", None)
    if not bp or bp.get("passed") is not False:
        return None
    return (
        f"board-side parity failed on {result.device} ({bp.get('runtime')}) for {result.model} "
        f"{result.format} {result.precision}: {'; '.join(bp.get('failures') or ['no detail'])}"
    )


def parity_on_device(
    profile: DeviceProfile,
    artifact: str | Path,
    runtime: str | None = None,
    model: str | None = None,
    weights: str | None = None,
    thresholds: Thresholds | None = None,
    threads: int | None = 1,
    **options: Any,
) -> BenchResult:
    """Board-side parity of ``artifact`` on ``profile``'s device (one timed run besides the parity inputs).

    ``runtime``: a runner runtime or native tool (default: the format's default runtime). Returns the
    :class:`BenchResult` whose ``board_parity`` holds the verdict. Raises what
    :func:`~edgedeploy.devices.remote.bench_on_device` and :func:`~edgedeploy.devices.parity_io.prepare` raise.
    """
    from edgedeploy import registry
    from edgedeploy.devices.remote import bench_on_device
    from edgedeploy.devices.request import RemoteBench

    path = Path(artifact)
    fmt = registry.format_of(path)
    rt = runtime or registry.default_runtime(fmt)
    request = prepare(path, model, weights, thresholds)
    shape = list(next(iter(request.inputs.values())).shape)
    req = RemoteBench(
        path, rt, request.model, fmt, request.precision, shape, iterations=1, warmup=0, threads=threads,
        parity=request, **options,
    )  # fmt: skip
    return bench_on_device(profile, req)


def summary_line(bp: dict[str, Any]) -> str:
    """``passed/FAILED  max abs …, max rel …, cosine …, top-1 … (N inputs, runtime)`` for a board_parity dict."""
    if bp.get("max_abs_error") is None:
        return f"{bp.get('status')}: {'; '.join(bp.get('failures') or [bp.get('reason') or ''])}"
    return (
        f"{'passed' if bp.get('passed') else 'FAILED'}  max abs {bp['max_abs_error']:.2e}, "
        f"max rel {bp['max_rel_error']:.2e}, cosine {bp['cosine_similarity']:.6f}, top-1 {bp['top1_agreement']:.2f} "
        f"({len(bp.get('inputs') or [])} inputs, {bp.get('runtime')})"
    )


def attach_local(result: BenchResult, target: Any, weights: str | None = None) -> None:
    """``--parity`` on the local device: the host's own parity check of the artifact, as ``result.board_parity``."""
    from edgedeploy.export.parity import ParityReport

    if target.artifact is None:
        report = ParityReport.not_run("the torch runtime is the reference itself")
    else:
        from edgedeploy.export.recheck import check_artifact

        report = check_artifact(target.artifact, target.model, bisect=False, weights=weights)["parity"]
    result.board_parity = report.to_dict()  # type: ignore[attr-defined]
