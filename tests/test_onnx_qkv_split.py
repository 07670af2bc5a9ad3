"""The ONNX pass :func:`edgedeploy.export.onnx_passes.split_qkv_5d` on hand-written graphs (onnx.helper).

The pattern is PaddleOCR's SVTR attention as Paddle2ONNX writes it (PP-OCRv4 rec): ``qkv (B, N, 3·h·d) → Reshape
(B, N, 3, h, d) → Transpose [2, 0, 3, 1, 4]`` and q, k, v taken on axis 0 (``Slice`` + ``Squeeze``; torch writes
``Gather`` or ``Split`` + ``Squeeze``), then ``softmax(q @ kᵀ) @ v``. The rewritten graph must give the very same
outputs in onnxruntime (data movement only, so bitwise) and hold no tensor of rank 5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

N, H, D = 8, 2, 4  # tokens, heads, head dim
C = H * D


def _const(name: str, values: Any, dtype: Any = np.int64) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def qkv_graph(readers: str, x_2d: bool = False, computed_shape: bool = False, perm: tuple[int, ...] = (2, 0, 3, 1, 4),
              extra_reader: bool = False) -> Any:  # fmt: skip
    """x (1, N, C) → MatMul (C, 3C) → qkv → [Reshape to (N, 3C)] → Reshape (1, N, 3, H, D) → Transpose(perm) →
    q, k, v by ``readers`` ("gather", "slice", "split") → attention → y (1, H, N, D).

    ``x_2d``: the qkv tensor is 2-D (N, 3C), as after a Gemm; ``computed_shape``: the 5-D target is computed at run
    time from ``Shape`` (Shape → Cast float → Cast int64 → Slice → Concat, which shape inference cannot follow);
    ``extra_reader``: the 5-D tensor also feeds a ReduceSum (a reader the pass does not know)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    inits = [_const("w", rng.standard_normal((C, 3 * C)) / np.sqrt(C), np.float32)]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["qkv"], name="qkv")]
    src = "qkv"
    if x_2d:
        inits.append(_const("flat", [N, 3 * C]))
        nodes.append(helper.make_node("Reshape", ["qkv", "flat"], ["qkv2d"], name="flat"))
        src = "qkv2d"
    if computed_shape:
        inits += [_const("s0", [0]), _const("s1", [1]), _const("rest", [-1, 3, H, D])]
        nodes += [
            helper.make_node("Shape", ["x"], ["xs"]),
            helper.make_node("Cast", ["xs"], ["xs_f"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["xs_f"], ["xs_i"], to=TensorProto.INT64),
            helper.make_node("Slice", ["xs_i", "s0", "s1"], ["batch"]),
            helper.make_node("Concat", ["batch", "rest"], ["target"], axis=0),
        ]
    else:
        inits.append(_const("target", [1, -1, 3, H, D]))
    nodes += [
        helper.make_node("Reshape", [src, "target"], ["r5"], name="split_heads"),
        helper.make_node("Transpose", ["r5"], ["t5"], name="move_qkv", perm=list(perm)),
    ]
    q, k, v = "q", "k", "v"
    if readers == "gather":
        for i, name in enumerate((q, k, v)):
            inits.append(_const(f"i{i}", i))
            nodes.append(helper.make_node("Gather", ["t5", f"i{i}"], [name], axis=0))
    elif readers == "slice":  # Paddle2ONNX: Slice [i, i+1) on axis 0, then Squeeze(axes=[0]) (opset 12 attribute)
        for i, name in enumerate((q, k, v)):
            inits += [_const(f"st{i}", [i]), _const(f"en{i}", [i + 1]), _const(f"ax{i}", [0])]
            nodes += [
                helper.make_node("Slice", ["t5", f"st{i}", f"en{i}", f"ax{i}"], [f"{name}5"]),
                helper.make_node("Squeeze", [f"{name}5"], [name], axes=[0]),
            ]
    else:  # torch's unbind: Split into ones, Squeeze each
        nodes.append(helper.make_node("Split", ["t5"], ["q5", "k5", "v5"], axis=0, split=[1, 1, 1]))
        nodes += [helper.make_node("Squeeze", [f"{n}5"], [n], axes=[0]) for n in (q, k, v)]
    inits.append(_const("scale", 1.0 / np.sqrt(D), np.float32))
    nodes += [
        helper.make_node("Transpose", [k], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", [q, "kt"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", v], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, H, N, D])]
    if extra_reader:
        nodes.append(helper.make_node("ReduceSum", ["t5"], ["total"], keepdims=0))
        outputs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, []))
    graph = helper.make_graph(nodes, "svtr_attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                              [1, N, C])], outputs, inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 7
    return model


def run_all(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor a node writes, by name (onnxruntime, each exposed as a graph output)."""
    import onnxruntime as ort
    from onnx import helper

    probe = type(model)()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    names = [t for n in probe.graph.node for t in n.output if t]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in names if t not in have)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x}), strict=True))


def outputs(model: Any, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def rewrite(model: Any) -> tuple[Any, Any, list[str]]:
    """``(a copy of the model as it was, the rewritten model (checked), rewritten names)``."""
    import onnx

    from edgedeploy.export.onnx_passes import split_qkv_5d

    before = type(model)()
    before.CopyFrom(model)
    after, names = split_qkv_5d(model)
    onnx.checker.check_model(after)
    return before, after, names


@pytest.mark.parametrize(
    ("readers", "x_2d", "computed_shape"),
    [("slice", False, False), ("gather", False, False), ("split", False, False), ("slice", True, False),
     ("slice", False, True), ("split", True, True)],
)  # fmt: skip
def test_qkv_split_is_exact_and_rank_4(readers: str, x_2d: bool, computed_shape: bool) -> None:
    """Each reader form, a 2-D qkv tensor and a run-time 5-D target: one Reshape rewritten, the outputs bitwise
    equal on random inputs, every tensor of rank <= 4 afterwards (rank 5 before)."""
    before, after, names = rewrite(qkv_graph(readers, x_2d, computed_shape))
    assert names == ["split_heads"]
    ops = [n.op_type for n in after.graph.node]
    assert ops.count("Slice") >= 3 and not {"Gather", "Split", "Squeeze"} & set(ops)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.standard_normal((1, N, C)).astype(np.float32)
        for ya, yb in zip(outputs(before, x), outputs(after, x), strict=True):
            np.testing.assert_array_equal(ya, yb)
    x = rng.standard_normal((1, N, C)).astype(np.float32)
    assert max(v.ndim for v in run_all(before, x).values()) == 5
    assert max(v.ndim for v in run_all(after, x).values()) <= 4


def test_computed_target_needs_the_onnxruntime_shapes() -> None:
    """Shape inference cannot type the 5-D tensor when its target comes through Casts (as in Paddle2ONNX's files):
    the pass then reads the shapes from one onnxruntime run, and still rewrites."""
    from onnx import shape_inference

    model = qkv_graph("slice", computed_shape=True)
    typed = shape_inference.infer_shapes(model, data_prop=True)
    r5 = next((v for v in typed.graph.value_info if v.name == "r5"), None)
    t = r5.type.tensor_type if r5 is not None else None
    assert t is None or not t.HasField("shape") or any(not d.HasField("dim_value") for d in t.shape.dim)
    _, _, names = rewrite(model)
    assert names == ["split_heads"]


@pytest.mark.parametrize(
    "kwargs", [{"perm": (2, 0, 1, 3, 4)}, {"perm": (0, 2, 3, 1, 4)}, {"extra_reader": True}],
    ids=["other-perm", "batch-first-perm", "unknown-reader"],
)  # fmt: skip
def test_anything_else_is_left_untouched(kwargs: dict[str, Any]) -> None:
    """Another perm, or a 5-D tensor with a reader the pass does not know: no rewrite, the graph as it was."""
    model = qkv_graph("slice", **kwargs)
    before, after, names = rewrite(model)
    assert names == []
    assert after.SerializeToString() == before.SerializeToString()


def test_pass_is_registered_for_ncnn_only() -> None:
    """ncnn lists the pass; MNN and ONNX (which run 5-D tensors) do not."""
    from edgedeploy.export.onnx_passes import ONNX_FILE_PASSES, split_qkv_5d
    from edgedeploy.registry import format_spec

    assert ONNX_FILE_PASSES["qkv_5d"][0] is split_qkv_5d
    assert "qkv_5d" in format_spec("ncnn").onnx_passes
    assert "qkv_5d" not in format_spec("mnn").onnx_passes and "qkv_5d" not in format_spec("onnx").onnx_passes


def test_prepare_for_ncnn_records_the_rewrite(tmp_path: Path) -> None:
    """Through :func:`edgedeploy.export.onnx_source.prepare` (what ``export model.onnx --to ncnn`` runs): the pass
    is recorded with its proven max abs error (0), and the prepared file has no 5-D tensor."""
    import onnx

    from edgedeploy.export.onnx_source import prepare

    src = tmp_path / "svtr_attn_v4.onnx"
    onnx.save(qkv_graph("slice", computed_shape=True), str(src))
    prepared, info = prepare(src, (1, N, C), "ncnn", tmp_path)
    assert info["rewritten"] == ["split_heads"] and info["passes"][0]["max_abs_error"] == 0.0
    x = np.random.default_rng(2).standard_normal((1, N, C)).astype(np.float32)
    assert max(v.ndim for v in run_all(onnx.load(str(prepared)), x).values()) <= 4
    (tmp_path / "mnn").mkdir()
    _, mnn_info = prepare(src, (1, N, C), "mnn", tmp_path / "mnn")
    assert mnn_info["rewritten"] == []
