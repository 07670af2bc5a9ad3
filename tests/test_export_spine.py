"""End to end on the real architectures: export → manifest → parity → bench, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgedeploy.errors import ArtifactError
from edgedeploy.export.manifest import read_manifest
from tests.conftest import run_cli

MODELS = ["edgeformer_s", "mobilevit_s"]
FORMATS = ["onnx", "mnn"]
MANIFEST_FIELDS = {
    "model", "format", "precision", "input", "outputs", "exporter", "opset", "tool_versions", "sha256",
    "size_bytes", "op_census", "parity", "command_line", "lowering",
}  # fmt: skip


def export(model: str, fmt: str, out: Path, *extra: str) -> tuple[int, dict, str]:
    proc = run_cli("export", model, "--to", fmt, "--out", str(out), "--json", *extra)
    payload = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, payload, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("model", MODELS)
def test_export_parity_passes(model: str, fmt: str, spine_artifacts: Path) -> None:
    code, out, err = export(model, fmt, spine_artifacts)
    assert code == 0, err
    assert out["parity"]["status"] == "passed" and out["parity"]["passed"] is True
    assert out["parity"]["cosine_similarity"] > 0.9999
    assert out["parity"]["inputs"][0] == "grace_hopper.jpg" and len(out["parity"]["inputs"]) == 5
    artifact = Path(out["artifact"])
    assert artifact.is_file() and artifact.suffix == f".{fmt}"
    manifest = json.loads(Path(out["manifest"]).read_text())
    assert MANIFEST_FIELDS <= set(manifest)
    assert manifest["input"] == {"name": "input", "shape": [1, 3, 256, 256], "layout": "NCHW", "dtype": "float32"}
    assert manifest["size_bytes"] == artifact.stat().st_size
    assert manifest["status"] == "parity passed"
    assert sum(manifest["op_census"].values()) > 50
    assert read_manifest(artifact) is not None  # sha256 verifies


@pytest.mark.slow
def test_edgeformer_onnx_has_no_resize_and_gcc_is_unrolled(spine_artifacts: Path) -> None:
    """onnxruntime's GCC form: per block one GCC-V and one GCC-H over all channels, each a zero-padded depth-wise
    conv with a 2n - 1-tap kernel (no Split, Slice or spatial Concat); see nn.forms.gcc.UnrolledGCCBlock."""
    import onnx

    code, out, err = export("edgeformer_s", "onnx", spine_artifacts)
    assert code == 0, err
    graph = onnx.load(out["artifact"]).graph
    ops = [n.op_type for n in graph.node]
    assert "Resize" not in ops and "Slice" not in ops and "Split" not in ops
    inits = {i.name: list(i.dims) for i in graph.initializer}
    unrolled = []
    for n in graph.node:
        w = inits.get(n.input[1]) if n.op_type == "Conv" else None
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if w and group == w[0] > 1 and w[1] == 1 and 1 in w[2:] and max(w[2:]) > 1 and max(w[2:]) % 2 == 1:
            unrolled.append(max(w[2:]))
    # EdgeFormer-S at 256: 2 + 4 + 3 blocks on 32, 16, 8 features -> kernels of 63, 31 and 15 taps
    assert sorted(unrolled) == [15] * 6 + [31] * 8 + [63] * 4, sorted(unrolled)
    # every grouped conv is depth-wise (the frames' channel-multiplier 3x3 and grouped 1x1 convs rewritten:
    # nn.edgeformer.ReplicatedDepthwise / dense_pointwise), the channel attention pools with AveragePool
    grouped = [
        (n.name, inits[n.input[1]][:2], a.i) for n in graph.node if n.op_type == "Conv"
        for a in n.attribute if a.name == "group" and a.i > 1
    ]  # fmt: skip
    assert grouped and all(w == [g, 1] for _, w, g in grouped), [x for x in grouped if x[1] != [x[2], 1]]
    assert ops.count("AveragePool") == 9 and ops.count("ReduceMean") == 1  # 9 GCC blocks; the classifier's pool


@pytest.mark.slow
def test_both_onnx_exporter_paths(tmp_path: Path) -> None:
    """opset 17 uses the TorchScript exporter, opset 18 the torch.export one; both must pass parity."""
    for opset, expect in ((17, "dynamo=False"), (18, "dynamo=True")):
        code, out, err = export("edgeformer_s", "onnx", tmp_path / str(opset), "--opset", str(opset))
        assert code == 0, err
        manifest = json.loads(Path(out["manifest"]).read_text())
        assert manifest["opset"] == opset and expect in manifest["exporter"]
        assert out["parity"]["passed"] is True


@pytest.mark.slow
def test_failed_parity_exits_nonzero_and_keeps_the_artifact(tmp_path: Path) -> None:
    # an unreachable but valid gate (--min-cosine 1.5 is now refused as out of range): no error at all
    code, out, err = export("edgeformer_s", "onnx", tmp_path, "--atol", "0", "--min-cosine", "1")
    assert code == 1
    assert "parity failed" in err
    assert out["parity"]["status"] == "failed" and out["parity"]["passed"] is False
    assert Path(out["artifact"]).is_file()
    manifest = json.loads(Path(out["manifest"]).read_text())
    assert manifest["status"] == "parity failed"
    # a failed gate triggers the bisection; a healthy artifact (only the gate was impossible) has no culprit
    assert manifest["bisection"] is not None and manifest["bisection"]["culprit"] is None


@pytest.mark.slow
def test_artifact_not_matching_its_manifest_is_refused(tmp_path: Path) -> None:
    code, out, err = export("edgeformer_s", "onnx", tmp_path, "--no-parity")
    assert code == 0, err
    assert out["parity"]["status"] == "not run" and out["parity"]["passed"] is None
    artifact = Path(out["artifact"])
    data = bytearray(artifact.read_bytes())
    data[-100] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        read_manifest(artifact)
    proc = run_cli("bench", str(artifact), "--iterations", "1")
    assert proc.returncode == 2 and "does not match its manifest" in proc.stderr


@pytest.mark.slow
def test_bench_model_name_mnn_json_returns_100_samples(tmp_path: Path) -> None:
    out_file = tmp_path / "r.json"
    proc = run_cli(
        "bench", "edgeformer_s", "--device", "local", "--runtime", "mnn", "--json", "--warmup", "2",
        "--out", str(out_file),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    for key in ("model", "format", "runtime", "device", "threads", "iterations", "warmup", "samples_ms", "median_ms",
                "mean_ms", "p90_ms", "p99_ms", "std_ms", "min_ms", "max_ms", "load_ms", "first_ms", "env"):  # fmt: skip
        assert key in r
    assert r["model"] == "edgeformer_s" and r["format"] == "mnn" and r["runtime"] == "mnn"
    assert len(r["samples_ms"]) == 100 and r["iterations"] == 100
    import numpy as np

    assert r["median_ms"] == pytest.approx(float(np.median(r["samples_ms"])))
    assert all(s > 0 for s in r["samples_ms"])
    assert r["env"]["runtime_versions"]["mnn"].startswith("3.")
    assert json.loads(out_file.read_text())["samples_ms"] == r["samples_ms"]


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_bench_other_runtimes(runtime: str) -> None:
    proc = run_cli("bench", "mobilevit_s", "--runtime", runtime, "--iterations", "5", "--warmup", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["runtime"] == runtime and len(r["samples_ms"]) == 5
