"""edgedeploy's onnxruntime session settings: the fusions it turns off are really off, and only those."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgedeploy.runtimes.onnxruntime_rt import DISABLED_OPTIMIZERS, create_session, session_options  # noqa: E402


def _add_then_layernorm(path: Path) -> Path:
    """``LayerNorm(a + b)`` over the last axis of ``(1, 16, 32)``: the pattern SkipLayerNormFusion rewrites."""
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["s"]),
            helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-5),
        ],
        "add_ln",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 16, 32]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 32])],
        [
            numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "gamma"),
            numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "beta"),
        ],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _optimized_ops(src: Path, out: Path, ours: bool) -> list[str]:
    opts = session_options(ort, 1)
    opts.optimized_model_filepath = str(out)
    if ours:
        create_session(ort, src, opts)
    else:
        ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(out)).graph.node]


def test_skip_layernorm_fusion_is_off_in_our_sessions_and_on_by_default(tmp_path: Path) -> None:
    assert "SkipLayerNormFusion" in DISABLED_OPTIMIZERS
    src = _add_then_layernorm(tmp_path / "add_ln.onnx")
    default_ops = _optimized_ops(src, tmp_path / "default.onnx", ours=False)
    our_ops = _optimized_ops(src, tmp_path / "ours.onnx", ours=True)
    assert "SkipLayerNormalization" in default_ops  # onnxruntime fuses it by default: the setting does work
    assert our_ops == ["Add", "LayerNormalization"]
    # same numbers either way
    feed = {"a": np.ones((1, 16, 32), np.float32), "b": np.arange(512, dtype=np.float32).reshape(1, 16, 32) / 512}
    ours = create_session(ort, src, session_options(ort, 1)).run(None, feed)[0]
    default = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert np.allclose(ours, default, atol=1e-5)


def test_create_session_names_the_file_it_cannot_load(tmp_path: Path) -> None:
    from edgedeploy.errors import ArtifactError

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match=r"broken\.onnx"):
        create_session(ort, bad, session_options(ort, 1))
