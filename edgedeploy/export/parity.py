"""Parity: does an artifact compute what the PyTorch fp32 model computes?

Inputs: the embedded real photo (preprocessed with the model's mean / std, ImageNet's by default,
:mod:`edgedeploy.data`) and 4 seeded standard-normal tensors, all ``(1, C, H, W)`` float32 NCHW (H ≠ W allowed).
The reference is the original (un-lowered) PyTorch module in fp32 (or, for an ONNX file brought by the user,
onnxruntime running that file).

Metrics over all inputs and every output (a model may return one tensor, or a tuple / list / dict of them; each
output is compared on its own and the report gives each one and the worst):

* ``max_abs_error`` — max |artifact − reference| over every element;
* ``max_rel_error`` — normwise: per input max|artifact − reference| / max|reference|, the largest over inputs;
* ``cosine_similarity`` — the smallest per-input cosine similarity of the flattened outputs;
* ``top1_agreement`` — fraction of inputs whose arg-max class matches, for outputs that are class scores (2-D
  ``(1, N)``, or as the model card says); "n/a" and not gated otherwise (dense maps, features, boxes).

* ``scaled_error`` — max abs error ÷ the reference output's range, per output, gated per output kind (scores,
  dense maps, embeddings; :mod:`edgedeploy.export.parity_kinds`), so one gate fits logits and sigmoid maps alike.

Default gates per precision (:data:`DEFAULT_THRESHOLDS`, overridable on the command line): fp32 — scaled error
≤ 1e-3 (scores, embeddings) / 2e-3 (dense maps), cosine ≥ 0.9999, top-1 agreement 1.0 (``--atol`` replaces the
scaled gates by one max abs error gate); fp16 — max rel error ≤ 1e-2,
cosine ≥ 0.999, top-1 ≥ 0.8; int8 — cosine ≥ 0.98 and top-1 ≥ 0.6 only
(absolute error is not meaningful after full-integer quantization).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from edgedeploy.data import model_input, random_inputs
from edgedeploy.errors import ArtifactError
from edgedeploy.export.parity_kinds import DEFAULT_SCALED_GATES, how_far, output_kind, output_scale

Status = Literal["passed", "failed", "not run"]


if TYPE_CHECKING:
    from edgedeploy.options import ExportOptions


@dataclass
class Thresholds:
    """Gates of a parity check; ``None`` disables a gate. ``max_scaled_error`` maps an output kind (``scores`` /
    ``dense`` / ``embedding``) to its max of max abs error ÷ output range; a kind not in it is not gated."""

    max_abs_error: float | None = None
    max_rel_error: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None
    max_scaled_error: dict[str, float] | None = None


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(min_cosine=0.9999, min_top1=1.0, max_scaled_error=DEFAULT_SCALED_GATES["fp32"]),
    "fp16": Thresholds(max_rel_error=1e-2, min_cosine=0.999, min_top1=0.8),
    "int8": Thresholds(min_cosine=0.98, min_top1=0.6),
}


@dataclass
class ParityReport:
    """The verdict and the metrics (see the module docstring); ``passed`` is None when not run.

    The top-level metrics are the worst over every output; ``outputs`` has them per output (name, shape and the
    same four metrics). ``top1_agreement`` is None ("n/a", not gated) when no output is class scores.
    ``reference`` says what the artifact was compared with (PyTorch fp32, or onnxruntime on a source file).
    """

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
    outputs: list[dict[str, Any]] = field(default_factory=list)
    reference: str | None = None
    scaled_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def not_run(cls, reason: str) -> ParityReport:
        return cls(status="not run", passed=None, reason=reason)

    @property
    def top1_text(self) -> str:
        """``"1.00"`` or ``"n/a"`` (not class scores)."""
        return "n/a" if self.top1_agreement is None else f"{self.top1_agreement:.2f}"

    def summary(self) -> str:
        """One line: the metrics, the inputs and the runtime."""
        text = (
            f"max abs {self.max_abs_error:.2e}, max rel {self.max_rel_error:.2e}, "
            + (f"scaled {self.scaled_error:.2e}, " if self.scaled_error is not None else "")
            + f"cosine "
            f"{self.cosine_similarity:.6f}, top-1 {self.top1_text} ({len(self.inputs)} inputs, runtime {self.runtime}"
        )
        if len(self.outputs) > 1:
            text += f", {len(self.outputs)} outputs"
        return text + ")"


def parity_inputs(
    input_shape: tuple[int, ...],
    n_random: int = 4,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """``{"grace_hopper.jpg": photo, "random[0]": ..., ...}`` for an NCHW ``input_shape`` ``(1, C, H, W)``.

    The photo is preprocessed with ``mean`` / ``std`` (ImageNet's by default); H and W may differ.
    """
    inputs = {"grace_hopper.jpg": model_input(input_shape, mean, std)}
    for i, x in enumerate(random_inputs(input_shape, n_random, seed)):
        inputs[f"random[{i}]"] = x
    return inputs


Outputs = np.ndarray | Sequence[np.ndarray]


def _as_list(out: Outputs) -> list[np.ndarray]:
    if isinstance(out, np.ndarray):
        return [out]
    return [np.asarray(o) for o in out]


def is_class_scores(shape: Sequence[int]) -> bool:
    """Whether an output of ``shape`` looks like class scores: 2-D ``(1, N)`` with N > 1."""
    return len(shape) == 2 and shape[0] == 1 and shape[1] > 1


def _ratio(value: float, gate: float) -> float:
    """How many times ``value`` is its ``gate`` (inf for a zero gate)."""
    return value / gate if gate > 0 else float("inf")


def compare_outputs(
    reference: dict[str, Outputs],
    candidate: dict[str, Outputs],
    thresholds: Thresholds,
    classifier: bool | None = None,
    output_names: Sequence[str] | None = None,
) -> ParityReport:
    """Metrics and verdict for paired outputs keyed by input name (each one array or a list, one per output).

    ``classifier``: True — top-1 agreement on every 2-D output; False — not class scores, top-1 "n/a";
    None — decide from the shapes (:func:`is_class_scores`). Raises ``ValueError`` on a shape or count mismatch.
    """
    first = _as_list(next(iter(reference.values())))
    n_out = len(first)
    names = list(output_names or [])[:n_out]
    names += [f"output[{i}]" for i in range(len(names), n_out)]
    top1_on = [
        (is_class_scores(o.shape) if classifier is None else bool(classifier) and o.ndim == 2 and o.shape[-1] > 1)
        for o in first
    ]
    per = [{"name": names[i], "shape": list(first[i].shape), "max_abs_error": 0.0, "max_rel_error": 0.0,
            "cosine_similarity": 1.0, "agree": 0, "kind": output_kind(first[i].shape, classifier),
            "scaled_error": 0.0, "error_over_rms": 0.0, "non_finite": 0} for i in range(n_out)]  # fmt: skip
    spans = [0.0] * n_out  # the output's range, the largest over the inputs
    sq = [(0.0, 0)] * n_out  # sum of squares and count of the reference, for the RMS
    for name, refs in reference.items():
        refs_l, outs_l = _as_list(refs), _as_list(candidate[name])
        if len(outs_l) != len(refs_l):
            raise ValueError(f"{len(outs_l)} outputs on {name}, the reference has {len(refs_l)}")
        for i, (ref, out) in enumerate(zip(refs_l, outs_l, strict=True)):
            ref = ref.astype(np.float64).reshape(-1)
            out = np.asarray(out, dtype=np.float64).reshape(-1)
            if out.shape != ref.shape:
                raise ValueError(f"output {names[i]} shape mismatch on {name}: {out.shape} vs reference {ref.shape}")
            row = per[i]
            finite = np.isfinite(out)
            if not finite.all():  # NaN / inf: counted and reported; the metrics below are over the finite values
                row["non_finite"] += int(out.size - finite.sum())
                out = np.where(finite, out, 0.0)
            diff = np.abs(out - ref)
            row["max_abs_error"] = max(row["max_abs_error"], float(diff.max()) if diff.size else 0.0)
            scale = max(float(np.abs(ref).max()) if ref.size else 0.0, 1e-12)
            row["max_rel_error"] = max(row["max_rel_error"], (float(diff.max()) if diff.size else 0.0) / scale)
            spans[i] = max(spans[i], output_scale(ref))
            sq[i] = (sq[i][0] + float(np.square(ref).sum()), sq[i][1] + ref.size)
            denom = float(np.linalg.norm(out) * np.linalg.norm(ref))
            cos = float(out @ ref / denom) if denom > 0 else float(np.array_equal(out, ref))
            row["cosine_similarity"] = min(row["cosine_similarity"], cos)
            if top1_on[i]:
                row["agree"] += int(np.argmax(out) == np.argmax(ref))
    for i, row in enumerate(per):
        # scaled by the output's span over all inputs: one near-constant map (a detector on noise) is not a scale
        row["scaled_error"] = row["max_abs_error"] / spans[i] if spans[i] > 0 else 0.0
        root = float(np.sqrt(sq[i][0] / sq[i][1])) if sq[i][1] else 0.0
        row["error_over_rms"] = row["max_abs_error"] / max(root, 1e-12)
        agree = row.pop("agree")
        row["top1_agreement"] = agree / len(reference) if top1_on[i] else None
    max_abs = max(r["max_abs_error"] for r in per)
    max_rel = max(r["max_rel_error"] for r in per)
    min_cos = min(r["cosine_similarity"] for r in per)
    top1s = [r["top1_agreement"] for r in per if r["top1_agreement"] is not None]
    top1 = min(top1s) if top1s else None
    failures = []
    for row in per:  # whatever the gates: a NaN or inf in an artifact's output is never within tolerance
        if row["non_finite"]:
            total = int(np.prod(row["shape"])) * len(reference)
            failures.append(f"{row['name']}: {row['non_finite']} of {total} values are NaN or inf (metrics below are "
                            "over the finite ones; the artifact computes something else)")  # fmt: skip
    t = thresholds
    if t.max_abs_error is not None and not max_abs <= t.max_abs_error:
        far = how_far(_ratio(max_abs, t.max_abs_error))
        failures.append(f"max abs error {max_abs:.3g} > {t.max_abs_error:g} ({far})")
    if t.max_rel_error is not None and not max_rel <= t.max_rel_error:
        far = how_far(_ratio(max_rel, t.max_rel_error))
        failures.append(f"max rel error {max_rel:.3g} > {t.max_rel_error:g} ({far})")
    for row in per:
        gate = (t.max_scaled_error or {}).get(row["kind"])
        if gate is not None and not row["scaled_error"] <= gate:
            far = how_far(_ratio(row["scaled_error"], gate))
            failures.append(
                f"{row['name']} ({row['kind']}): max abs error {row['max_abs_error']:.3g} is "
                f"{row['scaled_error']:.3g} of the output's range > {gate:g} ({far})"
            )
    if t.min_cosine is not None and not min_cos >= t.min_cosine:
        ratio = _ratio(1 - min_cos, 1 - t.min_cosine)
        failures.append(f"cosine similarity {min_cos:.6f} < {t.min_cosine:g} ({how_far(ratio)})")
    if t.min_top1 is not None and top1 is not None and not top1 >= t.min_top1:
        failures.append(f"top-1 agreement {top1:.2f} < {t.min_top1:g}")
    if n_out > 1 and failures:
        worst = max(per, key=lambda r: (r["scaled_error"], -r["cosine_similarity"]))
        failures.append(f"worst output: {worst['name']}")
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
        outputs=per,
        scaled_error=max(r["scaled_error"] for r in per),
    )


def flatten_outputs(out: Any) -> list[torch.Tensor]:
    """A module's output as a flat list of tensors: a tensor, or nested tuples / lists / dicts (values in order)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in flatten_outputs(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in flatten_outputs(v)]
    if hasattr(out, "to_tuple"):  # e.g. transformers' ModelOutput
        return flatten_outputs(out.to_tuple())
    raise TypeError(f"model output of type {type(out).__name__} is not a tensor, tuple, list or dict of tensors")


def torch_reference(module: nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Outputs of the PyTorch module in fp32 eval mode for each input (one array per output, flattened)."""
    module = module.eval()
    with torch.inference_mode():
        return {k: [t.float().numpy() for t in flatten_outputs(module(torch.from_numpy(v)))] for k, v in inputs.items()}


Reference = nn.Module | Callable[[np.ndarray], Outputs]


@dataclass(frozen=True)
class ParitySetup:
    """How a parity check feeds and judges: ``mean`` / ``std`` preprocess the photo (``None``: ImageNet's),
    ``classifier`` gates top-1 (True / by the output's shape: None / never: False; :func:`compare_outputs`),
    ``output_names`` label the outputs, ``reference`` names what the artifact is compared with."""

    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    classifier: bool | None = None
    output_names: Sequence[str] | None = None
    reference: str = "pytorch fp32"


def check_parity(
    module: Reference,
    run: Callable[[np.ndarray], Outputs],
    input_shape: tuple[int, ...],
    thresholds: Thresholds,
    runtime: str | None = None,
    to_runtime_input: Callable[[np.ndarray], np.ndarray] | None = None,
    setup: ParitySetup | None = None,
) -> ParityReport:
    """Run the artifact (``run``: NCHW float32 → one output or a list) and the reference; compare.

    ``module`` is the PyTorch module, or any callable NCHW float32 → outputs (e.g. onnxruntime on a source ONNX
    file). ``to_runtime_input`` converts an NCHW input for artifacts with another layout (e.g. NHWC TFLite).
    ``setup``: preprocessing, top-1 gating, output names (:class:`ParitySetup`). Raises
    :class:`~edgedeploy.errors.ArtifactError` when the artifact cannot run the input or its outputs have another
    shape than the model's (a different model).
    """
    setup = setup or ParitySetup()
    mean, std, classifier, output_names, reference = (
        setup.mean, setup.std, setup.classifier, setup.output_names, setup.reference
    )  # fmt: skip
    inputs = parity_inputs(input_shape, mean=mean, std=std)
    if isinstance(module, nn.Module):
        ref = torch_reference(module, inputs)
    else:
        ref = {k: _as_list(module(v)) for k, v in inputs.items()}
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
        report = compare_outputs(ref, candidate, thresholds, classifier=classifier, output_names=output_names)
    except ValueError as e:
        raise ArtifactError(f"the artifact is not this model: {e}") from e
    report.runtime = runtime
    report.reference = reference
    return report


def gates_for(opts: ExportOptions) -> Thresholds:
    """The parity thresholds of an export request: the precision's defaults, then ``opts.thresholds`` (a
    :class:`Thresholds` or a dict of its fields), then the single overrides ``atol`` / ``min_cosine`` /
    ``min_top1``. Raises :class:`~edgedeploy.errors.ConfigError` for an unknown precision or a bad thresholds value."""
    from dataclasses import replace

    from edgedeploy.errors import ConfigError

    if opts.precision not in DEFAULT_THRESHOLDS:
        raise ConfigError(f"unknown precision {opts.precision!r} (known: {', '.join(DEFAULT_THRESHOLDS)})")
    t = DEFAULT_THRESHOLDS[opts.precision]
    if isinstance(opts.thresholds, Thresholds):
        t = opts.thresholds
    elif isinstance(opts.thresholds, dict):
        t = replace(t, **opts.thresholds)
    elif opts.thresholds is not None:
        raise ConfigError(f"thresholds must be a Thresholds or a dict (got {type(opts.thresholds).__name__})")
    for name, value in (("max_abs_error", opts.atol), ("min_cosine", opts.min_cosine), ("min_top1", opts.min_top1)):
        if value is not None:
            t = replace(t, **{name: value})
    if opts.atol is not None:  # the user's absolute gate replaces the scaled ones
        t = replace(t, max_scaled_error=None)
    return t
