"""ONNX-level lowering: passes over an ONNX graph, for graphs edgedeploy exports and for ``.onnx`` files users bring.

:func:`fold_attention_heads` hands an opset-23 ``Attention`` the ``(B, S, heads·d)`` tensors instead of the
head-split ``(B, heads, S, d)`` ones torch's exporter writes for ``F.scaled_dot_product_attention`` (Reshape +
Transpose on each of q, k, v, Transpose + Reshape on the output), so the heads are split inside the kernel.
:func:`fold_batchnorm_into_next_conv` folds an inference BatchNorm into the unpadded conv that alone reads it
(torch's exporter folds a BatchNorm only into the conv before it).

:func:`rewrite_wrap_pad` replaces every ``Pad(mode="wrap")`` — what torch's default (dynamo) exporter writes for
``F.pad(mode="circular")`` and ``nn.Conv2d(padding_mode="circular")`` — with ``Slice`` + ``Concat``, one axis
at a time (``concat(x[-before:], x, x[:after])`` along the axis, which is exactly numpy's ``np.pad(mode="wrap")``
for pads no larger than the axis). MNN's converter refuses wrap padding ("MNN only support ['constant',
'reflect'] Pad mode"); Slice and Concat every converter has. :func:`prove_equal` runs the original and the
rewritten graph in onnxruntime on seeded inputs and reports the largest difference.

:func:`split_qkv_5d` splits a 5-D qkv tensor (``Reshape (B, N, 3, heads, d)`` → ``Transpose [2, 0, 3, 1, 4]`` →
Gather / Slice + Squeeze / Split on axis 0, PaddleOCR's SVTR attention) into a Slice + 4-D Reshape + Transpose per
head tensor, the same elements in the same order: ncnn's Mat has at most 4 dims and pnnx refuses the 5-D permute.

:data:`ONNX_FILE_PASSES` names the passes a format runs on an ONNX file a user brings
(:attr:`edgedeploy.registry.FormatSpec.onnx_passes`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.errors import ExportError

_INT64_MAX = np.iinfo(np.int64).max


def _const_value(graph: Any, name: str) -> np.ndarray | None:
    """The value of ``name`` if it is an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
    return None


def rewrite_wrap_pad(model: Any) -> tuple[Any, list[str]]:
    """Rewrite ``Pad(mode="wrap")`` into Slice + Concat in place; returns ``(model, rewritten node names)``.

    Needs the pads (and axes, opset ≥ 18) as constants. Raises :class:`ExportError` naming the node when they
    are computed at run time or a pad is negative (a crop); pads wider than the axis are not checked here
    (onnxruntime would disagree and :func:`prove_equal` reports it).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    rewritten: list[str] = []
    new_nodes = []
    extra_inits = []
    for idx, node in enumerate(graph.node):
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
        if node.op_type != "Pad" or mode != "wrap":
            new_nodes.append(node)
            continue
        label = node.name or node.output[0]
        pads = _const_value(graph, node.input[1]) if len(node.input) > 1 and node.input[1] else None
        if pads is None:
            raise ExportError("wrap Pad with run-time pads cannot be rewritten", op="Pad", node=label)
        pads = [int(p) for p in pads.reshape(-1)]
        n = len(pads) // 2
        axes: list[int] = list(range(n))
        if len(node.input) > 3 and node.input[3]:
            ax = _const_value(graph, node.input[3])
            if ax is None:
                raise ExportError("wrap Pad with run-time axes cannot be rewritten", op="Pad", node=label)
            axes = [int(a) for a in ax.reshape(-1)]
        if any(p < 0 for p in pads):
            raise ExportError("wrap Pad with negative pads (a crop) cannot be rewritten", op="Pad", node=label)
        current = node.input[0]
        prefix = f"{label}_wrap{idx}"
        steps = [(axes[i], pads[i], pads[i + n]) for i in range(n) if pads[i] or pads[i + n]]
        if not steps:
            new_nodes.append(helper.make_node("Identity", [current], [node.output[0]], name=f"{prefix}_id"))
            rewritten.append(label)
            continue
        for k, (axis, before, after) in enumerate(steps):
            parts = []
            if before:
                parts.append(_slice(new_nodes, extra_inits, current, -before, _INT64_MAX, axis, f"{prefix}_a{k}_head"))
            parts.append(current)
            if after:
                parts.append(_slice(new_nodes, extra_inits, current, 0, after, axis, f"{prefix}_a{k}_tail"))
            out = node.output[0] if k == len(steps) - 1 else f"{prefix}_a{k}_out"
            new_nodes.append(helper.make_node("Concat", parts, [out], name=f"{prefix}_a{k}_concat", axis=axis))
            current = out
        rewritten.append(label)
    if rewritten:
        del graph.node[:]
        graph.node.extend(new_nodes)
        graph.initializer.extend(numpy_helper.from_array(a, n) for n, a in extra_inits)
    return model, rewritten


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _readers(graph: Any) -> dict[str, list[Any]]:
    """Tensor name → the nodes that read it (top-level graph)."""
    readers: dict[str, list[Any]] = {}
    for n in graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    return readers


def _rebuild(
    graph: Any, drop: set[int], replace: dict[int, Any], stale: set[str], before: dict[int, list[Any]] | None = None
) -> None:
    """Remove the nodes whose ``id`` is in ``drop``, swap in ``replace[id(node)]``, put ``before[id(node)]`` (new
    nodes) in that node's place, ahead of it, and forget what went with them: the ``value_info`` of tensors no kept
    node writes any more, and the initializers named in ``stale`` that no kept node (nor the graph's outputs)
    reads."""
    made = {t for n in graph.node for t in n.output}
    before = before or {}
    kept = [
        m for n in graph.node for m in (*before.get(id(n), ()), *(() if id(n) in drop else (replace.get(id(n), n),)))
    ]
    del graph.node[:]
    graph.node.extend(kept)
    live = {t for n in kept for t in n.output}
    info = [v for v in graph.value_info if v.name in live or v.name not in made]
    del graph.value_info[:]
    graph.value_info.extend(info)
    read = {t for n in kept for t in n.input} | {o.name for o in graph.output}
    inits = [i for i in graph.initializer if i.name in read or i.name not in stale]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def fold_attention_heads(model: Any) -> tuple[Any, list[str]]:
    """Give every head-split ``Attention`` (opset 23) its 3-D inputs and output, in place; returns
    ``(model, folded node names)``.

    Matched: ``X (B, S, h·d) → Reshape [B, S, h, d] → Transpose [0, 2, 1, 3]`` on each of q, k and v (each
    Transpose read by this Attention only), no mask / past inputs, and the output read only by ``Transpose
    [0, 2, 1, 3] → Reshape``. Replaced by one ``Attention(X_q, X_k, X_v, q_num_heads=h_q,
    kv_num_heads=h_kv)`` (its other attributes, name and metadata kept) writing the Reshape's output (or, when
    the Reshape's target is another shape of the same row-major data, feeding the kept Reshape): the ONNX
    spec defines 3-D Attention as exactly that split (``(B, S, h·d)`` → ``(B, h, S, d)``) and merge, so the result
    is the same up to the kernel's own rounding. Anything else is left alone. Shapes come from ONNX shape
    inference; a graph it cannot type is returned unchanged.
    """
    from onnx import helper, shape_inference

    graph = model.graph
    attention = [n for n in graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
    if not attention:
        return model, []
    try:
        typed = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - an untypable graph is simply not rewritten
        return model, []
    shapes = {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in [*typed.graph.value_info, *typed.graph.input, *typed.graph.output]
    }
    producer = {t: n for n in graph.node for t in n.output}
    readers = _readers(graph)
    outputs = {o.name for o in graph.output}

    def only_reader(t: str) -> Any:
        r = readers.get(t, [])
        return r[0] if len(r) == 1 and t not in outputs else None

    def head_split(t: str) -> tuple[str, int, list[Any]] | None:
        """``t`` = Transpose(Reshape(X)) splitting heads: (X, heads, nodes to drop)."""
        tr = producer.get(t)
        if tr is None or tr.op_type != "Transpose" or list(_attrs(tr).get("perm", [])) != [0, 2, 1, 3]:
            return None
        rs = producer.get(tr.input[0])
        if rs is None or rs.op_type != "Reshape" or only_reader(tr.input[0]) is not tr:
            return None
        x, split = rs.input[0], shapes.get(rs.output[0])
        xs = shapes.get(x)
        if not split or not xs or None in split or None in xs or len(split) != 4 or len(xs) != 3:
            return None
        if xs != [split[0], split[1], split[2] * split[3]]:
            return None
        return x, split[2], [tr, rs]

    drop: set[int] = set()
    replace: dict[int, Any] = {}
    stale: set[str] = set()
    folded: list[str] = []
    for node in attention:
        inputs = list(node.input)
        if len(inputs) < 3 or any(inputs[3:]) or any(list(node.output)[1:]):
            continue
        q, k, v = (head_split(t) for t in inputs[:3])
        if q is None or k is None or v is None or k[1] != v[1] or any(only_reader(t) is not node for t in inputs[:3]):
            continue
        tr = only_reader(node.output[0])
        if tr is None or tr.op_type != "Transpose" or list(_attrs(tr).get("perm", [])) != [0, 2, 1, 3]:
            continue
        rs = only_reader(tr.output[0])
        ys, merged = shapes.get(node.output[0]), shapes.get(rs.output[0]) if rs is not None else None
        if rs is None or rs.op_type != "Reshape" or not ys or not merged or None in ys or None in merged:
            continue
        if len(ys) != 4:  # (B, h, S, d_v)
            continue
        tokens = [ys[0], ys[2], ys[1] * ys[3]]
        attrs = {a: val for a, val in _attrs(node).items() if a not in ("q_num_heads", "kv_num_heads")}
        # the merge Reshape's target is (B, S, h·d), or another shape of the same row-major data (a 2-D
        # (B·S, h·d) before a Gemm): then the Reshape stays, reading the 3-D output
        out = rs.output[0] if merged == tokens else f"{node.output[0]}_tokens"
        new = helper.make_node(
            "Attention", [q[0], k[0], v[0]], [out], name=node.name, q_num_heads=q[1], kv_num_heads=k[1], **attrs
        )  # fmt: skip
        new.metadata_props.extend(node.metadata_props)
        replace[id(node)] = new
        if merged != tokens:
            rs.input[0] = out
        dropped = (*q[2], *k[2], *v[2], tr) + ((rs,) if merged == tokens else ())
        drop.update(id(n) for n in dropped)
        stale.update(t for n in dropped for t in n.input)  # the dropped Reshapes' shape constants
        folded.append(node.name or node.output[0])
    if folded:
        _rebuild(graph, drop, replace, stale)
    return model, folded


def fold_batchnorm_into_next_conv(model: Any) -> tuple[Any, list[str]]:
    """Fold every ``BatchNormalization`` (constant scale, bias, mean, var) whose output only an unpadded ``Conv``
    reads into that conv, in place; returns ``(model, folded BatchNorm names)``.

    With ``a = γ / √(var + ε)`` and ``s = β − μ·a`` per input channel ``i``, ``conv(a·x + s)`` is a conv with weight
    ``W[o, i] · a[i]`` and bias ``b[o] + Σ W[o, i] · s[i]`` (summed over the kernel taps): exact when the conv does
    not pad (a padded tap would see ``s`` where the conv sees zero), for any group count. Left alone: a padded
    conv, a BatchNorm with other readers or a graph output, non-constant parameters, training mode.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    readers = _readers(graph)
    outputs = {o.name for o in graph.output}
    drop: set[int] = set()
    new_inits: dict[str, Any] = {}
    stale: set[str] = set()
    folded: list[str] = []
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        bn_at = _attrs(bn)
        if bn_at.get("training_mode", 0):
            continue
        params = [inits.get(t) for t in bn.input[1:5]]
        users = readers.get(bn.output[0], [])
        if None in params or len(users) != 1 or bn.output[0] in outputs:
            continue
        conv = users[0]
        at = _attrs(conv)
        if conv.op_type != "Conv" or conv.input[0] != bn.output[0] or any(at.get("pads", [])):
            continue
        if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            continue
        w_init = inits.get(conv.input[1])
        b_in = conv.input[2] if len(conv.input) > 2 else ""
        b_init = inits.get(b_in) if b_in else None
        if w_init is None or (b_in and b_init is None):
            continue
        if any(len(readers.get(t, [])) != 1 for t in conv.input[1:3] if t):
            continue  # the conv's weight or bias is shared with another node
        gamma, beta, mean, var = (numpy_helper.to_array(p).astype(np.float64) for p in params)
        eps = float(bn_at.get("epsilon", 1e-5))
        a = gamma / np.sqrt(var + eps)
        shift = beta - mean * a
        w = numpy_helper.to_array(w_init).astype(np.float64)  # (C_out, C_in / group, k...)
        group = int(at.get("group", 1))
        c_out, c_in_g = w.shape[:2]
        per_out = np.arange(c_out) // (c_out // group)  # the group of each output channel
        cols = per_out[:, None] * c_in_g + np.arange(c_in_g)[None, :]  # input channel of W[o, i]
        extra = (w.shape[0], w.shape[1]) + (1,) * (w.ndim - 2)
        scaled = w * a[cols].reshape(extra)
        bias = numpy_helper.to_array(b_init).astype(np.float64) if b_init is not None else np.zeros(c_out)
        bias = bias + (w * shift[cols].reshape(extra)).reshape(c_out, -1).sum(axis=1)
        dtype = numpy_helper.to_array(w_init).dtype
        w_name, b_name = f"{conv.input[1]}_bnfold", f"{conv.name or conv.output[0]}_bnfold_bias"
        new_inits[w_name] = numpy_helper.from_array(scaled.astype(dtype), w_name)
        new_inits[b_name] = numpy_helper.from_array(bias.astype(dtype), b_name)
        stale.update([*bn.input[1:5], *(t for t in conv.input[1:3] if t)])
        del conv.input[:]
        conv.input.extend([bn.input[0], w_name, b_name])
        drop.add(id(bn))
        folded.append(bn.name or bn.output[0])
    if folded:
        graph.initializer.extend(new_inits.values())
        _rebuild(graph, drop, {}, stale)
    return model, folded


#: the perm that moves the q / k / v axis of a ``(B, N, S, heads, d)`` qkv tensor to the front
_QKV_PERM = [2, 0, 3, 1, 4]


def _static_shapes(model: Any, names: set[str]) -> dict[str, list[int]]:
    """Fully static shapes of the tensors ``names``: from ONNX shape inference (with data propagation), and for the
    ones it leaves open (a Reshape whose target is computed from ``Shape`` ops, as Paddle2ONNX writes) from one
    onnxruntime run on zeros, which needs every graph input static. Tensors neither can type are left out."""
    from onnx import TensorProto, helper, shape_inference

    def dims(v: Any) -> list[int] | None:
        t = v.type.tensor_type
        if not t.HasField("shape") or any(not d.HasField("dim_value") for d in t.shape.dim):
            return None
        return [int(d.dim_value) for d in t.shape.dim]

    graph = model.graph
    found: dict[str, list[int]] = {}
    elem: dict[str, int] = {}
    try:
        typed = shape_inference.infer_shapes(model, data_prop=True)
        infos = [*typed.graph.value_info, *typed.graph.input, *typed.graph.output]
    except Exception:  # noqa: BLE001 - an untypable graph: onnxruntime below, or nothing
        infos = [*graph.value_info, *graph.input, *graph.output]
    for v in infos:
        if v.name in names:
            elem[v.name] = v.type.tensor_type.elem_type
            d = dims(v)
            if d is not None:
                found[v.name] = d
    missing = sorted(names - set(found))
    inits = {i.name for i in graph.initializer}
    feeds = [i for i in graph.input if i.name not in inits]
    if not missing or any(dims(i) is None for i in feeds):
        return found
    import onnxruntime as ort

    probe = type(model)()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    for name in missing:
        if name not in outputs:
            probe.graph.output.append(helper.make_tensor_value_info(name, elem.get(name) or TensorProto.FLOAT, None))
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        feed = {
            i.name: np.zeros(dims(i), dtype=helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
            for i in feeds
        }
        values = sess.run(missing, feed)
    except Exception:  # noqa: BLE001 - a graph onnxruntime cannot run here is simply not rewritten
        return found
    found.update({n: [int(d) for d in np.shape(v)] for n, v in zip(missing, values, strict=True)})
    return found


def _int_list(graph: Any, node: Any, index: int, attr: str) -> list[int] | None:
    """A node's integer list from its input ``index`` (a constant) or, for older opsets, its attribute ``attr``;
    None when it is computed at run time or absent."""
    if len(node.input) > index and node.input[index]:
        v = _const_value(graph, node.input[index])
        return None if v is None else [int(a) for a in np.asarray(v).reshape(-1)]
    at = _attrs(node)
    return [int(a) for a in at[attr]] if attr in at else None


def split_qkv_5d(model: Any) -> tuple[Any, list[str]]:
    """Split a 5-D qkv tensor into 4-D q, k, v heads, in place; returns ``(model, rewritten Reshape names)``.

    Matched (by graph structure, not names): ``X → Reshape → R (B, N, S, h, d)`` read only by ``Transpose(perm=[2,
    0, 3, 1, 4]) → T (S, B, h, N, d)``, every reader of ``T`` one of: ``Gather(axis=0, scalar constant index i)``;
    ``Slice`` of one index ``i`` on axis 0 (constant starts / ends / axes, step 1) read only by ``Squeeze(axes=[0])``;
    ``Split(axis=0)`` into pieces of 1, each piece unused or read only by ``Squeeze(axes=[0])``. That is the
    attention of PaddleOCR's SVTR blocks (PP-OCRv4 rec: ``qkv(x).reshape((0, -1, 3, heads, C // heads))
    .transpose((2, 0, 3, 1, 4))`` then ``qkv[0]``, ``qkv[1]``, ``qkv[2]``) and timm's ``.permute(2, 0, 3, 1, 4)
    .unbind(0)``. ``R`` and ``X`` need fully static shapes (the input shape is fixed before the passes run).

    Each head tensor ``(B, h, N, d)`` taken is rebuilt from the 3-D view ``V = X as (B, N, S·h·d)`` (``X`` itself
    when it has that shape, else a Reshape, which row-major data allows) as ``Slice(V, [i·h·d, (i+1)·h·d), axis
    -1) → Reshape (B, N, h, d) → Transpose [0, 2, 1, 3]``, written under the original head tensor's name. Exact:
    ``T[i, b, j, n, e] = R[b, n, i, j, e] = V[b, n, i·h·d + j·d + e]``, the same elements in the same order, only
    data movement (no arithmetic). Why: ncnn's Mat has at most 4 dims, and pnnx refuses the 5-D permute
    ("permute 5-rank tensor is not supported yet!", then leaves ``Tensor.reshape`` / ``torch.unbind`` ncnn cannot
    run). Anything that does not match exactly (another perm, a reader of other kind, ``R`` or ``T`` a graph
    output, an unknown shape) is left untouched.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    readers = _readers(graph)
    outputs = {o.name for o in graph.output}

    def sole_reader(t: str, op: str) -> Any:
        r = readers.get(t, [])
        return r[0] if len(r) == 1 and r[0].op_type == op and t not in outputs else None

    def squeezes_axis0(t: str) -> Any:
        sq = sole_reader(t, "Squeeze")
        return sq if sq is not None and sq.input[0] == t and _int_list(graph, sq, 1, "axes") == [0] else None

    def heads_taken(t: str, s: int) -> tuple[list[tuple[int, str]], list[Any]] | None:
        """``[(index i, head tensor name)]`` and the nodes that took them from ``T``; None if any reader differs."""
        taken: list[tuple[int, str]] = []
        nodes: list[Any] = []
        for r in readers.get(t, []):
            if r.input[0] != t or t in r.input[1:]:
                return None
            if r.op_type == "Gather":
                idx = _const_value(graph, r.input[1])
                if _attrs(r).get("axis", 0) != 0 or idx is None or np.ndim(idx) != 0 or not -s <= int(idx) < s:
                    return None
                taken.append((int(idx) % s, r.output[0]))
                nodes.append(r)
            elif r.op_type == "Slice":
                starts, ends = _int_list(graph, r, 1, "starts"), _int_list(graph, r, 2, "ends")
                axes, steps = _int_list(graph, r, 3, "axes"), _int_list(graph, r, 4, "steps")
                if any(c and _const_value(graph, c) is None for c in r.input[1:]):
                    return None  # starts / ends / axes / steps computed at run time
                if starts is None or ends is None or len(starts) != 1 or (axes or [0]) not in ([0], [-5]):
                    return None
                if (steps or [1]) != [1]:
                    return None
                lo = starts[0] + s if starts[0] < 0 else starts[0]
                hi = min(ends[0] + s if ends[0] < 0 else ends[0], s)
                sq = squeezes_axis0(r.output[0])
                if not 0 <= lo < s or hi != lo + 1 or sq is None:
                    return None
                taken.append((lo, sq.output[0]))
                nodes += [r, sq]
            elif r.op_type == "Split":
                if len(r.input) > 1 and r.input[1] and _const_value(graph, r.input[1]) is None:
                    return None  # sizes computed at run time
                sizes = _int_list(graph, r, 1, "split") or [1] * len(r.output)
                if _attrs(r).get("axis", 0) not in (0, -5) or len(r.output) != s or sizes != [1] * s:
                    return None
                nodes.append(r)
                for i, piece in enumerate(r.output):
                    if not piece or (piece not in outputs and not readers.get(piece)):
                        continue
                    sq = squeezes_axis0(piece)
                    if sq is None:
                        return None
                    taken.append((i, sq.output[0]))
                    nodes.append(sq)
            else:
                return None
        return (taken, nodes) if taken else None

    candidates = []
    for rs in graph.node:
        if rs.op_type != "Reshape":
            continue
        tr = sole_reader(rs.output[0], "Transpose")
        if tr is None or list(_attrs(tr).get("perm", [])) != _QKV_PERM or tr.output[0] in outputs:
            continue
        candidates.append((rs, tr))
    if not candidates:
        return model, []
    shapes = _static_shapes(model, {t for rs, _ in candidates for t in (rs.input[0], rs.output[0])})

    drop: set[int] = set()
    before: dict[int, list[Any]] = {}  # id(Transpose) -> the nodes that take its place
    new_inits: list[Any] = []
    rewritten: list[str] = []
    for k, (rs, tr) in enumerate(candidates):
        r_shape, x_shape = shapes.get(rs.output[0]), shapes.get(rs.input[0])
        if r_shape is None or x_shape is None or len(r_shape) != 5 or 0 in r_shape:
            continue
        b, n, s, h, d = r_shape
        found = heads_taken(tr.output[0], s)
        if found is None:
            continue
        taken, took = found
        label = rs.name or rs.output[0]
        prefix = f"{label}_qkv4d{k}"
        made: list[Any] = []

        def const(name: str, values: list[int]) -> str:
            new_inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
            return name

        view = rs.input[0]
        if x_shape != [b, n, s * h * d]:
            view = f"{prefix}_view"
            made.append(helper.make_node("Reshape", [rs.input[0], const(f"{prefix}_view_shape", [b, n, s * h * d])],
                                         [view], name=f"{prefix}_view"))  # fmt: skip
        heads_shape = const(f"{prefix}_heads_shape", [b, n, h, d])
        axes = const(f"{prefix}_axes", [-1])
        first: dict[int, str] = {}
        for i, name in taken:
            if i in first:  # the same head taken twice: one copy
                made.append(helper.make_node("Identity", [first[i]], [name], name=f"{prefix}_{i}_{name}_id"))
                continue
            first[i] = name
            p = f"{prefix}_{i}"
            lo, hi = const(f"{p}_starts", [i * h * d]), const(f"{p}_ends", [(i + 1) * h * d])
            made += [
                helper.make_node("Slice", [view, lo, hi, axes], [f"{p}_slice"], name=f"{p}_slice"),
                helper.make_node("Reshape", [f"{p}_slice", heads_shape], [f"{p}_heads"], name=f"{p}_reshape"),
                helper.make_node("Transpose", [f"{p}_heads"], [name], name=f"{p}_transpose", perm=[0, 2, 1, 3]),
            ]
        drop.update(id(x) for x in (rs, tr, *took))
        before[id(tr)] = made
        rewritten.append(label)
    if rewritten:
        stale = {t for x in graph.node if id(x) in drop for t in x.input}
        graph.initializer.extend(new_inits)
        # the new nodes go where the Transpose was: after X, before every reader of the head tensors
        _rebuild(graph, drop, {}, stale, before)
    return model, rewritten


def _slice(nodes: list, inits: list, x: str, start: int, end: int, axis: int, name: str) -> str:
    from onnx import helper

    names = [f"{name}_starts", f"{name}_ends", f"{name}_axes"]
    for n, v in zip(names, (start, end, axis), strict=True):
        inits.append((n, np.array([v], dtype=np.int64)))
    nodes.append(helper.make_node("Slice", [x, *names], [f"{name}_out"], name=name))
    return f"{name}_out"


def prove_equal(original: Path, rewritten: Path, input_shape: tuple[int, ...], n: int = 3, seed: int = 0) -> float:
    """Largest |difference| over every output between two ONNX files in onnxruntime on ``n`` seeded inputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    a = ort.InferenceSession(str(original), opts, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(rewritten), opts, providers=["CPUExecutionProvider"])
    name_a, name_b = a.get_inputs()[0].name, b.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        x = rng.standard_normal(tuple(input_shape)).astype(np.float32)
        for ya, yb in zip(a.run(None, {name_a: x}), b.run(None, {name_b: x}), strict=True):
            worst = max(worst, float(np.max(np.abs(np.asarray(ya, np.float64) - np.asarray(yb, np.float64)))))
    return worst


#: pass name -> (rewrite, what it does, the op it rewrites): the ONNX-file passes a format lists in
#: :attr:`edgedeploy.registry.FormatSpec.onnx_passes`
ONNX_FILE_PASSES: dict[str, tuple[Any, str, str]] = {
    "wrap_pad": (rewrite_wrap_pad, "wrap Pad -> Slice + Concat", "Pad"),
    "qkv_5d": (split_qkv_5d, "5-D qkv Reshape + Transpose + unbind -> 4-D Slice + Reshape + Transpose", "Transpose"),
}
