"""Parity: does an artifact compute what the PyTorch fp32 model computes?

Inputs: the embedded real photo (ImageNet-preprocessed, :mod:`edgedeploy.data`) and 4 seeded standard-normal
tensors, all ``(1, 3, H, W)`` float32 NCHW. The reference is the original (un-lowered) PyTorch module in fp32.

Metrics over all inputs (outputs are ``(1, num_classes)`` logits):

* ``max_abs_error`` — max |artifact − reference| over every element;
* ``max_rel_error`` — normwise: per input max|artifact − reference| / max|reference|, the largest over inputs;
* ``cosine_similarity`` — the smallest per-input cosine similarity of the flattened outputs;
* ``top1_agreement`` — fraction of inputs whose arg-max class matches.

Default gates per precision (:data:`DEFAULT_THRESHOLDS`, overridable on the command line): fp32 — max abs error
≤ 1e-3, max rel error ≤ 1e-3, cosine ≥ 0.9999, top-1 agreement 1.0; fp16 — max rel error ≤ 1e-2,
cosine ≥ 0.999, top-1 ≥ 0.8; int8 — cosine ≥ 0.98 and top-1 ≥ 0.6 only
(absolute error is not meaningful after full-integer quantization).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from edgedeploy.data import random_inputs, real_image
from edgedeploy.errors import ArtifactError

Status = Literal["passed", "failed", "not run"]


@dataclass
class Thresholds:
    """Gates of a parity check; ``None`` disables a gate."""

    max_abs_error: float | None = None
    max_rel_error: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(max_abs_error=1e-3, max_rel_error=1e-3, min_cosine=0.9999, min_top1=1.0),
    "fp16": Thresholds(max_rel_error=1e-2, min_cosine=0.999, min_top1=0.8),
    "int8": Thresholds(min_cosine=0.98, min_top1=0.6),
}


@dataclass
class ParityReport:
    """The verdict and the metrics (see the module docstring); ``passed`` is None when not run."""

    status: Status
    passed: bool | None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    cosine_similarity: float | None = None
    top1_agreement: float | None = None
    inputs: list[str] = field(default_factory=list)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    runtime: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def not_run(cls, reason: str) -> ParityReport:
        return cls(status="not run", passed=None, reason=reason)


def parity_inputs(input_shape: tuple[int, ...], n_random: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """``{"grace_hopper.jpg": photo, "random[0]": ..., ...}`` for an NCHW ``input_shape`` ``(1, 3, H, W)``."""
    _, _, h, w = input_shape
    if h != w:
        raise ValueError("parity inputs are square")
    inputs = {"grace_hopper.jpg": real_image(h)}
    for i, x in enumerate(random_inputs(input_shape, n_random, seed)):
        inputs[f"random[{i}]"] = x
    return inputs


def compare_outputs(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], thresholds: Thresholds
) -> ParityReport:
    """Metrics and verdict for paired outputs keyed by input name."""
    max_abs = max_rel = 0.0
    min_cos = 1.0
    agree = 0
    for name, ref in reference.items():
        ref = ref.astype(np.float64).reshape(-1)
        out = np.asarray(candidate[name], dtype=np.float64).reshape(-1)
        if out.shape != ref.shape:
            raise ValueError(f"output shape mismatch on {name}: {out.shape} vs reference {ref.shape}")
        diff = np.abs(out - ref)
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(diff.max() / max(float(np.abs(ref).max()), 1e-12)))
        denom = float(np.linalg.norm(out) * np.linalg.norm(ref))
        min_cos = min(min_cos, float(out @ ref / denom) if denom > 0 else float(np.array_equal(out, ref)))
        agree += int(np.argmax(out) == np.argmax(ref))
    top1 = agree / len(reference)
    failures = []
    t = thresholds
    if t.max_abs_error is not None and not max_abs <= t.max_abs_error:
        failures.append(f"max abs error {max_abs:.3g} > {t.max_abs_error:g}")
    if t.max_rel_error is not None and not max_rel <= t.max_rel_error:
        failures.append(f"max rel error {max_rel:.3g} > {t.max_rel_error:g}")
    if t.min_cosine is not None and not min_cos >= t.min_cosine:
        failures.append(f"cosine similarity {min_cos:.6f} < {t.min_cosine:g}")
    if t.min_top1 is not None and not top1 >= t.min_top1:
        failures.append(f"top-1 agreement {top1:.2f} < {t.min_top1:g}")
    return ParityReport(
        status="failed" if failures else "passed",
        passed=not failures,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        cosine_similarity=min_cos,
        top1_agreement=top1,
        inputs=list(reference),
        thresholds=asdict(thresholds),
        failures=failures,
    )


def torch_reference(module: nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of the PyTorch module in fp32 eval mode for each input."""
    module = module.eval()
    with torch.inference_mode():
        return {k: module(torch.from_numpy(v)).float().numpy() for k, v in inputs.items()}


def check_parity(
    module: nn.Module,
    run: Callable[[np.ndarray], np.ndarray],
    input_shape: tuple[int, ...],
    thresholds: Thresholds,
    runtime: str | None = None,
    to_runtime_input: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ParityReport:
    """Run the artifact (``run``: NCHW float32 → logits) and the PyTorch ``module``; compare.

    ``to_runtime_input`` converts an NCHW input for artifacts with another layout (e.g. NHWC TFLite).
    Raises :class:`~edgedeploy.errors.ArtifactError` when the artifact cannot run the input or its outputs have
    another shape than the model's (a different model).
    """
    inputs = parity_inputs(input_shape)
    reference = torch_reference(module, inputs)
    convert = to_runtime_input or (lambda a: a)
    try:
        candidate = {k: run(convert(v)) for k, v in inputs.items()}
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ArtifactError(
            f"the artifact cannot run the model's {list(input_shape)} input in {runtime or 'its runtime'} "
            f"(a different or mismatched model?): {first}"
        ) from e
    try:
        report = compare_outputs(reference, candidate, thresholds)
    except ValueError as e:
        raise ArtifactError(f"the artifact is not this model: {e}") from e
    report.runtime = runtime
    return report
