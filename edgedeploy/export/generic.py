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

Every record says which pass rewrote which module and node (see :class:`PassRecord`).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.node import map_aggregate

from edgedeploy.nn.circular import circular_pad, roll_by_slices


@dataclass
class PassRecord:
    """One rewrite: ``pass_name`` rewrote node ``node`` of module ``module`` ("" is the whole model)."""

    pass_name: str
    module: str
    node: str
    was: str
    now: str
    shape: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pass"] = d.pop("pass_name")
        return d


@dataclass
class PassResult:
    """What one pass did over the whole model: its records, the modules it replaced, and notes."""

    name: str
    records: list[PassRecord] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_INPUT, _STATIC, _VOLATILE = "input", "static", "volatile"

#: attribute reads / methods that give static metadata of a tensor (its value does not matter)
_META_ATTRS = {"shape", "ndim", "dtype", "device", "is_cuda", "layout", "requires_grad"}
_META_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "get_device", "type_as_meta"}
#: ops whose result must never be folded (random or uninitialised values)
_VOLATILE_NAMES = {
    "rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "randperm", "bernoulli", "multinomial",
    "normal", "empty", "empty_like", "empty_strided", "dropout", "dropout2d", "dropout3d", "alpha_dropout",
    "feature_alpha_dropout", "uniform_", "normal_",
}  # fmt: skip
#: ops that only re-view or re-type a tensor: folding a chain of these alone is not substantive
_VIEW_NAMES = {
    "view", "reshape", "expand", "expand_as", "permute", "transpose", "t", "unsqueeze", "squeeze", "flatten",
    "contiguous", "getitem", "to", "float", "half", "double", "type", "type_as", "detach", "clone", "view_as",
    "reshape_as", "unflatten", "movedim", "swapaxes", "narrow", "select", "chunk", "split", "unbind", "__getitem__",
    "getattr", "mul", "add", "sub", "neg", "truediv", "div", "cat", "stack",
}  # fmt: skip
_INPLACE_FUNCS = {operator.setitem, operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ipow}
_PAD_FUNCS = {F.pad, torch._C._nn.pad}


def _name_of(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_module":
        return str(t)
    if isinstance(t, str):
        return t
    return getattr(t, "__name__", str(t))


def _is_mutating(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_function" and (node.target in _INPLACE_FUNCS or node.kwargs.get("inplace") is True):
        return True
    if node.op in ("call_function", "call_method"):
        name = _name_of(node)
        return name.endswith("_") and not name.endswith("__")
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(str(node.target)), "inplace", False))
    return False


class _Tracer(fx.Tracer):
    """Standard ``torch.nn`` layers are leaves (fx's default), and so are the modules in ``leaves`` (the export
    forms made by registered rewrites: chosen per target on purpose, not second-guessed); the rest is traced."""

    def __init__(self, leaves: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return id(m) in self.leaves or super().is_leaf_module(m, module_qualified_name)


def _holder(inner: nn.Module, n_args: int) -> nn.Module:
    """A module holding ``inner`` as ``inner`` whose ``forward`` takes ``n_args`` positional tensors (fx needs
    named parameters, not ``*args``), for modules whose attribute names clash with GraphModule's."""
    names = ", ".join(f"a{i}" for i in range(n_args))
    namespace: dict[str, Any] = {}
    exec(f"def forward(self, {names}):\n    return self.inner({names})\n", namespace)
    holder = type("Holder", (nn.Module,), {"forward": namespace["forward"]})()
    holder.inner = inner
    return holder


def trace(module: nn.Module, n_args: int = 1, leaves: frozenset[int] = frozenset()) -> fx.GraphModule:
    """Symbolically trace ``module`` (raises whatever fx raises when it cannot).

    A module with a parameter or submodule named like a GraphModule attribute (``meta``, ``graph``) is traced
    inside a holder taking ``n_args`` positional arguments, so its attributes get an ``inner.`` prefix.
    """
    name = module.__class__.__name__
    graph = _Tracer(leaves).trace(module)
    try:
        return fx.GraphModule(module, graph, name)
    except (TypeError, AttributeError, KeyError):
        holder = _holder(module, n_args)
        return fx.GraphModule(holder, _Tracer(leaves).trace(holder), name)


class _Recorder(fx.Interpreter):
    """Runs a traced graph on concrete arguments; keeps each node's value (static nodes) or metadata."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.dep: dict[fx.Node, str] = {}
        self.values: dict[fx.Node, Any] = {}
        self.shapes: dict[fx.Node, tuple[int, ...]] = {}

    def _classify(self, n: fx.Node) -> str:
        if n.op == "placeholder":
            return _INPUT
        if n.op == "get_attr":
            return _STATIC
        deps = {self.dep[a] for a in n.all_input_nodes}
        name = _name_of(n)
        is_dropout = n.op == "call_module" and isinstance(self.module.get_submodule(name), nn.Dropout)
        if name in _VOLATILE_NAMES or is_dropout:
            return _VOLATILE
        if _INPUT in deps or _VOLATILE in deps:
            if (n.op == "call_function" and n.target is getattr and n.args[1] in _META_ATTRS) or (
                n.op == "call_method" and n.target in _META_METHODS
            ):
                return _STATIC
            return _INPUT
        return _STATIC

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.dep[n] = self._classify(n)
        if isinstance(result, torch.Tensor):
            self.shapes[n] = tuple(result.shape)
        if self.dep[n] == _STATIC:
            self.values[n] = result.detach().clone() if isinstance(result, torch.Tensor) else copy.copy(result)
        return result


def _literal(value: Any) -> tuple[bool, Any]:
    """(representable, literal) for a static non-tensor value fx code generation can print."""
    if isinstance(value, torch.Size):
        value = tuple(value)
    if value is None or isinstance(value, (bool, int, str)):
        return True, value
    if isinstance(value, float):
        return (value == value and abs(value) != float("inf")), value
    if isinstance(value, torch.dtype):
        return True, value
    if isinstance(value, (tuple, list)):
        items = [_literal(v) for v in value]
        if all(ok for ok, _ in items):
            return True, type(value)(v for _, v in items)
    return False, None


def _substitute(user: fx.Node, node: fx.Node, literal: Any) -> None:
    def sub(a: Any) -> Any:
        return literal if a is node else a

    user.args = map_aggregate(user.args, sub)
    user.kwargs = map_aggregate(user.kwargs, sub)


def _static_ancestry(node: fx.Node, dep: dict[fx.Node, str]) -> tuple[set[str], list[str]]:
    """Op names in the static subgraph computing ``node``, and the parameters / buffers it reads."""
    ops: set[str] = set()
    attrs: list[str] = []
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "get_attr":
            attrs.append(str(n.target))
            continue
        if n.op == "placeholder":
            continue
        ops.add(_name_of(n).rsplit(".", 1)[-1])
        stack.extend(a for a in n.all_input_nodes if dep.get(a) == _STATIC or a.op == "get_attr")
    return ops, sorted(attrs)


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

    def __init__(self, static: list[torch.Tensor]) -> None:
        super().__init__()
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
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outs = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        if outs and name not in _VOLATILE_NAMES and all(id(t) in self.static for t in tensors):
            self.keep += outs
            self.static.update(id(t) for t in outs)
            if name.strip("_") not in _VIEW_NAMES:
                self.found.append(f"{name} of constants")
        return out


def _tensor_attributes(root: nn.Module) -> list[torch.Tensor]:
    found = [*root.parameters(), *root.buffers()]
    for m in root.modules():
        found += [v for v in vars(m).values() if isinstance(v, torch.Tensor)]
    return found


def scout(root: nn.Module, example: torch.Tensor, leaves: frozenset[int] = frozenset()) -> list[str]:
    """What in one forward of ``root`` on ``example`` a generic pass could rewrite (empty: nothing to do).

    Computations inside the modules in ``leaves`` (ids) are not looked at.
    """
    mode = _Scout(_tensor_attributes(root))
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
    if not scout(root, example, leaves):  # one eager forward: no circular pad, roll or constant computation
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
                    gm = trace(mod, len(seen[0][0]), leaves)
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
