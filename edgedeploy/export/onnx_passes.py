"""ONNX-level lowering for graphs edgedeploy did not export itself (an ``.onnx`` file a user brings).

:func:`rewrite_wrap_pad` replaces every ``Pad(mode="wrap")`` — what torch's default (dynamo) exporter writes for
``F.pad(mode="circular")`` and ``nn.Conv2d(padding_mode="circular")`` — with ``Slice`` + ``Concat``, one axis
at a time (``concat(x[-before:], x, x[:after])`` along the axis, which is exactly numpy's ``np.pad(mode="wrap")``
for pads no larger than the axis). MNN's converter refuses wrap padding ("MNN only support ['constant',
'reflect'] Pad mode"); Slice and Concat every converter has. :func:`prove_equal` runs the original and the
rewritten graph in onnxruntime on seeded inputs and reports the largest difference.
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
