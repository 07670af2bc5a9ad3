"""Shared pieces of the fault-injection and fuzz suites: a tiny real ONNX model, result files, snapshots."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.results.result import BenchResult


def tiny_onnx(path: Path, size: int = 32, classes: int = 8) -> Path:
    """A real ONNX model (Conv 3→8, GlobalAveragePool, Flatten) with a static (1, 3, size, size) input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((classes, 3, 3, 3)).astype(np.float32), "W")
    nodes = [
        helper.make_node("Conv", ["input", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def write_manifest_for(artifact: Path, shape: list[int] | None = None, model: str = "tiny") -> Path:
    """A valid manifest beside ``artifact`` (its real sha256), declaring ``shape`` as the input shape."""
    from edgedeploy.export.manifest import Manifest, TensorSpec, write_manifest

    m = Manifest(
        model=model,
        format="onnx",
        artifact=artifact.name,
        sha256=hashlib.sha256(artifact.read_bytes()).hexdigest(),
        size_bytes=artifact.stat().st_size,
        input=TensorSpec(name="input", shape=shape or [1, 3, 32, 32]),
        outputs=["logits"],
        exporter="hand-made for tests",
        opset=17,
    )
    return write_manifest(m, artifact)


#: what :func:`result` records unless told otherwise
RESULT_FIELDS: dict[str, Any] = {
    "format": "onnx",
    "runtime": "onnxruntime",
    "device": "local",
    "threads": 1,
    "warmup": 0,
}


def result(samples: list[float], model: str = "tiny", commit: str = "c0ffee1", **fields: Any) -> BenchResult:
    """A result of ``samples`` (ms); ``fields`` override :data:`RESULT_FIELDS` (``runtime="mnn"``, ``threads=4`` …)."""
    return BenchResult(
        model=model, iterations=len(samples), samples_ms=samples, git_commit=commit, **{**RESULT_FIELDS, **fields}
    )


def write_result(path: Path, samples: list[float], **kw: str) -> Path:
    path.write_text(result(samples, **kw).to_json())
    return path


def lognormal(seed: int, n: int, median: float = 10.0) -> list[float]:
    rng = np.random.default_rng(seed)
    return (median * np.exp(rng.normal(0, 0.03, n))).tolist()


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (to prove nothing stored was damaged)."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.is_symlink():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def one_line(stderr: str) -> str:
    """The single non-empty stderr line (warnings excepted); fails on a traceback or several lines."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    return lines[0]


def load_json_lines(text: str) -> dict:
    return json.loads(text)
