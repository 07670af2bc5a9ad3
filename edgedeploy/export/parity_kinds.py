"""Parity gates that fit the output: the kind of an output (from its shape), its scale, and how far off it is.

A fixed absolute gate does not fit every output: 1e-3 is loose for logits in the tens and tight for a 480x480
sigmoid map whose fp32 reorderings alone drift by 1e-3. The gated figure is therefore the **scaled error**: max
|artifact − reference| ÷ the reference output's range (max − min; max |ref| when the output is constant), the
worst over the parity inputs. It is unit-free: 1e-3 means "off by 0.1 % of the output's span".

Output kinds (:func:`output_kind`, from the output's shape and the model's ``classifier`` hint):

* ``scores`` — class scores / logits / probabilities: ``(1, N)`` with N > 1 (unless the model is known not to
  be a classifier), or per-step scores ``(1, T, N)`` (e.g. a CTC text recogniser);
* ``dense`` — dense maps ``(1, C, H, W)`` with H·W > 1 (segmentation, detection heat maps, depth);
* ``embedding`` — everything else (feature vectors, pooled ``(1, C, 1, 1)`` features, boxes).

Default gates (:data:`DEFAULT_SCALED_GATES`, calibrated by ``benchmarks/parity_gates.py``, figures in
``benchmarks/results/parity_gates.md``): correct fp32 artifacts drift at most 2.1e-4 on scores (EMO-1M on MNN)
and 1.01e-3 on dense maps (PP-OCRv4 det on MNN); one weight tensor ×1.01 gives 4.2e-3 … 3.1e-2 (scores) and
2.4e-3 … 4.2e-2 (dense). Hence scores 1e-3 (≥ 4.8x above the drift, ≥ 4x below the smallest defect) and dense
2e-3 (2x above the drift, 1.2x below the smallest defect); embeddings take the scores gate (not calibrated yet).
fp16 gates are 2e-2 (fp16's 11-bit mantissa, ~5e-4 per op, accumulated over a network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

OutputKind = Literal["scores", "dense", "embedding"]

#: max scaled error (max abs ÷ output range) per precision and output kind; ``None`` entries are not gated
DEFAULT_SCALED_GATES: dict[str, dict[str, float]] = {
    "fp32": {"scores": 1e-3, "dense": 2e-3, "embedding": 1e-3},
    "fp16": {"scores": 2e-2, "dense": 2e-2, "embedding": 2e-2},
}


def output_kind(shape: Sequence[int], classifier: bool | None = None) -> OutputKind:
    """The kind of an output of ``shape`` (see the module docstring); ``classifier`` False never says scores."""
    dims = list(shape)
    if classifier is not False and dims and dims[0] == 1 and dims[-1] > 1 and len(dims) in (2, 3):
        return "scores"
    if len(dims) == 4 and dims[2] * dims[3] > 1:
        return "dense"
    return "embedding"


def output_scale(ref: np.ndarray) -> float:
    """The reference output's range (max − min) as float; max |ref| when constant; 1e-12 for all-zero / empty."""
    if ref.size == 0:
        return 1e-12
    span = float(ref.max() - ref.min())
    return max(span if span > 0 else float(np.abs(ref).max()), 1e-12)


def rms(ref: np.ndarray) -> float:
    """Root mean square of an output (0.0 when empty)."""
    return float(np.sqrt(np.mean(np.square(ref)))) if ref.size else 0.0


def how_far(ratio: float) -> str:
    """Wording for a metric that missed its gate by ``ratio`` (metric ÷ gate, or (1 − cos) ÷ (1 − gate))."""
    if ratio == float("inf"):
        return "the gate allows no error at all"
    if ratio <= 3:
        return f"{ratio:.2g}x the gate: a near miss, numerical drift rather than a different model"
    if ratio <= 30:
        return f"{ratio:.3g}x the gate: off, a precision problem (an op computed in lower precision or approximated)"
    return f"{ratio:.3g}x the gate: far off, the artifact computes something else (a wrong op, weight or layout)"
