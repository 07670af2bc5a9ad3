"""A user's own network (tests/fixtures/user_gcc_net.py, not in the zoo) through the public API and the generic
lowering: no Resize and no Pad in the ONNX graph, MNN / TFLite parity passed, CoreML converts; and what happens
with ``lowering="none"`` (the evidence that the passes are needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgedeploy
from edgedeploy.errors import ExportError
from tests.fixtures import user_gcc_net

pytestmark = pytest.mark.slow
SHAPE = user_gcc_net.INPUT_SHAPE
SPEC = f"{Path(user_gcc_net.__file__).resolve()}:build"


def _manifest(outcome: edgedeploy.api.ExportOutcome) -> dict:
    return json.loads(outcome.manifest_path.read_text())


def _check_lowering_entry(lowering: dict) -> None:
    by_pass = {p["pass"]: p for p in lowering["passes"]}
    folds = by_pass["fold_constants"]["rewrites"]
    assert len(folds) == 8 and all("interpolate" in r["was"] for r in folds)  # 4 GCCs x (kernel, PE)
    circ = [r["was"] for r in by_pass["circular_to_slices"]["rewrites"]]
    assert sum(w.startswith("F.pad(circular") for w in circ) == 4
    assert sum(w.startswith("roll(") for w in circ) == 4
    assert sum("padding_mode=circular" in w for w in circ) == 2
    assert all(p["check"]["max_abs_error"] <= 1e-5 for p in lowering["passes"])
    assert lowering["rewritten"] == ["<model>"] and lowering["check"]["max_abs_error"] <= 1e-5


def test_onnx_has_no_resize_and_no_pad(tmp_path: Path) -> None:
    import onnx

    outcome = edgedeploy.export(user_gcc_net.build(), "onnx", input_shape=SHAPE, out=tmp_path, name="user")
    assert outcome.parity.passed is True
    graph = onnx.load(str(outcome.artifact)).graph
    ops = [n.op_type for n in graph.node]
    assert "Resize" not in ops and "Pad" not in ops
    inits = {i.name for i in graph.initializer}
    gcc_convs = [n for n in graph.node if n.op_type == "Conv" and n.input[1] in inits and any(
        a.name == "group" and a.i == 32 for a in n.attribute)]  # fmt: skip
    assert len(gcc_convs) == 4 + 2  # 4 GCCs and 2 circular 3x3 depthwise convs, all with constant kernels
    _check_lowering_entry(_manifest(outcome)["lowering"])


def test_mnn_parity_from_a_spec(tmp_path: Path) -> None:
    outcome = edgedeploy.export(SPEC, "mnn", input_shape=SHAPE, out=tmp_path)
    assert outcome.parity.passed is True, outcome.parity.failures
    assert outcome.parity.top1_agreement is None  # a per-pixel map: top-1 is n/a
    m = _manifest(outcome)
    assert m["parity"]["outputs"][0]["shape"] == [1, 4, 96, 160]
    _check_lowering_entry(m["lowering"])


def test_tflite_parity(tmp_path: Path) -> None:
    outcome = edgedeploy.export(user_gcc_net.build(), "tflite", input_shape=SHAPE, out=tmp_path, name="user")
    assert outcome.parity.passed is True, outcome.parity.failures
    census = _manifest(outcome)["op_census"]
    assert "RESIZE_BILINEAR" not in census and "MIRROR_PAD" not in census


def test_coreml_converts(tmp_path: Path) -> None:
    pytest.importorskip("coremltools")
    outcome = edgedeploy.export(user_gcc_net.build(), "coreml", input_shape=SHAPE, out=tmp_path, name="user")
    census = _manifest(outcome)["op_census"]
    assert outcome.artifact.exists() and census.get("conv", 0) == 13 and "pad" not in census
    assert outcome.parity.passed is None  # prediction needs macOS; never reported as a pass here


def test_without_lowering_the_exports_fail(tmp_path: Path) -> None:
    """``lowering="none"``: the TorchScript exporter (opset 17) cannot export the run-time kernel, the dynamo one
    (the default) writes Pad(wrap) that MNN refuses, and CoreML cannot convert circular padding."""
    net = user_gcc_net.build()
    with pytest.raises(ExportError, match="kernel of unknown shape"):
        edgedeploy.export(net, "onnx", input_shape=SHAPE, out=tmp_path, name="n", lowering="none", opset=17)
    with pytest.raises(ExportError, match="Pad"):
        edgedeploy.export(net, "mnn", input_shape=SHAPE, out=tmp_path, name="n", lowering="none")
    pytest.importorskip("coremltools")
    with pytest.raises(ExportError, match="Pad mode"):
        edgedeploy.export(net, "coreml", input_shape=SHAPE, out=tmp_path, name="n", lowering="none", parity=False)
