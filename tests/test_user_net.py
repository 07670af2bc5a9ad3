"""A user's own network (tests/fixtures/user_gcc_net.py, not in the zoo) through the generic lowering and every
exporter: no Resize and no Pad in the ONNX graph, MNN / TFLite parity, CoreML converts; and what happens without
the lowering (the evidence that the passes are needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgedeploy.errors import ExportError
from edgedeploy.export.base import ExportSettings, get_exporter
from edgedeploy.export.lowering import lower, lowering_report
from edgedeploy.runtimes.base import get_runtime
from tests.fixtures import user_gcc_net

pytestmark = pytest.mark.slow
SHAPE = user_gcc_net.INPUT_SHAPE


@pytest.fixture(scope="module")
def user_net() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    model = user_gcc_net.build()
    example = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    lowered, _ = lower(model, example, "onnx")
    return model, lowered, example


def _max_error(model: nn.Module, path: Path, runtime: str, layout: str) -> tuple[float, float]:
    """Largest abs error and smallest cosine over 3 seeded inputs, artifact in ``runtime`` vs PyTorch fp32."""
    session = get_runtime(runtime).load(path, threads=1)
    gen = torch.Generator().manual_seed(0)
    worst, cos = 0.0, 1.0
    for _ in range(3):
        x = torch.randn(SHAPE, generator=gen)
        with torch.no_grad():
            ref = model(x).numpy()
        feed = x.numpy() if layout == "NCHW" else np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1))
        got = np.asarray(session.run(feed)).reshape(ref.shape)
        worst = max(worst, float(np.abs(got - ref).max()))
        cos = min(cos, float((got * ref).sum() / (np.linalg.norm(got) * np.linalg.norm(ref))))
    return worst, cos


def test_lowering_record(user_net: tuple[nn.Module, nn.Module, torch.Tensor]) -> None:
    _, lowered, _ = user_net
    report = lowering_report(lowered)
    by_pass = {p["pass"]: p for p in report["passes"]}
    folds = by_pass["fold_constants"]["rewrites"]
    assert len(folds) == 8 and all("interpolate" in r["was"] for r in folds)  # 4 GCCs x (kernel, PE)
    circ = [r["was"] for r in by_pass["circular_to_slices"]["rewrites"]]
    assert sum(w.startswith("F.pad(circular") for w in circ) == 4
    assert sum(w.startswith("roll(") for w in circ) == 4
    assert sum("padding_mode=circular" in w for w in circ) == 2
    assert all(p["check"]["max_abs_error"] <= 1e-5 for p in report["passes"])


def test_onnx_has_no_resize_and_no_pad(user_net: tuple[nn.Module, nn.Module, torch.Tensor], tmp_path: Path) -> None:
    import onnx

    model, lowered, example = user_net
    exported = get_exporter("onnx").export(lowered, example, tmp_path / "user.onnx", ExportSettings())
    graph = onnx.load(str(exported.path)).graph
    ops = [n.op_type for n in graph.node]
    assert "Resize" not in ops and "Pad" not in ops
    inits = {i.name for i in graph.initializer}
    gcc_convs = [n for n in graph.node if n.op_type == "Conv" and n.input[1] in inits and any(
        a.name == "group" and a.i == 32 for a in n.attribute)]  # fmt: skip
    assert len(gcc_convs) == 4 + 2  # 4 GCCs and 2 circular 3x3 depthwise convs, all with constant kernels
    worst, cos = _max_error(model, exported.path, "onnxruntime", "NCHW")
    assert worst < 1e-4 and cos > 0.9999


def test_mnn_parity(user_net: tuple[nn.Module, nn.Module, torch.Tensor], tmp_path: Path) -> None:
    model, lowered, example = user_net
    exported = get_exporter("mnn").export(lowered, example, tmp_path / "user.mnn", ExportSettings())
    worst, cos = _max_error(model, exported.path, "mnn", exported.input_layout)
    assert worst < 1e-3 and cos > 0.9999


def test_tflite_parity(user_net: tuple[nn.Module, nn.Module, torch.Tensor], tmp_path: Path) -> None:
    model, lowered, example = user_net
    exporter = get_exporter("tflite")
    exported = exporter.export(lowered, example, tmp_path / "user.tflite", ExportSettings())
    census = exporter.op_census(exported.path)
    assert "RESIZE_BILINEAR" not in census and "MIRROR_PAD" not in census
    worst, cos = _max_error(model, exported.path, "litert", exported.input_layout)
    assert worst < 1e-3 and cos > 0.9999


def test_coreml_converts(user_net: tuple[nn.Module, nn.Module, torch.Tensor], tmp_path: Path) -> None:
    pytest.importorskip("coremltools")
    _, lowered, example = user_net
    exporter = get_exporter("coreml")
    exported = exporter.export(lowered, example, tmp_path / "user.mlpackage", ExportSettings())
    census = exporter.op_census(exported.path)
    assert exported.path.exists() and census.get("conv", 0) == 13 and "pad" not in census


def test_without_lowering_the_exports_fail(user_net: tuple[nn.Module, nn.Module, torch.Tensor], tmp_path: Path) -> None:
    """``--lowering none``: the default ONNX exporter cannot export the run-time kernel, the dynamo one writes
    Pad(wrap) that MNN refuses, and CoreML cannot convert circular padding."""
    model, _, example = user_net
    with pytest.raises(ExportError, match="kernel of unknown shape"):
        get_exporter("onnx").export(model, example, tmp_path / "none.onnx", ExportSettings())
    with pytest.raises(ExportError, match="Pad"):
        get_exporter("mnn").export(model, example, tmp_path / "none.mnn", ExportSettings(opset=18))
    pytest.importorskip("coremltools")
    with pytest.raises(ExportError, match="Pad mode"):
        get_exporter("coreml").export(model, example, tmp_path / "none.mlpackage", ExportSettings())
