"""Parity bisection: a fault injected into one weight of an exported artifact is traced to its module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from edgedeploy.errors import ConfigError
from edgedeploy.export.bisect import bisect_artifact, map_module_outputs, node_module, scope_to_module
from edgedeploy.export.recheck import module_for as _module_for
from edgedeploy.options import ExportOptions

MODEL = "mobilevit_xxs"


def test_scope_names_map_to_module_names() -> None:
    assert scope_to_module(["layer_1", "layer_1.0", "block", "conv"]) == "layer_1.0.block.conv"
    assert scope_to_module(["a", "a.2", "ffn", "ffn.0"]) == "a.2.ffn.0"
    assert (
        node_module("/layer_3/layer_3.1/local_rep/conv_1x1/block/conv/Conv")
        == "layer_3.1.local_rep.conv_1x1.block.conv"
    )
    assert node_module("Conv_12") is None


def test_module_output_is_the_tensor_that_leaves_its_scope() -> None:
    nodes = [
        ("/attn/qkv/MatMul", ["x"], ["q"]),
        ("/attn/out/MatMul", ["q"], ["o"]),
        ("/attn/Transpose", ["q"], ["kt"]),  # used inside the scope only, and last in graph order
        ("/attn/Mul", ["kt"], ["junk"]),
        ("/Add", ["o", "x"], ["y"]),
    ]
    mapping = map_module_outputs(nodes, {"attn", "attn.qkv", "attn.out"}, {"y"})
    assert mapping["attn"] == "o" and mapping["attn.out"] == "o" and mapping["attn.qkv"] == "q"


def test_bisection_refuses_formats_without_scopes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="module scopes"):
        bisect_artifact(None, tmp_path / "x.tflite", "tflite", (1, 3, 32, 32))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgedeploy.export.pipeline import export_model

    out = tmp_path_factory.mktemp("bisect")
    return export_model(MODEL, "onnx", out, ExportOptions(parity=False)).artifact


def _perturb(artifact: Path, dst: Path, node_index_fraction: float) -> str:
    """Scale up one weight of the Conv at the given fraction of the graph; returns that node's module."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(artifact))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    node = convs[int(len(convs) * node_index_fraction)]
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    w = numpy_helper.to_array(init).copy()
    w.flat[w.size // 2] += 10.0 * float(np.abs(w).max())
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(dst))
    from edgedeploy.data import real_image
    from edgedeploy.export.bisect import export_node_modules

    _, lowered = _module_for(MODEL, 256, None, "default", "onnx")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    module = export_node_modules(lowered, real_image(256), opset)[0].get(node.name) or node_module(node.name)
    assert module is not None
    return module


@pytest.mark.slow
def test_healthy_artifact_has_no_culprit(onnx_artifact: Path) -> None:
    _, lowered = _module_for(MODEL, 256, None, "default", "onnx")
    report = bisect_artifact(lowered, onnx_artifact, "onnx", (1, 3, 256, 256))
    assert report.culprit is None
    assert len(report.probes) > 100  # most modules are probed
    assert max(p.rel_error for p in report.probes if p.rel_error is not None and not p.bad) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("where", [0.2, 0.55, 0.9])
def test_fault_injection_names_the_module(onnx_artifact: Path, tmp_path: Path, where: float) -> None:
    bad = tmp_path / "faulty.onnx"
    expected = _perturb(onnx_artifact, bad, where)
    _, lowered = _module_for(MODEL, 256, None, "default", "onnx")
    report = bisect_artifact(lowered, bad, "onnx", (1, 3, 256, 256))
    assert report.culprit == expected, (report.culprit, expected)
    # the torch.export-based exporter folds a BatchNorm into the conv before it: the fused node carries the
    # BatchNorm's scope, and that module's output is the first one the bad weight changes
    assert report.culprit_type in ("Conv2d", "BatchNorm2d")
    idx = [p.module for p in report.probes].index(expected)
    assert all(not p.bad for p in report.probes[:idx] if p.note == "")  # nothing before it persists


@pytest.mark.slow
def test_parity_command_bisects_a_failing_artifact(onnx_artifact: Path, tmp_path: Path) -> None:
    bad = tmp_path / "faulty.onnx"
    expected = _perturb(onnx_artifact, bad, 0.5)
    proc = run_cli("parity", str(bad), "--model", MODEL, "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]  # parity failed
    out = json.loads(proc.stdout)
    assert out["parity"]["status"] == "failed"
    assert out["bisection"]["culprit"] == expected
    # the healthy artifact (with its manifest) passes and is not bisected
    ok = run_cli("parity", str(onnx_artifact), "--json")
    assert ok.returncode == 0, ok.stderr[-2000:]
    res = json.loads(ok.stdout)
    assert res["parity"]["status"] == "passed" and res["bisection"] is None


@pytest.mark.slow
def test_mnn_bisection_on_a_healthy_artifact(tmp_path: Path) -> None:
    from edgedeploy.export.pipeline import export_model

    art = export_model(MODEL, "mnn", tmp_path, ExportOptions(parity=False)).artifact
    _, lowered = _module_for(MODEL, 256, None, "default", "mnn")
    report = bisect_artifact(lowered, art, "mnn", (1, 3, 256, 256))
    assert report.culprit is None
    assert len([p for p in report.probes if p.rel_error is not None]) > 50
