"""Generic export-time graph passes, for every model (zoo or user-written): real graph rewrites with torch.fx.

Each pass traces a module with :func:`torch.fx.symbolic_trace` (standard ``torch.nn`` layers stay leaves), runs
the traced graph once on the arguments the module really receives at the export resolution (an
:class:`torch.fx.Interpreter`, so every node has its concrete value or shape), rewrites nodes, and replaces the
module by the rewritten :class:`torch.fx.GraphModule` only when something substantive changed. A module that cannot
be traced (data-dependent control flow, keyword arguments, called at several different shapes) is not rewritten
itself: its submodules are tried one by one, and a note says so.

Passes, in order (:data:`PASSES`):

``fold_constants``
    Every computation that depends only on parameters, buffers and static shapes (e.g. a GCC-style kernel or a
    position embedding made by ``F.interpolate`` of a learned meta-parameter to the feature size, EdgeFormer paper
    Sec. 3.1) is evaluated once at the export resolution and becomes a constant buffer; shape queries
    (``x.shape``, ``x.size()``, ``x.dim()``) become Python literals. The exported graph then has no Resize, and
    the conv a constant kernel ("kernel of unknown shape" otherwise, TOOLCHAIN_NOTES). Folds of view-only chains
    (``param.reshape(…)``) do not count as substantive: exporters fold those themselves.
``circular_to_slices``
    ``F.pad(mode="circular")``, ``nn.Conv{1,2,3}d(padding_mode="circular")``, ``nn.CircularPad{1,2,3}d`` and
    ``torch.roll`` / ``Tensor.roll`` with static shifts become slices + one concat
    (:func:`edgedeploy.nn.circular.circular_pad`, :func:`~edgedeploy.nn.circular.roll_by_slices`). A circular
    pad feeding a stride-1 convolution whose kernel spans the whole (unpadded) axis is turned into the
    EdgeFormer cat-then-conv ``conv(cat([x, x[:-1]]), roll(k, -left))``. CoreML cannot lower circular pad
    (pytorch/executorch#11703), TFLite converters lack it (alibaba/TinyNeuralNetwork#317), MNN's converter
    refuses ``Pad(mode="wrap")``.

Every record says which pass rewrote which module and node (see :class:`~edgedeploy.export.fx_graph.PassRecord`).
This module is the driver (:func:`run_passes`: scouting, per-module tracing, unit checks); the tracing machinery is
:mod:`edgedeploy.export.fx_graph`, the passes :mod:`edgedeploy.export.fx_passes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.fx.node import map_aggregate

from edgedeploy.export.fx_graph import (
    _PAD_FUNCS,
    _VIEW_NAMES,
    _VOLATILE_NAMES,
    PassResult,
    _Recorder,
    trace,
    trace_concrete,
)
from edgedeploy.export.fx_passes import (
    PASSES,
    Pass,
    _circular_pad_types,
    _drop_unused_constants,
)


def _is_torch_leaf(m: nn.Module) -> bool:
    return m.__module__.startswith("torch.nn") and not isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict))


def _needs_leaf_pass(m: nn.Module) -> bool:
    pad_types = _circular_pad_types()
    return (isinstance(m, nn.modules.conv._ConvNd) and m.padding_mode == "circular") or isinstance(m, pad_types)


def _capture_calls(root: nn.Module, args: tuple, names: list[str]) -> dict[str, list[tuple[tuple, dict]]]:
    calls: dict[str, list[tuple[tuple, dict]]] = {n: [] for n in names}
    handles = []

    def clone(v: Any) -> Any:
        return v.detach().clone() if isinstance(v, torch.Tensor) else v

    for name in names:
        mod = root.get_submodule(name) if name else root

        def hook(m: nn.Module, a: tuple, kw: dict, name: str = name) -> None:
            calls[name].append((tuple(map_aggregate(a, clone)), dict(kw)))

        handles.append(mod.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            root(*args)
    finally:
        for h in handles:
            h.remove()
    return calls


def _signature(call: tuple[tuple, dict]) -> Any:
    def sig(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return ("tensor", tuple(v.shape), v.dtype)
        return v

    return map_aggregate(call[0], sig), tuple(sorted(call[1]))


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


@dataclass
class UnitCheck:
    """Largest difference between a module and its rewritten graph, on its recorded arguments + random ones."""

    max_abs_error: float = 0.0
    inputs: int = 0


def _unit_check(original: nn.Module, gm: fx.GraphModule, args: tuple, n_random: int = 2, seed: int = 0) -> UnitCheck:
    gen = torch.Generator().manual_seed(seed)

    def randomise(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return torch.randn(v.shape, generator=gen, dtype=v.dtype)
        return v

    worst = 0.0
    variants = [args] + [tuple(map_aggregate(args, randomise)) for _ in range(n_random)]
    with torch.no_grad():
        for a in variants:
            ref = [t for t in torch.utils._pytree.tree_leaves(original(*a)) if isinstance(t, torch.Tensor)]
            got = [t for t in torch.utils._pytree.tree_leaves(gm(*a)) if isinstance(t, torch.Tensor)]
            if len(ref) != len(got) or any(r.shape != g.shape for r, g in zip(ref, got, strict=True)):
                return UnitCheck(float("inf"), len(variants))
            for r, g in zip(ref, got, strict=True):
                if r.numel():
                    worst = max(worst, float((r.float() - g.float()).abs().max()))
    return UnitCheck(worst, len(variants))


def _finish(gm: fx.GraphModule) -> None:
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    _drop_unused_constants(gm)
    gm.graph.lint()
    gm.recompile()


class _Scout(torch.overrides.TorchFunctionMode):
    """One eager forward that notes whether any generic pass could have work: a circular pad, a roll, or a
    non-view op computing a tensor from parameters / buffers / constants only (what ``fold_constants`` folds)."""

    def __init__(self, static: list[torch.Tensor], patterns: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.patterns = patterns
        self.keep = list(static)  # holds references so ids stay unique during the forward
        self.static = {id(t) for t in static}
        self.found: list[str] = []
        self.inside_leaf = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.inside_leaf:
            return out
        name = getattr(func, "__name__", str(func))
        if func in _PAD_FUNCS and (args[2] if len(args) > 2 else kwargs.get("mode")) == "circular":
            self.found.append("circular pad")
        elif name == "roll":
            self.found.append("roll")
        if self.patterns:
            self.found += [hint for pass_name, hint in _pattern_hints(name, args, out) if pass_name in self.patterns]
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outs = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        if outs and name not in _VOLATILE_NAMES and all(id(t) in self.static for t in tensors):
            self.keep += outs
            self.static.update(id(t) for t in outs)
            if name.strip("_") not in _VIEW_NAMES:
                self.found.append(f"{name} of constants")
        return out


def _pattern_hints(name: str, args: Any, out: Any) -> list[tuple[str, str]]:
    """``(pattern pass, what)`` for what a pattern pass (:mod:`edgedeploy.export.fx_patterns`) could rewrite in one
    op call."""
    hints = []
    if any(isinstance(t, torch.Tensor) and t.dim() > 4 for t in torch.utils._pytree.tree_leaves(out)):
        hints.append(("high_rank_to_4d", "tensor of rank > 4"))
    if name == "__getitem__" and len(args) > 1:
        idx = args[1] if isinstance(args[1], tuple) else (args[1],)
        if any(isinstance(s, slice) and s.step not in (None, 1) for s in idx):
            hints.append(("strided_slice", "stepped slice"))
    if name in ("chunk", "split") and isinstance(out, (tuple, list)) and len({tuple(t.shape) for t in out}) > 1:
        hints.append(("uneven_split", "uneven split"))
    if name in ("flatten", "reshape", "view") and args and isinstance(args[0], torch.Tensor) and args[0].dim() == 3:
        if args[0].shape[0] == 1 and isinstance(out, torch.Tensor) and out.dim() == 2:
            hints.append(("batch_flatten_norm", "(1, N, C) flattened to (N, C)"))
    if name in ("expand", "expand_as"):
        hints.append(("broadcast_expand", "expand"))
    return hints


def _tensor_attributes(root: nn.Module) -> list[torch.Tensor]:
    found = [*root.parameters(), *root.buffers()]
    for m in root.modules():
        found += [v for v in vars(m).values() if isinstance(v, torch.Tensor)]
    return found


def scout(
    root: nn.Module,
    example: torch.Tensor,
    leaves: frozenset[int] = frozenset(),
    patterns: frozenset[str] = frozenset(),
) -> list[str]:
    """What in one forward of ``root`` on ``example`` a generic pass could rewrite (empty: nothing to do).

    Computations inside the modules in ``leaves`` (ids) are not looked at. ``patterns``: also what these pattern
    passes of :mod:`edgedeploy.export.fx_patterns` (names) rewrite (a tensor of rank > 4, a stepped slice, an uneven
    chunk / split, a ``(1, N, C)`` tensor flattened to ``(N, C)``, an expand).
    """
    mode = _Scout(_tensor_attributes(root), patterns)
    handles = []

    def enter(*_: Any) -> None:
        mode.inside_leaf += 1

    def leave(*_: Any) -> None:
        mode.inside_leaf -= 1

    for m in root.modules():
        if id(m) in leaves:
            handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    try:
        with torch.no_grad(), mode:
            root(example)
    finally:
        for h in handles:
            h.remove()
    return sorted(set(mode.found))


def _trace_unit(mod: nn.Module, args: tuple, leaves: frozenset[int], concrete: bool) -> fx.GraphModule:
    """Plain fx trace; with ``concrete`` (pattern passes, static shapes anyway), a module whose ``forward`` branches
    on its input's shape is traced again with concrete shapes (:func:`~edgedeploy.export.fx_graph.trace_concrete`)."""
    try:
        return trace(mod, len(args), leaves)
    except Exception:
        if not concrete:
            raise
        return trace_concrete(mod, args, leaves)


def run_passes(
    root: nn.Module,
    example: torch.Tensor,
    passes: Sequence[tuple[str, Pass]] = PASSES,
    keep: Sequence[nn.Module] = (),
) -> tuple[nn.Module, list[PassResult], dict[str, UnitCheck]]:
    """Apply ``passes`` (in order) to ``root``; submodules are replaced in place, the (new) root is returned.

    Modules in ``keep`` (the outputs of registered rewrites) are left exactly as they are: leaves of every trace.
    If one eager forward (:func:`scout`) sees no circular pad, roll or constant computation, nothing is traced.

    Tries the whole model first; a module that cannot be traced or interpreted is replaced by its children.
    Each unit is traced and interpreted once; after every pass that changed it, the unit's graph is checked
    against the original unit on its recorded arguments and two random ones (``checks[pass]``: the worst).
    """
    results = [PassResult(name) for name, _ in passes]
    checks: dict[str, UnitCheck] = {}
    notes: list[str] = results[0].notes
    leaves = frozenset(id(m) for m in keep)
    patterns = frozenset(name for name, fn in passes if fn not in dict(PASSES).values())
    if not scout(root, example, leaves, patterns):  # one eager forward: nothing any of the passes rewrites
        return root, results, checks
    pending = [""]
    depth = 0
    while pending and depth < 64:
        depth += 1
        calls = _capture_calls(root, (example,), pending)
        nxt: list[str] = []
        for unit in pending:
            mod = root.get_submodule(unit) if unit else root
            children = [f"{unit}.{c}" if unit else c for c, _ in mod.named_children()]
            seen = calls.get(unit, [])
            if not seen:
                nxt += children
                continue
            if id(mod) in leaves or (_is_torch_leaf(mod) and not _needs_leaf_pass(mod)):
                continue
            reason = None
            if any(_signature(c) != _signature(seen[0]) for c in seen[1:]):
                reason = "is called with inputs of different shapes"
            elif seen[0][1]:
                reason = "is called with keyword arguments"
            else:
                try:
                    gm = _trace_unit(mod, seen[0][0], leaves, bool(patterns))
                    rec = _Recorder(gm)
                    with torch.no_grad():
                        rec.run(*seen[0][0])
                except Exception as e:  # noqa: BLE001 - fx raises many types; the fallback is the point
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                    reason = f"cannot be traced ({type(e).__name__}: {first})"
            if reason is not None:
                tail = "its submodules were tried one by one" if children else "left as is"
                notes.append(f"{unit or 'model'} ({type(mod).__name__}) {reason}; {tail}")
                nxt += children
                continue
            changed = False
            for (name, fn), result in zip(passes, results, strict=True):
                records, pass_notes = fn(gm, rec, unit)
                result.notes += pass_notes
                if not records:
                    continue
                _finish(gm)
                gm.train(mod.training)
                check = _unit_check(mod, gm, seen[0][0])
                prev = checks.get(name, UnitCheck())
                checks[name] = UnitCheck(max(prev.max_abs_error, check.max_abs_error), prev.inputs + check.inputs)
                result.records += records
                result.replaced.append(unit)
                changed = True
            if changed:
                if unit:
                    _set_submodule(root, unit, gm)
                else:
                    root = gm
        pending = nxt
    return root, results, checks
