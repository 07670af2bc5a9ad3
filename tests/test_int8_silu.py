"""ONNX full-integer int8: each SiLU ``x · sigmoid(x)`` is one float ``com.microsoft.QuickGelu``, not
QLinearSigmoid + QLinearMul (:func:`edgedeploy.export.quantize.fuse_silu`); other Sigmoids are left alone.

The graph tests build ONNX models with ``onnx.helper`` and run them in onnxruntime before and after the rewrite (the
same function); the export test quantizes a small SiLU net end to end and checks the artifact's ops and parity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from edgedeploy.export.pipeline import export_model
from edgedeploy.export.quantize import fuse_silu
from edgedeploy.options import ExportOptions


def _model(nodes: list, outputs: list[str]) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    graph = helper.make_graph(nodes, "g", [x], outs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def test_silu_becomes_quickgelu_with_the_same_outputs() -> None:
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
        helper.make_node("Mul", ["s", "x"], ["y"], name="silu"),  # sigmoid first: either operand order
        helper.make_node("Relu", ["y"], ["out"], name="relu"),
    ]
    model = _model(nodes, ["out"])
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32) * 4
    before = _run(model, x)
    assert fuse_silu(model) == 1
    ops = [(n.op_type, n.domain, n.name) for n in model.graph.node]
    assert ops == [("QuickGelu", "com.microsoft", "silu"), ("Relu", "", "relu")]
    assert any(o.domain == "com.microsoft" for o in model.opset_import)
    after = _run(model, x)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5, atol=1e-6)


def test_a_sigmoid_read_elsewhere_or_gating_another_tensor_is_left_alone() -> None:
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
        helper.make_node("Mul", ["x", "s"], ["y"], name="silu"),
        helper.make_node("Add", ["s", "y"], ["out"], name="add"),  # s has a second reader
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["r"], ["g"], name="gate"),
        helper.make_node("Mul", ["x", "g"], ["out2"], name="attn"),  # x · sigmoid(relu(x)): not a SiLU
    ]
    model = _model(nodes, ["out", "out2"])
    assert fuse_silu(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Sigmoid", "Mul", "Add", "Relu", "Sigmoid", "Mul"]
    assert all(o.domain != "com.microsoft" for o in model.opset_import)


@pytest.mark.slow
def test_int8_onnx_export_computes_silu_in_float(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 16, 3, padding=1), nn.SiLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()  # fmt: skip
    opts = ExportOptions(precision="int8")
    outcome = export_model(net, "onnx", tmp_path, opts, input_shape=(1, 3, 64, 64), name="silu_net")
    assert outcome.parity.passed is True
    graph = onnx.load(str(outcome.artifact)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuickGelu") == 2 and "Sigmoid" not in ops and "QLinearSigmoid" not in ops
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    readers = {i: n.op_type for n in graph.node for i in n.input}
    silus = [n for n in graph.node if n.op_type == "QuickGelu"]
    # the stem conv on the RGB input stays float and feeds the first one directly; the second reads int8
    assert [made_by[n.input[0]] for n in silus] == ["Conv", "DequantizeLinear"]
    assert readers[silus[0].output[0]] == "QuantizeLinear"  # quantized for the int8 conv that follows
    assert "QuickGelu" in outcome.manifest.model_extra["quantization"]["method"]
