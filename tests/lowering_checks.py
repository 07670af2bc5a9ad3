"""Checks shared by the families' lowering tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode


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


class MaxRank(TorchDispatchMode):
    """While inside: the largest tensor rank any aten op produced (``max_rank``), the ops seen (``ops``) and the
    transposed convolutions run (``transposed_convs``)."""

    def __init__(self) -> None:
        super().__init__()
        self.max_rank = 0
        self.ops: set[str] = set()
        self.transposed_convs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.ops.add(str(func.overloadpacket))
        if func.overloadpacket == torch.ops.aten.convolution and args[6]:  # (input, weight, bias, ..., transposed, …)
            self.transposed_convs += 1
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.max_rank = max(self.max_rank, t.dim())
        return out


def assert_rewrite_removes_high_rank(model: nn.Module, lowered: nn.Module, x: torch.Tensor, training_rank: int) -> None:
    """``lowered`` runs ``x`` with tensors of rank ≤ 4 and no SDPA, while ``model`` (the training-time module) does
    reach ``training_rank`` (so the rewrite does real work); both hold the same state-dict keys."""
    with torch.no_grad(), MaxRank() as mode:
        lowered(x)
    assert mode.max_rank <= 4
    assert not any("scaled_dot_product" in op for op in mode.ops)
    with torch.no_grad(), MaxRank() as mode:
        model(x)
    assert mode.max_rank == training_rank
    assert sorted(lowered.state_dict()) == sorted(model.state_dict())
