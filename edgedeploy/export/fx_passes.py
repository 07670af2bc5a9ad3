"""The generic passes themselves (:data:`PASSES`): ``fold_constants`` and ``circular_to_slices``, each a rewrite of
a traced module's torch.fx graph (see :mod:`edgedeploy.export.generic` for what each does and the driver).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.node import map_aggregate

from edgedeploy.export.fx_graph import (
    _INPUT,
    _PAD_FUNCS,
    _STATIC,
    _VIEW_NAMES,
    PassRecord,
    _is_mutating,
    _literal,
    _Recorder,
    _static_ancestry,
    _substitute,
)
from edgedeploy.nn.circular import circular_pad, roll_by_slices


def fold_constants(gm: fx.GraphModule, rec: _Recorder, unit: str) -> tuple[list[PassRecord], list[str]]:
    """Fold the static frontier of ``gm`` (see the module docstring). Returns (substantive records, notes)."""
    records: list[PassRecord] = []
    dep = rec.dep
    mutated = [n for n in gm.graph.nodes if _is_mutating(n, gm) and n.args and dep.get(n.args[0]) == _STATIC]
    if mutated:
        return [], [f"{unit or 'model'}: constants not folded: {mutated[0].name} mutates a constant in place"]
    frontier = [
        n for n in gm.graph.nodes
        if dep.get(n) == _STATIC and n.op not in ("get_attr", "placeholder", "output")
        and any(dep.get(u) == _INPUT or u.op == "output" for u in n.users)
    ]  # fmt: skip
    for i, n in enumerate(frontier):
        value = rec.values[n]
        if isinstance(value, torch.Tensor):
            ops, attrs = _static_ancestry(n, dep)
            substantive = bool(ops - _VIEW_NAMES)
            buf = f"_folded_{i}_{n.name}"
            gm.register_buffer(buf, value.contiguous())
            with gm.graph.inserting_before(n):
                const = gm.graph.get_attr(buf)
            n.replace_all_uses_with(const)
            rec.dep[const], rec.values[const], rec.shapes[const] = _STATIC, value, tuple(value.shape)
            if substantive:
                was = f"{'+'.join(sorted(ops))} of {', '.join(attrs) or 'static shapes'}"
                records.append(PassRecord("fold_constants", unit, n.name, was, f"constant {buf}", list(value.shape)))
        else:
            ok, lit = _literal(value)
            if ok:
                for u in list(n.users):
                    if dep.get(u) == _INPUT or u.op == "output":
                        _substitute(u, n, lit)
    return records, []


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _value(a: Any, rec: _Recorder) -> tuple[bool, Any]:
    """Static value of an argument (a node that is static, or a literal)."""
    if isinstance(a, fx.Node):
        if rec.dep.get(a) != _STATIC:
            return False, None
        return True, rec.values[a]
    out = map_aggregate(a, lambda v: rec.values[v] if isinstance(v, fx.Node) and v in rec.values else v)
    leftover: list[fx.Node] = []
    map_aggregate(out, lambda v: leftover.append(v) if isinstance(v, fx.Node) else v)
    return (not leftover), out


def _conv_spans(
    conv_weight: torch.Tensor, pad: Sequence[int], in_shape: tuple[int, ...], stride: Any, dilation: Any
) -> list[tuple[int, int, int]]:
    """Axes (dim, left, size) where a circular pad + conv is a full-circle conv (kernel length == feature length)."""
    spatial = len(in_shape) - 2
    strides = (stride,) * spatial if isinstance(stride, int) else tuple(stride)
    dilations = (dilation,) * spatial if isinstance(dilation, int) else tuple(dilation)
    spans = []
    for i in range(len(pad) // 2):
        dim = len(in_shape) - 1 - i
        left, right = int(pad[2 * i]), int(pad[2 * i + 1])
        if left == right == 0:
            continue
        n = in_shape[dim]
        s, d = strides[dim - 2], dilations[dim - 2]
        if conv_weight.shape[dim] != n or left + right != n - 1 or s != 1 or d != 1:
            return []
        spans.append((dim, left, n))
    return spans


def _canonical_pad(pad: Sequence[int], spans: list[tuple[int, int, int]], rank: int) -> list[int]:
    out = [int(p) for p in pad]
    for dim, _left, n in spans:
        i = rank - 1 - dim
        out[2 * i], out[2 * i + 1] = 0, n - 1
    return out


def _roll_weight(w: torch.Tensor, spans: list[tuple[int, int, int]]) -> torch.Tensor:
    for dim, left, _n in spans:
        w = torch.roll(w, shifts=-left, dims=dim)
    return w.contiguous()


def _circular_pad_types() -> tuple[type[nn.Module], ...]:
    return tuple(t for t in (getattr(nn, f"CircularPad{k}d", None) for k in (1, 2, 3)) if t is not None)


def _rolled_text(spans: list[tuple[int, int, int]]) -> str:
    rolls = [f"dim {d} by {-left}" for d, left, _n in spans if left]
    return f"; kernel rolled {', '.join(rolls)}" if rolls else ""


def _drop_unused_constants(gm: fx.GraphModule) -> None:
    """Remove the root's ``_folded_*`` / ``_rolled_*`` buffers no get_attr node reads any more."""
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    for name in [b for b in gm._buffers if b.startswith(("_folded_", "_rolled_")) and b not in used]:
        del gm._buffers[name]


def _pad_text(pad: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(p)) for p in pad) + ")"


def _replace(n: fx.Node, new: fx.Node, rec: _Recorder) -> None:
    """Replace ``n`` by ``new`` everywhere and give ``new`` ``n``'s recorded dependence and shape."""
    n.replace_all_uses_with(new)
    rec.dep[new] = rec.dep.get(n, _INPUT)
    if n in rec.shapes:
        rec.shapes[new] = rec.shapes[n]
    n.graph.erase_node(n)


def circular_to_slices(gm: fx.GraphModule, rec: _Recorder, unit: str) -> tuple[list[PassRecord], list[str]]:
    """Rewrite circular pads, circular convs and static rolls of ``gm`` as slices + concat."""
    records: list[PassRecord] = []
    notes: list[str] = []
    graph = gm.graph
    conv_funcs = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
    for n in list(graph.nodes):
        where = f"{unit or 'model'}:{n.name}"
        if n.op == "call_function" and n.target in _PAD_FUNCS and _arg(n, 2, "mode", "constant") == "circular":
            x = n.args[0]
            ok, pad = _value(_arg(n, 1, "pad"), rec)
            if not ok or x not in rec.shapes:
                notes.append(f"{where}: circular pad with data-dependent padding left as is")
                continue
            in_shape = rec.shapes[x]
            if any(int(p) < 0 for p in pad):
                notes.append(f"{where}: circular pad with negative padding {_pad_text(pad)} left as is")
                continue
            new_pad, form = list(pad), "slice+concat"
            users = list(n.users)
            if len(users) == 1 and users[0].op == "call_function" and users[0].target in conv_funcs:
                conv = users[0]
                w_node = _arg(conv, 1, "weight")
                if isinstance(w_node, fx.Node) and w_node.op == "get_attr" and len(w_node.users) == 1:
                    w = rec.values[w_node]
                    spans = _conv_spans(w, pad, in_shape, _arg(conv, 3, "stride", 1), _arg(conv, 5, "dilation", 1))
                    padding_arg = _arg(conv, 4, "padding", 0)
                    zero = (0, "valid", (0,) * (len(in_shape) - 2), [0] * (len(in_shape) - 2))
                    if spans and padding_arg in zero:
                        new_pad = _canonical_pad(pad, spans, len(in_shape))
                        buf = f"_rolled_{w_node.name}"
                        gm.register_buffer(buf, _roll_weight(w, spans))
                        with graph.inserting_before(conv):
                            w_new = graph.get_attr(buf)
                        conv.replace_input_with(w_node, w_new)
                        form = "cat-then-conv (kernel spans the feature)" + _rolled_text(spans)
            with graph.inserting_before(n):
                new = graph.call_function(circular_pad, (x, tuple(new_pad)))
            _replace(n, new, rec)
            was = f"F.pad(circular, {_pad_text(pad)})"
            records.append(PassRecord("circular_to_slices", unit, n.name, was, form, list(in_shape)))
        elif (n.op == "call_function" and n.target is torch.roll) or (n.op == "call_method" and n.target == "roll"):
            x = n.args[0]
            ok_s, shifts = _value(_arg(n, 1, "shifts"), rec)
            ok_d, dims = _value(_arg(n, 2, "dims"), rec)
            if not (ok_s and ok_d) or x not in rec.shapes:
                notes.append(f"{where}: roll with data-dependent shifts left as is")
                continue
            if dims is None or dims == ():
                notes.append(f"{where}: roll without dims (flattened roll) left as is")
                continue
            shifts_t = (shifts,) if isinstance(shifts, int) else tuple(shifts)
            dims_t = (dims,) if isinstance(dims, int) else tuple(dims)
            in_shape = rec.shapes[x]
            norm = tuple(int(s) % in_shape[d] for s, d in zip(shifts_t, dims_t, strict=True))
            dims_n = tuple(int(d) % len(in_shape) for d in dims_t)
            with graph.inserting_before(n):
                new = graph.call_function(roll_by_slices, (x, norm, dims_n))
            _replace(n, new, rec)
            records.append(
                PassRecord("circular_to_slices", unit, n.name, f"roll(shifts={shifts_t}, dims={dims_t})",
                           "slice+concat", list(in_shape))
            )  # fmt: skip
        elif n.op == "call_module":
            mod = gm.get_submodule(str(n.target))
            pad_types = _circular_pad_types()
            x = n.args[0] if n.args else None
            if pad_types and isinstance(mod, pad_types) and x in rec.shapes:
                pad = tuple(int(p) for p in mod.padding)
                with graph.inserting_before(n):
                    new = graph.call_function(circular_pad, (x, pad))
                _replace(n, new, rec)
                records.append(
                    PassRecord("circular_to_slices", unit, n.name, f"{type(mod).__name__}{_pad_text(pad)}",
                               "slice+concat", list(rec.shapes[x]))
                )  # fmt: skip
            elif isinstance(mod, nn.modules.conv._ConvNd) and mod.padding_mode == "circular" and x in rec.shapes:
                if isinstance(mod, nn.modules.conv._ConvTransposeNd):
                    continue
                in_shape = rec.shapes[x]
                pad = [int(p) for p in mod._reversed_padding_repeated_twice]
                new_conv = copy.deepcopy(mod)
                new_conv.padding_mode = "zeros"
                new_conv.padding = (0,) * len(mod.kernel_size)
                spans = _conv_spans(mod.weight, pad, in_shape, mod.stride, mod.dilation)
                form = "slice+concat"
                if spans:
                    pad = _canonical_pad(pad, spans, len(in_shape))
                    with torch.no_grad():
                        new_conv.weight = nn.Parameter(_roll_weight(mod.weight.detach(), spans))
                    form = "cat-then-conv (kernel spans the feature)" + _rolled_text(spans)
                gm.add_submodule(str(n.target), new_conv)
                with graph.inserting_before(n):
                    padded = graph.call_function(circular_pad, (x, tuple(pad)))
                n.args = (padded, *n.args[1:])
                records.append(
                    PassRecord("circular_to_slices", unit, n.name,
                               f"{type(mod).__name__}(padding_mode=circular, padding={tuple(mod.padding)})",
                               f"{form} → {type(mod).__name__}(padding=0)", list(in_shape))
                )  # fmt: skip
    return records, notes


Pass = Callable[[fx.GraphModule, _Recorder, str], tuple[list[PassRecord], list[str]]]
#: the generic passes in the order :func:`edgedeploy.export.lowering.lower` runs them
PASSES: tuple[tuple[str, Pass], ...] = (("fold_constants", fold_constants), ("circular_to_slices", circular_to_slices))
