"""Bring your own model through the real CLI: callable specs, user cards, ONNX files in, and every bad input.

Each bad input is one line on stderr and a documented exit code (2 bad input, 4 export failed naming op and node).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "byom"
USER_NET = FIXTURES / "user_net.py"
CARD = FIXTURES / "user_net.yaml"


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines and "Traceback" not in stderr, stderr[-2000:]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.fixtures.byom.make_onnx import dft_onnx, wrap_pad_onnx

    d = tmp_path_factory.mktemp("onnx_in")
    return {
        "wrap": wrap_pad_onnx(d / "wrap.onnx"),
        "dynamic": wrap_pad_onnx(d / "wrap_dyn.onnx", dynamic=True),
        "dft": dft_onnx(d / "dft.onnx"),
    }


@pytest.mark.slow
def test_user_net_spec_to_mnn_passes_parity(tmp_path: Path) -> None:
    """The issue's acceptance line: file.py:callable + a non-square --input-shape → MNN, parity passed."""
    proc = run_cli("export", f"{USER_NET}:build", "--input-shape", "1,3,96,160", "--to", "mnn",
                   "--out", str(tmp_path), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["parity"]["passed"] is True and out["parity"]["top1_agreement"] is None  # dense output: n/a
    assert Path(out["artifact"]).name == "user_net.mnn"
    m = json.loads(Path(out["manifest"]).read_text())
    assert m["source"] == {"kind": "callable", "spec": f"{USER_NET}:build", "input_shape": [1, 3, 96, 160],
                           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "output": "auto"}  # fmt: skip
    assert m["input"]["shape"] == [1, 3, 96, 160] and m["status"] == "parity passed"


@pytest.mark.slow
def test_user_card_and_package_spec(tmp_path: Path) -> None:
    """A user card (entry:, shape, mean/std, output kind) exports to ONNX; package.module:callable works too."""
    proc = run_cli("export", str(CARD), "--to", "onnx", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert Path(out["artifact"]).name == "user_net_card.onnx" and out["parity"]["passed"] is True
    src = json.loads(Path(out["manifest"]).read_text())["source"]
    assert src["kind"] == "card" and src["mean"] == [0.0, 0.0, 0.0] and src["std"] == [1.0, 1.0, 1.0]
    assert src["output"] == "dense" and src["input_shape"] == [1, 3, 96, 160]
    # the card's mean/std preprocess the photo: [0, 1] pixels, not ImageNet-normalised values
    from edgedeploy.export.parity import parity_inputs

    photo = parity_inputs((1, 3, 96, 160), mean=src["mean"], std=src["std"])["grace_hopper.jpg"]
    assert photo.min() >= 0.0 and photo.max() <= 1.0 and photo.shape == (1, 3, 96, 160)
    proc = run_cli("export", "tests.fixtures.byom.user_net:build_two_heads", "--input-shape", "1,3,64,64",
                   "--to", "onnx", "--out", str(tmp_path), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert Path(out["artifact"]).name == "build_two_heads.onnx"  # a non-generic callable names the artifact
    assert [o["name"] for o in out["parity"]["outputs"]] == ["dense", "logits"]


@pytest.mark.slow
def test_onnx_file_to_mnn_rewrites_wrap_pad(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    """torch's dynamo exporter writes circular padding as Pad(mode=wrap): MNN refuses the raw file; edgedeploy
    rewrites it to Slice + Concat (proven equal), converts, and passes parity against onnxruntime on the source."""
    from edgedeploy.errors import ExportError
    from edgedeploy.export.mnn import onnx_to_mnn

    with pytest.raises(ExportError, match="Pad"):
        onnx_to_mnn(onnx_files["wrap"], tmp_path / "raw.mnn")  # what a user gets without the pass
    proc = run_cli("export", str(onnx_files["wrap"]), "--to", "mnn", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["parity"]["passed"] is True
    assert out["parity"]["reference"] == "onnxruntime on the source ONNX file"
    m = json.loads(Path(out["manifest"]).read_text())
    assert m["parity_reference"] == "onnxruntime on the source ONNX file"
    assert m["source"]["kind"] == "onnx" and len(m["source"]["sha256"]) == 64
    (wrap_pass,) = m["lowering"]["passes"]
    assert wrap_pass["pass"] == "wrap Pad -> Slice + Concat" and len(wrap_pass["nodes"]) == 2
    assert wrap_pass["max_abs_error"] <= 1e-5
    # --to onnx: simplified, checked, manifested; the dynamic file needs --input-shape
    proc = run_cli("export", str(onnx_files["dynamic"]), "--to", "onnx", "--input-shape", "1,3,48,80",
                   "--out", str(tmp_path), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["parity"]["passed"] is True
    import onnx

    dims = [d.dim_value for d in onnx.load(out["artifact"]).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 48, 80]


def test_wrap_pad_rewrite_matches_numpy(tmp_path: Path) -> None:
    """The ONNX pass alone on a hand-written graph: Pad(wrap) on H and W → Slice + Concat, equal to np.pad(wrap)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edgedeploy.export.onnx_passes import rewrite_wrap_pad

    pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 2, 1, 0, 0, 1, 3])
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads"], ["y"], name="wrap", mode="wrap")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 10])], initializer=[pads],
    )  # fmt: skip
    model, names = rewrite_wrap_pad(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]))
    assert names == ["wrap"]
    assert sorted({n.op_type for n in model.graph.node}) == ["Concat", "Slice"]
    onnx.checker.check_model(model)
    path = tmp_path / "rewritten.onnx"
    onnx.save(model, str(path))
    x = np.arange(60, dtype=np.float32).reshape(1, 2, 5, 6)
    (y,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (0, 0), (2, 1), (1, 3)), mode="wrap"))


BAD_SPECS = [
    (["nowhere/net.py:build", "--input-shape", "1,3,32,32"], 2, "model file not found"),
    ([f"{USER_NET}:nope", "--input-shape", "1,3,32,32"], 2, "has no attribute 'nope'"),
    ([f"{USER_NET}:build_broken", "--input-shape", "1,3,32,32"], 2,
     "your callable raised RuntimeError: weights server unreachable (calling build_broken())"),
    ([f"{USER_NET}:not_a_module", "--input-shape", "1,3,32,32"], 2, "returned dict, not a torch.nn.Module"),
    ([f"{USER_NET}:build"], 2, "--input-shape 1,C,H,W is required"),
    ([f"{USER_NET}:build", "--input-shape", "1,3,96"], 2, "--input-shape must have 4 dims"),
    ([f"{USER_NET}:build", "--input-shape", "1,3,a,96"], 2, "--input-shape must be 4 integers"),
    (["no_such_pkg_xyz.models:build", "--input-shape", "1,3,32,32"], 2, "module 'no_such_pkg_xyz.models' not found"),
    (["nowhere.onnx"], 2, "ONNX file not found"),
    (["nowhere.yaml"], 2, "model card not found"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "code", "needle"), BAD_SPECS, ids=[n for _, _, n in BAD_SPECS])
def test_bad_specs_are_one_line(args: list[str], code: int, needle: str, tmp_path: Path) -> None:
    proc = run_cli("export", *args, "--to", "onnx", "--out", str(tmp_path))
    assert proc.returncode == code, proc.stderr[-2000:]
    assert needle in one_line(proc.stderr)


def test_bad_onnx_inputs_are_one_line(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    """Dynamic dims without --input-shape (2), a format that cannot start from ONNX (2), an op MNN lacks (4)."""
    proc = run_cli("export", str(onnx_files["dynamic"]), "--to", "mnn", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "has dynamic dims (1,3,h,w); give --input-shape 1,C,H,W" in one_line(proc.stderr)
    proc = run_cli("export", str(onnx_files["wrap"]), "--to", "tflite", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "format tflite cannot start from an ONNX file" in one_line(proc.stderr)
    proc = run_cli("export", str(onnx_files["dft"]), "--to", "mnn", "--out", str(tmp_path))
    assert proc.returncode == 4
    assert "(op DFT at node spectrum/dft)" in one_line(proc.stderr)


def test_op_no_target_supports_names_op_and_node(tmp_path: Path) -> None:
    """torch.fft.rfft2 in a user's submodule: exit 4, the op and where it is called (module path, file:line).

    Opset 17 (the TorchScript exporter): the default opset-20 exporter lowers rfft2 to ONNX DFT, which exports.
    """
    proc = run_cli("export", f"{USER_NET}:build_fft", "--input-shape", "1,3,16,16", "--to", "onnx",
                   "--opset", "17", "--out", str(tmp_path))  # fmt: skip
    assert proc.returncode == 4, proc.stderr[-2000:]
    line = one_line(proc.stderr)
    assert "aten::fft_rfft2 is not supported" in line
    assert "at node spectrum (user_net.py:" in line


@pytest.mark.slow
def test_bench_a_spec_through_the_cli() -> None:
    """``bench file.py:callable --input-shape``: exported into the cache, timed at the non-square shape."""
    proc = run_cli("bench", f"{USER_NET}:build", "--input-shape", "1,3,96,160", "--runtime", "onnxruntime",
                   "--iterations", "5", "--warmup", "1", "--threads", "1", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["model"] == "user_net" and r["input_shape"] == [1, 3, 96, 160] and len(r["samples_ms"]) == 5
    assert r["format"] == "onnx" and r["artifact"]["path"].endswith("user_net.onnx")
