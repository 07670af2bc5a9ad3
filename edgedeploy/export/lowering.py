"""Export-time rewrites ("lowering") of training-time modules for a fixed input size and a target format.

The modules in :mod:`edgedeploy.nn` stay faithful to the papers and official code. Before export, :func:`lower`
deep-copies the model, records the input shape every submodule sees at the export resolution (forward hooks on
one batch-1 pass), and replaces each submodule whose type has a registered rewrite with the rewritten module,
e.g. GCC with its interpolated kernel and position embedding baked into constants
(:mod:`edgedeploy.nn.gcc`). :func:`verify_lowering` proves the rewrite changes nothing numerically.

A family file registers a rewrite with::

    @register_lowering(MyBlock)
    def lower_my_block(module: MyBlock, input_shape: tuple[int, ...], target: str) -> nn.Module: ...

``target`` is the export format, a name of :func:`edgedeploy.registry.format_names` (:data:`TARGETS`: "onnx",
"mnn", "tflite", "coreml", "ncnn" and any plug-in format); a rewrite may return ``module`` itself when it has
nothing to do for that target.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgedeploy import registry
from edgedeploy.errors import ConfigError

Rewrite = Callable[[nn.Module, tuple[int, ...], str], nn.Module]
LOWERINGS: dict[type[nn.Module], Rewrite] = {}


def __getattr__(name: str) -> tuple[str, ...]:
    """``TARGETS``: the registered formats, read from the registry on each access (plug-ins included)."""
    if name == "TARGETS":
        return tuple(registry.format_names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_lowering(module_type: type[nn.Module]) -> Callable[[Rewrite], Rewrite]:
    """Decorator registering an export-time rewrite for ``module_type`` (exact type match)."""

    def deco(fn: Rewrite) -> Rewrite:
        LOWERINGS[module_type] = fn
        return fn

    return deco


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


def lower(model: nn.Module, example: torch.Tensor, target: str = "onnx") -> tuple[nn.Module, list[str]]:
    """Return ``(lowered_copy, rewritten_module_names)``; ``model`` itself is not modified.

    ``example`` is a batch-1 NCHW float32 tensor at the export resolution. Modules whose rewrite returns a new
    module are replaced outermost-first (a rewritten parent's children are not visited again). ``target``: a
    registered format (:class:`ConfigError` otherwise).
    """
    if target not in registry.format_names():
        raise ConfigError(f"lowering target {target!r} is no format (known: {', '.join(registry.format_names())})")
    lowered = copy.deepcopy(model).eval()
    shapes = _record_input_shapes(lowered, example)
    rewritten: list[str] = []
    for name in sorted(shapes, key=lambda n: n.count(".")):
        if any(name.startswith(done + ".") for done in rewritten):
            continue
        mod = lowered.get_submodule(name)
        new = LOWERINGS[type(mod)](mod, shapes[name], target)
        if new is not mod:
            _set_submodule(lowered, name, new)
            rewritten.append(name)
    return lowered.eval(), rewritten


@dataclass
class LoweringCheck:
    """Largest differences between the original and the lowered module over the checked inputs."""

    max_abs_error: float
    max_rel_error: float
    inputs: int


def verify_lowering(
    original: nn.Module, lowered: nn.Module, example: torch.Tensor, n_random: int = 2, seed: int = 0
) -> LoweringCheck:
    """Run both modules on ``example`` and ``n_random`` seeded normal inputs of its shape; report the errors."""
    gen = torch.Generator().manual_seed(seed)
    inputs = [example] + [torch.randn(example.shape, generator=gen) for _ in range(n_random)]
    max_abs = max_rel = 0.0
    with torch.no_grad():
        for x in inputs:
            a = original(x)
            b = lowered(x)
            diff = (a - b).abs()
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / a.abs().clamp_min(1e-6)).max()))
    return LoweringCheck(max_abs, max_rel, len(inputs))
