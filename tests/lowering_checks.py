"""Checks shared by the families' lowering tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn


def assert_4d_onnx_matches(model: nn.Module, lowered: nn.Module, x: torch.Tensor, path: Path) -> None:
    """Export ``lowered`` (TorchScript exporter, opset 17) to ``path``: every tensor of the graph is at most 4-D and
    onnxruntime's output equals ``model(x)`` (atol 1e-4)."""
    onnx = pytest.importorskip("onnx")
    torch.onnx.export(lowered, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    ranks = [len(v.type.tensor_type.shape.dim) for v in list(graph.value_info) + list(graph.output)]
    assert ranks and max(ranks) <= 4
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    assert torch.allclose(torch.from_numpy(y), ref, atol=1e-4)
