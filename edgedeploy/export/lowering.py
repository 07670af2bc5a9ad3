"""Export-time rewrites ("lowering") of training-time modules for a fixed input size and a target format.

The modules in :mod:`edgedeploy.nn` stay faithful to the papers and official code, and a user's module is
taken as written. Before export, :func:`lower` deep-copies the model and then

1. **registered rewrites** (:mod:`edgedeploy.nn.rewrites`): records the input shape every submodule sees at the
   export resolution (forward hooks on one batch-1 pass) and replaces each submodule whose type has a
   registered rewrite, e.g. :class:`~edgedeploy.nn.GCCBlock` / :class:`~edgedeploy.nn.GCC` with their
   interpolated kernels and PEs baked into constants — in zoo models and in a user's network alike;
2. **generic graph passes** (:mod:`edgedeploy.export.generic`, torch.fx) on whatever is left, for every model:
   constant folding of parameter-and-shape-only computations (a user's own ``F.interpolate`` of a meta-kernel)
   and circular padding / ``torch.roll`` as slices + concat.

Every generic pass that changed a module is checked right there: the rewritten graph against the module it
replaces, on the arguments that module received at the export resolution and two random ones (``check`` of the
pass, scope ``module``); the pipeline then checks the whole lowered model against the original
(:func:`verify_lowering`). :func:`lowering_report` gives the record (the pipeline writes it into the manifest's
``lowering`` entry).

A layer file registers a rewrite with::

    from edgedeploy.nn.rewrites import register_lowering

    @register_lowering(MyBlock)
    def lower_my_block(module: MyBlock, input_shape: tuple[int, ...], target: str) -> nn.Module: ...

``target`` is the export format, a name of :func:`edgedeploy.registry.format_names` (:data:`TARGETS`: "onnx",
"mnn", "tflite", "coreml", "ncnn" and any plug-in format); a rewrite may return ``module`` itself when it has
nothing to do for that target. ``register_lowering`` and ``LOWERINGS`` are importable from here too
(they live in :mod:`edgedeploy.nn.rewrites`, so that ``edgedeploy.nn`` does not import ``edgedeploy.export``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from edgedeploy import registry
from edgedeploy.errors import ConfigError, ExportError
from edgedeploy.export import generic
from edgedeploy.nn.rewrites import LOWERINGS, Rewrite, register_lowering

__all__ = ["LOWERINGS", "LoweringCheck", "Rewrite", "lower", "lowering_report", "register_lowering",
           "verify_lowering"]  # fmt: skip


def __getattr__(name: str) -> tuple[str, ...]:
    """``TARGETS``: the registered formats, read from the registry on each access (plug-ins included)."""
    if name == "TARGETS":
        return tuple(registry.format_names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: a stage of the lowering must not change outputs by more than this (max abs, fp32)
STAGE_TOLERANCE = 1e-4
_REPORT_ATTR = "_edgedeploy_lowering"


def _record_input_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, mod in model.named_modules():
        if type(mod) in LOWERINGS:

            def hook(m: nn.Module, args: tuple, name: str = name) -> None:
                if args and isinstance(args[0], torch.Tensor):
                    shapes.setdefault(name, tuple(args[0].shape))

            handles.append(mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return shapes


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _registered(lowered: nn.Module, example: torch.Tensor, target: str) -> tuple[list[str], list[dict]]:
    shapes = _record_input_shapes(lowered, example)
    rewritten: list[str] = []
    records: list[dict] = []
    for name in sorted(shapes, key=lambda n: n.count(".")):
        if any(name.startswith(done + ".") for done in rewritten):
            continue
        mod = lowered.get_submodule(name)
        fn = LOWERINGS[type(mod)]
        new = fn(mod, shapes[name], target)
        if new is not mod:
            _set_submodule(lowered, name, new)
            rewritten.append(name)
            records.append(
                {"module": name, "was": type(mod).__name__, "now": type(new).__name__, "rewrite": fn.__name__,
                 "shape": list(shapes[name])}
            )  # fmt: skip
    return rewritten, records


def lower(model: nn.Module, example: torch.Tensor, target: str = "onnx") -> tuple[nn.Module, list[str]]:
    """Return ``(lowered_copy, rewritten_module_names)``; ``model`` itself is not modified.

    ``example`` is a batch-1 float32 tensor at the export resolution (NCHW for images). Registered rewrites are
    applied outermost-first (a rewritten parent's children are not visited again), then the generic passes of
    :mod:`edgedeploy.export.generic` on everything else (the registered export forms are left as they are).
    ``rewritten_module_names`` lists the modules replaced by registered rewrites, then those replaced by a generic
    pass (``"<model>"`` when the whole model was rewritten as one graph).
    :func:`lowering_report` on the returned module gives what each stage did and its check. Raises
    :class:`ExportError` when a generic pass changes the outputs (an edgedeploy bug); :class:`ConfigError` when
    ``target`` is no registered format.
    """
    if target not in registry.format_names():
        raise ConfigError(f"lowering target {target!r} is no format (known: {', '.join(registry.format_names())})")
    lowered = copy.deepcopy(model).eval()
    rewritten, registered = _registered(lowered, example, target)
    report: dict[str, Any] = {"registered": registered, "passes": [], "notes": []}
    keep = [lowered.get_submodule(name) for name in rewritten]  # registered export forms: not traced into
    from edgedeploy.export.fx_passes import PASSES
    from edgedeploy.export.fx_patterns import PATTERN_PASSES

    patterns = tuple((name, PATTERN_PASSES[name]) for name in registry.format_spec(target).graph_passes)
    lowered, results, checks = generic.run_passes(lowered, example, passes=PASSES + patterns, keep=keep)
    for result in results:
        entry: dict[str, Any] = {"pass": result.name, "rewrites": [r.to_dict() for r in result.records]}
        report["notes"] += result.notes
        if result.records:
            check = checks[result.name]
            entry["check"] = {"max_abs_error": check.max_abs_error, "inputs": check.inputs, "scope": "module"}
            if not check.max_abs_error <= STAGE_TOLERANCE:
                raise ExportError(
                    f"lowering pass {result.name} changed the outputs (max abs error {check.max_abs_error:.3g} > "
                    f"{STAGE_TOLERANCE:g}); this is a bug in edgedeploy (use --lowering none)"
                )
            rewritten += [u or "<model>" for u in result.replaced if (u or "<model>") not in rewritten]
        report["passes"].append(entry)
    lowered = lowered.eval()
    object.__setattr__(lowered, _REPORT_ATTR, report)
    return lowered, rewritten


def lowering_report(lowered: nn.Module) -> dict[str, Any]:
    """What :func:`lower` did to produce ``lowered``: ``registered`` (module, was, now, rewrite, shape),
    ``passes`` (per generic pass: ``rewrites`` — pass, module, node, was, now, shape — and ``check``), ``notes``
    (modules that could not be traced and were handled submodule by submodule). Empty for a module not made by
    :func:`lower`."""
    return copy.deepcopy(getattr(lowered, _REPORT_ATTR, {}))


@dataclass
class LoweringCheck:
    """Largest differences between the original and the lowered module over the checked inputs."""

    max_abs_error: float
    max_rel_error: float
    inputs: int


def _flat_outputs(out: Any) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def verify_lowering(
    original: nn.Module, lowered: nn.Module, example: torch.Tensor, n_random: int = 2, seed: int = 0
) -> LoweringCheck:
    """Run both modules on ``example`` and ``n_random`` seeded normal inputs of its shape; report the errors.

    Outputs may be tensors or any nesting of tuples / lists / dicts of tensors (compared leaf by leaf). Raises
    :class:`ExportError` when the two modules give differently structured or shaped outputs.
    """
    gen = torch.Generator().manual_seed(seed)
    inputs = [example] + [torch.randn(example.shape, generator=gen) for _ in range(n_random)]
    max_abs = max_rel = 0.0
    with torch.no_grad():
        for x in inputs:
            a_out, b_out = _flat_outputs(original(x)), _flat_outputs(lowered(x))
            if len(a_out) != len(b_out) or any(a.shape != b.shape for a, b in zip(a_out, b_out, strict=True)):
                raise ExportError("the lowered module's outputs differ in number or shape from the original's")
            for a, b in zip(a_out, b_out, strict=True):
                diff = (a.float() - b.float()).abs()
                if diff.numel() == 0:
                    continue
                max_abs = max(max_abs, float(diff.max()))
                max_rel = max(max_rel, float((diff / a.float().abs().clamp_min(1e-6)).max()))
    return LoweringCheck(max_abs, max_rel, len(inputs))
