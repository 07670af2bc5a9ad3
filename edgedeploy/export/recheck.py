"""Re-checking an artifact: parity against PyTorch from its manifest, and bisection when it fails.

What ``edgedeploy parity ARTIFACT`` (:mod:`edgedeploy.export.cli`) and local ``bench --parity``
(:mod:`edgedeploy.devices.board_parity`) run; the model, precision, input size, layout and lowering mode come from
the manifest beside the artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def module_for(model: str, size: int, weights: str | None, lowering: str, fmt: str) -> tuple[Any, Any]:
    """(original module, exported module): the latter lowered for ``fmt`` when the artifact was."""
    import torch

    from edgedeploy.cards import get_card
    from edgedeploy.data import real_image
    from edgedeploy.export.lowering import lower
    from edgedeploy.zoo import build_model

    module = build_model(get_card(model), size, weights=weights)
    if lowering == "none":
        return module, module
    lowered, _ = lower(module, torch.from_numpy(real_image(size)), target=fmt)
    return module, lowered


def check_artifact(
    artifact: str | Path,
    model: str | None = None,
    bisect: bool | None = None,
    tolerance: float | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """Parity (and bisection when it fails, or when ``bisect`` is True) of ``artifact``; returns a dict with
    ``parity`` (ParityReport) and ``bisection`` (BisectReport or None) and ``bisect_error`` (why not bisected)."""
    from edgedeploy.errors import ArtifactError, ConfigError
    from edgedeploy.export.bisect import BISECT_FORMATS, bisect_artifact
    from edgedeploy.export.manifest import read_manifest
    from edgedeploy.export.parity import DEFAULT_THRESHOLDS
    from edgedeploy.export.pipeline import run_parity
    from edgedeploy.limits import check_parity_thresholds
    from edgedeploy.registry import existing_artifact_format

    path = Path(artifact)
    if not path.exists():
        raise ArtifactError(f"artifact not found: {path}")
    fmt = existing_artifact_format(path)
    check_parity_thresholds(tolerance=tolerance)
    manifest = read_manifest(path, verify=True)
    if manifest is None and model is None:
        raise ConfigError(f"{path} has no manifest beside it; name the model with --model")
    name = model or manifest.model  # type: ignore[union-attr]
    precision = manifest.precision if manifest else "fp32"
    layout = manifest.input.layout if manifest else "NCHW"
    lowering = (manifest.lowering or {}).get("mode", "default") if manifest else "default"
    weights = weights or (manifest.weights if manifest else None)
    if manifest:
        shape = manifest.input.shape
        size = int(shape[2] if layout == "NCHW" else shape[1])
    else:
        from edgedeploy.cards import get_card

        size = get_card(name).input_size
    original, exported = module_for(name, size, weights, lowering, fmt)
    report = run_parity(original, path, fmt, (1, 3, size, size), DEFAULT_THRESHOLDS[precision], layout)
    result: dict[str, Any] = {"artifact": str(path), "model": name, "format": fmt, "precision": precision}
    result["parity"] = report
    result["bisection"] = None
    result["bisect_error"] = None
    if bisect or (bisect is None and report.status == "failed"):
        if fmt not in BISECT_FORMATS:
            result["bisect_error"] = f"bisection supports {', '.join(BISECT_FORMATS)} artifacts, not {fmt}"
        else:
            opset = manifest.opset if manifest else None
            result["bisection"] = bisect_artifact(
                exported, path, fmt, (1, 3, size, size), tolerance, None, precision, opset
            )
    return result
