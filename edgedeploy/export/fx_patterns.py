"""Pattern lowerings for converters with a rank or slicing limit (ncnn via pnnx): torch.fx rewrites keyed on what the
traced graph does, not on which class wrote it, so other people's architectures (timm, torchvision) export too.

Each pass is exact: it only re-arranges reshapes, permutes and slices (the same elements, in the same order), and
:func:`edgedeploy.export.generic.run_passes` checks every rewritten module against the original on its recorded
arguments and random ones. Shapes are those recorded at the export resolution (batch 1), so the rewritten graph
holds literal shapes and is valid for that input shape only.

``high_rank_to_4d``
    A tensor of rank > 4 made by a reshape of a ≤ 4-D tensor and then permuted (attention's
    ``qkv.reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)``, window / patch partitions ``x.view(B, h, ws, w, ws,
    C).permute(0, 1, 3, 2, 4, 5)``, MobileViT v2's 6-D unfold) is followed symbolically as
    ``permute(reshape(x, s), p)``. Where it leaves the high rank again, the rank-> 4 chain is replaced:

    * a reshape / view / flatten to ≤ 4-D: the permutation is done on the ≤ 4-D source, unit dimensions dropped
      and dimensions that stay adjacent merged; a permutation still of more than 4 groups becomes a sequence of
      block moves, each one ``reshape(P, B, M, S)`` + ``permute(0, 2, 1, 3)`` (every tensor ≤ 4-D);
    * ``unbind`` / an integer index / ``select`` along a dimension (q, k, v): that dimension is sliced on the
      source first (``reshape(1, P, K, Q)[:, :, i:i+1]``), then the ≤ 4-D rest is reshaped and permuted.

    Other consumers of a > 4-D tensor (an elementwise op on it, a matmul) keep the original nodes; a note says so.
``strided_slice``
    ``x[..., a:b:s, ...]`` with a step ``s > 1`` (pnnx: "slice with step 2 is not supported") becomes a
    contiguous slice, ``reshape(1, P·n, s·Q)[:, :, :Q]`` and a reshape back; the last element is concatenated
    on its own when the strided span runs past the end of the axis.
``uneven_split``
    ``x.chunk(k, d)`` / ``x.split(s, d)`` whose pieces are not all equal (pnnx: "chunk with non-perfect divided size
    88 / 3 is not supported"; EdgeNeXt's ``chunk(3)`` of 88 channels) becomes one contiguous slice per piece used,
    with torch's own piece sizes (``ceil(n / k)`` each, the last one shorter).
``broadcast_expand``
    ``a * b.expand_as(a)`` (an ``expand`` / ``expand_as`` feeding an elementwise op whose other operand already has
    the expanded shape; MobileViT v2's linear attention) becomes ``a * b``: the same broadcast, without the expand
    that LiteRT's converter rejects ("'tfl.mul' op operands don't have broadcast-compatible shapes").
``batch_flatten_norm``
    ``bn(x.flatten(0, 1)).reshape_as(x)`` — a ``BatchNorm1d`` over the tokens of a ``(1, N, C)`` tensor merged into
    the batch axis (LeViT's ``LinearNorm``); pnnx takes the merged axis for ncnn's batch and the artifact computes
    NaN — becomes ``bn(x.transpose(1, 2)).transpose(1, 2)``: the same per-channel normalisation of every element,
    on a ``(1, C, N)`` tensor.

:data:`PATTERN_PASSES` names them; :func:`edgedeploy.registry.format_spec` (``FormatSpec.graph_passes``) says
which formats run which ones (a format whose converter takes the original ops runs none).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx

from edgedeploy.export.fx_graph import _INPUT, PassRecord, _Recorder

_RESHAPES = {"reshape", "view"}
_PERMUTES = {"permute", "transpose", "swapaxes", "swapdims"}
_SAME = {"contiguous", "clone"}


_FUNCS: dict[Any, str] = {
    torch.reshape: "reshape", torch.permute: "permute", torch.transpose: "transpose", torch.swapaxes: "swapaxes",
    torch.swapdims: "swapdims", torch.flatten: "flatten", torch.unflatten: "unflatten", torch.unsqueeze: "unsqueeze",
    torch.unbind: "unbind", torch.select: "select", operator.getitem: "getitem", torch.chunk: "chunk",
    torch.split: "split",
}  # fmt: skip


def _method_or_func(n: fx.Node) -> str | None:
    """``"reshape"`` for both ``x.reshape(...)`` and ``torch.reshape(x, ...)`` (and the like); None otherwise."""
    if n.op == "call_method":
        return str(n.target)
    if n.op == "call_function":
        try:
            return _FUNCS.get(n.target)
        except TypeError:  # an unhashable target
            return None
    return None


def _rank(rec: _Recorder, n: Any) -> int | None:
    shape = rec.shapes.get(n) if isinstance(n, fx.Node) else None
    return None if shape is None else len(shape)


def _norm_dim(d: int, rank: int) -> int:
    return d % rank if rank else 0


def _perm_of(n: fx.Node, name: str, rank: int) -> list[int] | None:
    """The permutation a permute / transpose node applies (output dim j reads input dim perm[j])."""
    args = list(n.args[1:])
    if name == "permute":
        dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        dims = dims or n.kwargs.get("dims")
        if not dims or not all(isinstance(d, int) for d in dims):
            return None
        return [_norm_dim(int(d), rank) for d in dims]
    if len(args) < 2:
        args = args + [n.kwargs.get(k) for k in ("dim0", "dim1")][len(args) :]
    if len(args) < 2 or not all(isinstance(d, int) for d in args[:2]):
        return None
    a, b = (_norm_dim(int(d), rank) for d in args[:2])
    perm = list(range(rank))
    perm[a], perm[b] = perm[b], perm[a]
    return perm


class _Virtual:
    """A > 4-D tensor followed symbolically: ``permute(reshape(source, shape), perm)`` (``source`` is ≤ 4-D)."""

    def __init__(self, source: fx.Node, shape: Sequence[int], perm: Sequence[int]) -> None:
        self.source, self.shape, self.perm = source, tuple(int(s) for s in shape), list(perm)

    def then(self, perm: Sequence[int]) -> _Virtual:
        return _Virtual(self.source, self.shape, [self.perm[p] for p in perm])


def _simplify(shape: Sequence[int], perm: Sequence[int]) -> tuple[list[int], list[int]]:
    """Drop unit dimensions and merge input dimensions that stay adjacent in ``perm``: the same data movement."""
    keep = [i for i, s in enumerate(shape) if s != 1]
    index = {d: j for j, d in enumerate(keep)}
    shp = [shape[i] for i in keep]
    prm = [index[p] for p in perm if p in index]
    merged = True
    while merged and len(shp) > 1:
        merged = False
        for j in range(len(prm) - 1):
            a, b = prm[j], prm[j + 1]
            if b == a + 1:
                shp = [*shp[:a], shp[a] * shp[b], *shp[b + 1 :]]
                prm = [p if p <= a else p - 1 for p in prm[: j + 1] + prm[j + 2 :]]
                merged = True
                break
    return shp, prm


class _Builder:
    """Emits new nodes before ``anchor`` and records their shapes in ``rec`` (so later passes see them)."""

    def __init__(self, graph: fx.Graph, rec: _Recorder, anchor: fx.Node) -> None:
        self.graph, self.rec, self.anchor = graph, rec, anchor

    def _node(self, method: str, args: tuple, shape: Sequence[int]) -> fx.Node:
        with self.graph.inserting_before(self.anchor):
            node = self.graph.call_method(method, args)
        self.rec.shapes[node] = tuple(int(s) for s in shape)
        self.rec.dep[node] = _INPUT
        return node

    def reshape(self, x: fx.Node, shape: Sequence[int]) -> fx.Node:
        shape = tuple(int(s) for s in shape)
        if self.rec.shapes.get(x) == shape:
            return x
        return self._node("reshape", (x, shape), shape)

    def permute(self, x: fx.Node, perm: Sequence[int]) -> fx.Node:
        if list(perm) == list(range(len(perm))):
            return x
        shape = self.rec.shapes[x]
        return self._node("permute", (x, tuple(perm)), [shape[p] for p in perm])

    def narrow(self, x: fx.Node, dim: int, start: int, length: int) -> fx.Node:
        shape = list(self.rec.shapes[x])
        if start == 0 and length == shape[dim]:
            return x
        idx = tuple([slice(None)] * dim + [slice(start, start + length)])
        shape[dim] = length
        with self.graph.inserting_before(self.anchor):
            node = self.graph.call_function(operator.getitem, (x, idx))
        self.rec.shapes[node], self.rec.dep[node] = tuple(shape), _INPUT
        return node

    def cat(self, parts: list[fx.Node], dim: int) -> fx.Node:
        shape = list(self.rec.shapes[parts[0]])
        shape[dim] = sum(self.rec.shapes[p][dim] for p in parts)
        with self.graph.inserting_before(self.anchor):
            node = self.graph.call_function(torch.cat, (parts, dim))
        self.rec.shapes[node], self.rec.dep[node] = tuple(shape), _INPUT
        return node

    def materialize(self, v: _Virtual) -> tuple[fx.Node, int]:
        """A ≤ 4-D node whose elements in row-major order are those of ``v``; returns (node, permute ops used)."""
        shp, prm = _simplify(v.shape, v.perm)
        x = v.source
        if len(shp) <= 4:
            lead = [1] * (4 - len(shp)) if len(shp) < 4 else []
            x = self.reshape(x, lead + shp)
            return self.permute(x, list(range(len(lead))) + [p + len(lead) for p in prm]), 1
        order = list(range(len(shp)))  # order[j]: the (simplified) input dim now at position j
        cur = list(shp)  # the logical shape of x (its recorded one differs until the first step)
        steps = 0
        for t, want in enumerate(prm):
            i = order.index(want)
            if i == t:
                continue
            p, b, m, s = math.prod(cur[:t]), math.prod(cur[t:i]), cur[i], math.prod(cur[i + 1 :])
            x = self.permute(self.reshape(x, (p, b, m, s)), (0, 2, 1, 3))
            order.insert(t, order.pop(i))
            cur.insert(t, cur.pop(i))
            steps += 1
        return x, steps


def _select_parts(n: fx.Node) -> tuple[int, int] | None:
    """``(dim, index)`` when ``n`` is ``x[i]``, ``x[:, i]`` (full slices then one int) or ``x.select(d, i)``."""
    name = _method_or_func(n)
    if name == "getitem":
        idx = n.args[1]
        if isinstance(idx, int):
            return 0, idx
        if isinstance(idx, tuple) and idx and isinstance(idx[-1], int):
            if all(isinstance(s, slice) and s == slice(None) for s in idx[:-1]):
                return len(idx) - 1, idx[-1]
        return None
    if name == "select" and len(n.args) >= 3 and all(isinstance(a, int) for a in n.args[1:3]):
        return int(n.args[1]), int(n.args[2])
    return None


def _out_shape(rec: _Recorder, n: fx.Node) -> tuple[int, ...] | None:
    return rec.shapes.get(n)


def high_rank_to_4d(gm: fx.GraphModule, rec: _Recorder, unit: str) -> tuple[list[PassRecord], list[str]]:
    """Rewrite > 4-D reshape → permute → (reshape | unbind | select) chains of ``gm`` with ≤ 4-D tensors only."""
    records: list[PassRecord] = []
    notes: list[str] = []
    graph = gm.graph
    virt: dict[fx.Node, _Virtual] = {}
    unbinds: dict[fx.Node, tuple[_Virtual, int]] = {}

    def select(n: fx.Node, v: _Virtual, dim: int, index: int) -> None:
        rank = len(v.perm)
        dim = _norm_dim(dim, rank)
        k = v.perm[dim]
        size = v.shape[k]
        index = index % size
        b = _Builder(graph, rec, n)
        pre, post = math.prod(v.shape[:k]), math.prod(v.shape[k + 1 :])
        part = b.narrow(b.reshape(v.source, (1, pre, size, post)), 2, index, 1)
        shape = v.shape[:k] + v.shape[k + 1 :]
        perm = [p - (p > k) for i, p in enumerate(v.perm) if i != dim]
        rest = _Virtual(part, shape, perm)
        if len(shape) > 4:
            virt[n] = rest
            return
        out, _ = b.materialize(rest)
        out = b.reshape(out, [shape[p] for p in perm])
        n.replace_all_uses_with(out)
        records.append(
            PassRecord("high_rank_to_4d", unit, n.name, f"select(dim {dim}, {index}) of a {rank}-D permuted reshape",
                       "slice of the ≤ 4-D source + reshape/permute", list(rec.shapes.get(n, ())))
        )  # fmt: skip

    for n in list(graph.nodes):
        if n.op not in ("call_method", "call_function") or not n.args:
            continue
        name = _method_or_func(n)
        if name is None:
            continue
        src = n.args[0]
        shape = _out_shape(rec, n)
        if name in _RESHAPES or name in ("flatten", "unflatten", "unsqueeze"):
            if shape is None or not isinstance(src, fx.Node):
                continue
            if src in virt:
                v = virt[src]
                if len(shape) > 4:  # a reshape of a virtual tensor that stays > 4-D: materialize, then follow
                    b = _Builder(graph, rec, n)
                    flat, _ = b.materialize(v)
                    virt[n] = _Virtual(flat, shape, list(range(len(shape))))
                    continue
                b = _Builder(graph, rec, n)
                flat, steps = b.materialize(v)
                out = b.reshape(flat, shape)
                n.replace_all_uses_with(out)
                records.append(
                    PassRecord("high_rank_to_4d", unit, n.name,
                               f"{len(v.shape)}-D reshape{tuple(v.shape)} → permute{tuple(v.perm)} → reshape",
                               f"≤ 4-D reshape/permute ({steps} permute(s))", list(shape))
                )  # fmt: skip
            elif len(shape) > 4 and (_rank(rec, src) or 0) <= 4 and src in rec.shapes:
                virt[n] = _Virtual(src, shape, list(range(len(shape))))
        elif name in _PERMUTES and src in virt:
            perm = _perm_of(n, name, len(virt[src].perm))
            if perm is not None:
                virt[n] = virt[src].then(perm)
        elif name in _SAME and src in virt:
            virt[n] = virt[src]
        elif name == "unbind" and src in virt:
            dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
            if isinstance(dim, int):
                unbinds[n] = (virt[src], dim)
        elif name == "getitem" and src in unbinds and isinstance(n.args[1], int):
            v, dim = unbinds[src]
            select(n, v, dim, n.args[1])
        elif src in virt:
            parts = _select_parts(n)
            if parts is not None:
                select(n, virt[src], *parts)
    if records:
        graph.eliminate_dead_code()
    alive = set(graph.nodes)
    for n in virt:
        left = [u for u in n.users if u not in virt and u not in unbinds] if n in alive else []
        if left:
            where = f"{unit or 'model'}:{left[0].name}"
            notes.append(f"{where}: {len(virt[n].perm)}-D tensor used by {_method_or_func(left[0])} left as is")
    return records, notes


def _stepped_slices(idx: Any) -> list[tuple[int, slice]] | None:
    """``[(dim, slice), ...]`` of the stepped slices (``a:b:s``, s > 1) in a getitem index of slices only, when the
    other slices are full (``:``); None when the index holds anything else or no step."""
    items = idx if isinstance(idx, tuple) else (idx,)
    found = []
    for d, s in enumerate(items):
        if not isinstance(s, slice):
            return None
        if s.step not in (None, 1):
            if not isinstance(s.step, int) or s.step < 1:
                return None
            if not all(isinstance(v, int) or v is None for v in (s.start, s.stop)):
                return None
            found.append((d, s))
        elif s.start is not None or s.stop is not None:
            return None
    return found or None


def _strided(b: _Builder, x: fx.Node, dim: int, s: slice) -> tuple[fx.Node, str]:
    """``x`` sliced ``a:b:step`` along ``dim`` with contiguous slices and reshapes only; returns (node, form)."""
    shape = list(b.rec.shapes[x])
    start, stop, step = s.indices(shape[dim])
    count = len(range(start, stop, step))
    pre, post = math.prod(shape[:dim]), math.prod(shape[dim + 1 :])
    whole = count if start + step * count <= shape[dim] else count - 1  # strided rows that fit in full
    parts = []
    if whole:
        span = b.narrow(x, dim, start, step * whole)
        # (1, pre·whole, step·post)[..., :post]: a leading unit (batch) axis, because pnnx takes the first axis of a
        # tensor whose first dimension is not 1 as batch-less and then slices the graph input on the wrong ncnn axis
        rows = b.narrow(b.reshape(span, (1, pre * whole, step * post)), 2, 0, post)
        parts.append(b.reshape(rows, [*shape[:dim], whole, *shape[dim + 1 :]]))
    if whole < count:
        parts.append(b.narrow(x, dim, start + step * whole, 1))
    form = "contiguous slice + reshape + slice" + (" + concat" if len(parts) > 1 else "")
    return (parts[0] if len(parts) == 1 else b.cat(parts, dim)), form


def strided_slice(gm: fx.GraphModule, rec: _Recorder, unit: str) -> tuple[list[PassRecord], list[str]]:
    """Rewrite ``x[..., a:b:s, ...]`` (step > 1 on one or more axes) of ``gm`` as contiguous slices + reshapes."""
    records: list[PassRecord] = []
    graph = gm.graph
    for n in list(graph.nodes):
        if not (n.op == "call_function" and n.target is operator.getitem and isinstance(n.args[0], fx.Node)):
            continue
        x = n.args[0]
        found = _stepped_slices(n.args[1])
        if found is None or x not in rec.shapes or n not in rec.shapes or len(rec.shapes[x]) > 4:
            continue
        if 0 in rec.shapes[n]:
            continue
        b = _Builder(graph, rec, n)
        out, was, form = x, [], ""
        for dim, s in found:
            start, stop, step = s.indices(rec.shapes[x][dim])
            out, form = _strided(b, out, dim, s)
            was.append(f"dim {dim} {start}:{stop}:{step}")
        n.replace_all_uses_with(out)
        records.append(PassRecord("strided_slice", unit, n.name, f"slice({', '.join(was)})", form, list(rec.shapes[x])))
    if records:
        graph.eliminate_dead_code()
    return records, []


def _split_sizes(name: str, n: fx.Node, shape: Sequence[int]) -> tuple[int, list[int]] | None:
    """``(dim, piece sizes)`` of a chunk / split node of a tensor of ``shape``; None when its arguments are not
    literal ints (a list of split sizes is left alone: pnnx slices it with explicit sizes)."""
    args, kw = list(n.args[1:]), dict(n.kwargs)
    arg = args[0] if args else kw.get("chunks", kw.get("split_size_or_sections", kw.get("split_size")))
    dim = args[1] if len(args) > 1 else kw.get("dim", 0)
    if not isinstance(arg, int) or not isinstance(dim, int) or arg < 1 or not shape:
        return None
    dim = _norm_dim(dim, len(shape))
    size = shape[dim]
    each = -(-size // arg) if name == "chunk" else arg  # torch.chunk: ceil(n / k) per piece
    return dim, [min(each, size - start) for start in range(0, size, each)]


def uneven_split(gm: fx.GraphModule, rec: _Recorder, unit: str) -> tuple[list[PassRecord], list[str]]:
    """Rewrite chunk / split of ``gm`` into unequal pieces as one contiguous slice per piece (torch's sizes)."""
    records: list[PassRecord] = []
    notes: list[str] = []
    graph = gm.graph
    for n in list(graph.nodes):
        name = _method_or_func(n)
        if name not in ("chunk", "split") or not n.args or not isinstance(n.args[0], fx.Node):
            continue
        x = n.args[0]
        shape = rec.shapes.get(x)
        found = None if shape is None else _split_sizes(name, n, shape)
        if found is None or len(set(found[1])) <= 1:
            continue
        dim, sizes = found
        users = list(n.users)
        if not all(_method_or_func(u) == "getitem" and isinstance(u.args[1], int) for u in users):
            notes.append(f"{unit or 'model'}:{n.name}: {name} into {sizes} used other than by index: left as is")
            continue
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        for u in users:
            i = u.args[1] % len(sizes)
            piece = _Builder(graph, rec, u).narrow(x, dim, starts[i], sizes[i])
            u.replace_all_uses_with(piece)
        records.append(
            PassRecord("uneven_split", unit, n.name, f"{name} of {shape[dim]} along dim {dim} into {sizes}",
                       f"{len(users)} contiguous slice(s)", list(shape))
        )  # fmt: skip
    if records:
        graph.eliminate_dead_code()
    return records, notes


_ELEMENTWISE = {operator.mul, operator.add, operator.sub, operator.truediv, torch.mul, torch.add, torch.sub, torch.div}
_ELEMENTWISE_METHODS = {"mul", "add", "sub", "div"}


def _elementwise(n: fx.Node) -> bool:
    return (n.op == "call_function" and n.target in _ELEMENTWISE) or (
        n.op == "call_method" and n.target in _ELEMENTWISE_METHODS
    )


def broadcast_expand(gm: fx.GraphModule, rec: _Recorder, unit: str) -> tuple[list[PassRecord], list[str]]:
    """Drop an ``expand`` / ``expand_as`` whose users are elementwise ops that broadcast it to the same shape."""
    records: list[PassRecord] = []
    graph = gm.graph
    for n in list(graph.nodes):
        if not (n.op == "call_method" and n.target in ("expand", "expand_as") and isinstance(n.args[0], fx.Node)):
            continue
        src, shape = n.args[0], rec.shapes.get(n)
        if shape is None or src not in rec.shapes:
            continue
        users = list(n.users)
        fits = all(
            _elementwise(u)
            and len(u.args) == 2
            and not u.kwargs
            and all(a is n or (isinstance(a, fx.Node) and rec.shapes.get(a) == shape) for a in u.args)
            and any(a is not n for a in u.args)
            for u in users
        )
        if not users or not fits:
            continue
        n.replace_all_uses_with(src)
        records.append(
            PassRecord("broadcast_expand", unit, n.name, f"{n.target} {list(rec.shapes[src])} → {list(shape)}",
                       "the elementwise op's own broadcast", list(shape))
        )  # fmt: skip
    if records:
        graph.eliminate_dead_code()
    return records, []


def _merged_batch_source(rec: _Recorder, n: Any) -> fx.Node | None:
    """``x`` when ``n`` is ``x.flatten(0, 1)`` / ``x.reshape(N, C)`` of a ``(1, N, C)`` tensor ``x``; else None."""
    if not isinstance(n, fx.Node) or _method_or_func(n) not in ("flatten", *_RESHAPES) or len(n.users) != 1:
        return None
    x = n.args[0] if n.args else None
    src, out = (rec.shapes.get(x) if isinstance(x, fx.Node) else None), rec.shapes.get(n)
    if src is None or out is None or len(src) != 3 or src[0] != 1 or tuple(out) != tuple(src[1:]):
        return None
    return x


def batch_flatten_norm(gm: fx.GraphModule, rec: _Recorder, unit: str) -> tuple[list[PassRecord], list[str]]:
    """Rewrite ``BatchNorm1d(x.flatten(0, 1))`` of a ``(1, N, C)`` ``x`` as a BatchNorm1d over ``(1, C, N)``."""
    records: list[PassRecord] = []
    graph = gm.graph
    for n in list(graph.nodes):
        if n.op != "call_module" or not isinstance(gm.get_submodule(str(n.target)), torch.nn.BatchNorm1d):
            continue
        x = _merged_batch_source(rec, n.args[0] if n.args else None)
        if x is None:
            continue
        tokens, channels = rec.shapes[x][1:]
        b = _Builder(graph, rec, n)
        t = b.permute(x, (0, 2, 1))
        with graph.inserting_before(n):
            normed = graph.call_module(str(n.target), (t,))
        rec.shapes[normed], rec.dep[normed] = (1, channels, tokens), _INPUT
        back = _Builder(graph, rec, n).permute(normed, (0, 2, 1))
        for u in list(n.users):  # reshape_as(x) / reshape(1, N, C): the (1, N, C) tensor itself
            if _method_or_func(u) in ("reshape_as", *_RESHAPES) and rec.shapes.get(u) == rec.shapes[x]:
                u.replace_all_uses_with(back)
        if n.users:
            n.replace_all_uses_with(_Builder(graph, rec, n).reshape(back, (tokens, channels)))
        records.append(
            PassRecord("batch_flatten_norm", unit, n.name, f"BatchNorm1d of a (1, N, C) = {list(rec.shapes[x])} "
                       "tensor flattened to (N, C)", "BatchNorm1d over (1, C, N) between transposes",
                       list(rec.shapes[x]))
        )  # fmt: skip
    if records:
        graph.eliminate_dead_code()
    return records, []


#: the pattern passes by name (a format lists the ones it runs in ``FormatSpec.graph_passes``)
PATTERN_PASSES = {"high_rank_to_4d": high_rank_to_4d, "strided_slice": strided_slice, "uneven_split": uneven_split,
                  "broadcast_expand": broadcast_expand, "batch_flatten_norm": batch_flatten_norm}  # fmt: skip
