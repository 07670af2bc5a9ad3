"""The torch.fx machinery the generic passes share: tracing with standard layers as leaves, a recording
interpreter (every node's concrete value at the export resolution), node naming and the pass records.

See :mod:`edgedeploy.export.generic` for the passes' driver and :mod:`edgedeploy.export.fx_passes` for the passes.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.node import map_aggregate


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


class _ConcreteProxy(fx.Proxy):
    """A proxy that also holds the node's concrete value at the recorded arguments: shape queries (``x.shape``,
    ``x.ndim``, ``x.size()``, ``x.dim()``, ``len(x)``) give Python values, so shape-dependent control flow traces
    (for that one input shape); control flow on tensor *values* still fails, as in plain fx."""

    value: Any = None

    def __getattr__(self, k: str) -> Any:
        if k in ("shape", "ndim", "dtype", "device", "is_cuda", "layout") and isinstance(self.value, torch.Tensor):
            return getattr(self.value, k)
        return super().__getattr__(k)

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self) -> Any:
        return iter([self[i] for i in range(len(self.value))])


class _ConcreteTracer(_Tracer):
    """:class:`_Tracer` that evaluates every node on concrete arguments while tracing (see :class:`_ConcreteProxy`)."""

    def __init__(self, args: tuple, leaves: frozenset[int] = frozenset()) -> None:
        super().__init__(leaves)
        self.inputs = list(args)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def _fetch(self, target: str) -> Any:
        obj: Any = self.root
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj

    def create_proxy(self, kind: str, target: Any, args: tuple, kwargs: dict, *rest: Any, **kw: Any) -> Any:
        def val(v: Any) -> Any:
            return v.value if isinstance(v, _ConcreteProxy) else v

        a, k = map_aggregate(args, val), map_aggregate(kwargs, val)
        if kind == "call_method" and target in _META_METHODS and isinstance(a[0], torch.Tensor):
            return getattr(a[0], target)(*a[1:], **k)
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **kw)
        from torch.fx._symbolic_trace import _maybe_revert_all_patches

        with torch.no_grad(), _maybe_revert_all_patches():  # evaluate with fx's module patches undone
            if kind == "placeholder":
                value = self.inputs.pop(0) if self.inputs else None
            elif kind == "get_attr":
                value = self._fetch(str(target))
            elif kind == "call_function":
                value = target(*a, **k)
            elif kind == "call_method":
                value = getattr(a[0], target)(*a[1:], **k)
            elif kind == "call_module":
                value = self._fetch(str(target))(*a, **k)
            else:
                value = None
        if isinstance(proxy, _ConcreteProxy):
            proxy.value = value
        return proxy


def trace_concrete(module: nn.Module, args: tuple, leaves: frozenset[int] = frozenset()) -> fx.GraphModule:
    """Trace ``module`` for the one call ``module(*args)``: shapes are Python values while tracing (the graph
    holds them as literals), so a ``forward`` branching on ``x.shape`` traces. Raises whatever fx raises."""
    name = module.__class__.__name__
    graph = _ConcreteTracer(args, leaves).trace(module)
    return fx.GraphModule(module, graph, name)
