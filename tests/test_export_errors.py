"""Unsupported ops are named (op, and node where the tool allows) by the real exporters, not by canned errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgedeploy.errors import UnsupportedOpError
from edgedeploy.export.mnn import onnx_to_mnn
from edgedeploy.export.onnx import torch_to_onnx


class SpectralNet(torch.nn.Module):
    """A module using an op the TorchScript ONNX exporter cannot lower (2-D real FFT)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(x).abs()


def test_onnx_export_names_the_unsupported_op(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        torch_to_onnx(SpectralNet(), torch.randn(1, 3, 8, 8), tmp_path / "m.onnx", opset=17)
    assert info.value.op == "aten::fft_rfft2"
    assert "aten::fft_rfft2" in str(info.value) and info.value.exit_code == 4


def test_mnn_conversion_names_the_unsupported_op_and_node(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 2])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 2])
    node = helper.make_node("DFT", ["input"], ["out"], name="/spectral/DFT_0", axis=1)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    src = tmp_path / "dft.onnx"
    onnx.save(model, str(src))
    with pytest.raises(UnsupportedOpError) as info:
        onnx_to_mnn(src, tmp_path / "dft.mnn")
    assert info.value.op == "DFT" and info.value.node == "/spectral/DFT_0"
    assert "op DFT at node /spectral/DFT_0" in str(info.value)
