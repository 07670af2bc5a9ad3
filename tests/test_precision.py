"""Precisions per format: calibration sets, fp16 / int8 (weight-only and full integer) with their own verdicts.

The slow tests export MobileViT-XXS (the smallest transformer in the zoo) to ONNX and MNN at each precision and
check that a verdict was computed with the precision's gates (int8: cosine and top-1 only) and that the manifest
names the calibration set; TFLite precisions run on a tiny module (a full-model conversion is ~2 min).
MNN's quantizer runs in-process: a test proves it neither imports ``MNN.tools`` nor opens a socket.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from edgedeploy.errors import ConfigError
from edgedeploy.export.base import ExportSettings
from edgedeploy.export.calibration import calibration_set, default_calibration_set, folder_calibration_set
from edgedeploy.export.parity import DEFAULT_THRESHOLDS
from edgedeploy.export.pipeline import export_model
from edgedeploy.export.quantize import int8_mode
from edgedeploy.options import ExportOptions

MODEL = "mobilevit_xxs"


def test_default_calibration_set_is_deterministic() -> None:
    a = default_calibration_set(64)
    b = default_calibration_set(64)
    assert len(a.images) == 16 and a.sha256() == b.sha256()
    assert all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in a.images)
    assert len({im.tobytes() for im in a.images}) == 16  # 16 different views
    arrays = a.arrays()
    assert arrays[0].shape == (1, 3, 64, 64) and arrays[0].dtype == np.float32
    assert a.arrays("NHWC")[0].shape == (1, 64, 64, 3)
    d = a.describe()
    assert d["source"] == "default" and d["images"] == 16 and "grace_hopper" in d["location"]


def test_default_set_first_view_is_the_parity_photo() -> None:
    from edgedeploy.data import real_image

    np.testing.assert_allclose(default_calibration_set(96).arrays()[0], real_image(96), atol=1e-5)


def test_folder_calibration_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    cs = calibration_set(32, tmp_path)
    assert cs.source == "folder" and len(cs.images) == 3 and cs.names == ["im0.png", "im1.png", "im2.png"]
    assert cs.images[0].shape == (32, 32, 3)


def test_folder_calibration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        folder_calibration_set(tmp_path / "missing", 32)
    with pytest.raises(ConfigError, match="no images"):
        folder_calibration_set(tmp_path, 32)
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot be read"):
        folder_calibration_set(tmp_path, 32)


def test_int8_mode_option() -> None:
    assert int8_mode(ExportSettings()) == "full"
    assert int8_mode(ExportSettings(int8_mode="weight")) == "weight"
    with pytest.raises(ConfigError):
        int8_mode(ExportSettings(int8_mode="int4"))


def _check_verdict(outcome, precision: str) -> None:
    p = outcome.parity
    assert p.status in ("passed", "failed") and p.passed is not None
    assert p.cosine_similarity is not None and p.top1_agreement is not None
    gates = DEFAULT_THRESHOLDS[precision]
    assert p.thresholds["min_cosine"] == gates.min_cosine
    if precision == "int8":
        assert p.thresholds["max_abs_error"] is None  # int8 is judged by cosine and top-1 only
    assert outcome.manifest.precision == precision
    assert "quantization" in outcome.manifest.model_extra


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "precision", "mode"),
    [
        ("onnx", "fp16", None),
        ("onnx", "int8", "full"),
        ("onnx", "int8", "weight"),
        ("mnn", "fp16", None),
        ("mnn", "int8", "full"),
        ("mnn", "int8", "weight"),
    ],
)
def test_reduced_precision_verdicts(tmp_path: Path, fmt: str, precision: str, mode: str | None) -> None:
    outcome = export_model(MODEL, fmt, tmp_path, ExportOptions(precision=precision, int8_mode=mode))
    _check_verdict(outcome, precision)
    extra = outcome.manifest.model_extra
    if mode == "full":
        assert extra["calibration"]["source"] == "default" and extra["calibration"]["images"] == 16
    else:
        assert "calibration" not in extra
    census = outcome.manifest.op_census
    if fmt == "onnx" and mode == "full":
        assert census.get("QuantizeLinear", 0) > 0 and census.get("DequantizeLinear", 0) > 0
        # the stem conv on the RGB input stays float (its weight is no DequantizeLinear output); nothing else
        import onnx

        graph = onnx.load(str(outcome.artifact)).graph
        made_by = {o: n.op_type for n in graph.node for o in n.output}
        float_convs = [n.name for n in graph.node if n.op_type == "Conv" and made_by.get(n.input[1]) is None]
        assert extra["quantization"]["kept_float"] == float_convs and len(float_convs) == 1
        (stem,) = [n for n in graph.node if n.name == float_convs[0]]
        assert stem.input[0] == graph.input[0].name
    if fmt == "onnx" and mode == "weight":
        assert census.get("DynamicQuantizeLinear", 0) > 0 or census.get("MatMulInteger", 0) > 0
    if precision == "int8":
        # MNN keeps op types (int8 parameters live inside Convolution), so prove the quantization is not a no-op
        assert outcome.parity.max_abs_error > 1e-5
    # a reduced precision is smaller than fp32 would be (fp32 MobileViT-XXS ≈ 5.2 MB)
    assert outcome.manifest.size_bytes < 4.5e6


@pytest.mark.slow
def test_mnn_int8_uses_a_calibration_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(calib / f"{i}.jpg")
    outcome = export_model(MODEL, "mnn", tmp_path / "out", ExportOptions(precision="int8", calibration=str(calib)))
    c = outcome.manifest.model_extra["calibration"]
    assert c["source"] == "folder" and c["images"] == 4 and c["location"] == str(calib.resolve())


_GUARD = """
import socket, sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "MNN.tools" or name.startswith("MNN.tools."):
            raise ImportError("MNN.tools imported (it pip-installs and sends a usage log)")
        return None

sys.meta_path.insert(0, _Block())

def _no_socket(*a, **k):
    raise OSError("a socket was opened")

socket.socket = _no_socket
socket.create_connection = _no_socket
"""


@pytest.mark.slow
def test_mnn_quantizer_stays_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quantizer child process imports no MNN.tools and opens no socket; the package set is unchanged."""
    from importlib.metadata import distributions

    from edgedeploy.export.mnn import onnx_to_mnn
    from edgedeploy.export.onnx import torch_to_onnx
    from edgedeploy.export.quantize import mnn_full_int8

    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_GUARD)
    monkeypatch.setenv("PYTHONPATH", str(guard))
    import subprocess

    probe = subprocess.run([sys.executable, "-c", "import socket; socket.socket()"], capture_output=True, text=True)
    assert probe.returncode != 0 and "a socket was opened" in probe.stderr  # the guard is active in children
    before = sorted((d.metadata["Name"], d.version) for d in distributions())
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    torch_to_onnx(m.eval(), torch.randn(1, 3, 32, 32), tmp_path / "m.onnx", opset=13)
    onnx_to_mnn(tmp_path / "m.onnx", tmp_path / "m.mnn")
    info = mnn_full_int8(tmp_path / "m.mnn", tmp_path / "q.mnn", default_calibration_set(32))
    assert (tmp_path / "q.mnn").stat().st_size > 0 and "not MNN.tools" in info["tool"]
    assert not any(name == "MNN.tools" or name.startswith("MNN.tools.") for name in sys.modules)
    assert sorted((d.metadata["Name"], d.version) for d in distributions()) == before


def test_mnn_quantizer_crash_becomes_an_export_error(tmp_path: Path) -> None:
    from edgedeploy.errors import ExportError
    from edgedeploy.export.quantize import mnn_full_int8

    (tmp_path / "bad.mnn").write_bytes(b"not a model" * 100)
    with pytest.raises(ExportError, match="MNN int8 quantization failed"):
        mnn_full_int8(tmp_path / "bad.mnn", tmp_path / "q.mnn", default_calibration_set(32))


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "mode"), [("fp16", "full"), ("int8", "weight"), ("int8", "full")])
def test_tflite_precisions_on_a_tiny_module(tmp_path: Path, precision: str, mode: str) -> None:
    pytest.importorskip("litert_torch")
    from edgedeploy.export.base import ExportSettings, get_exporter
    from edgedeploy.export.parity import check_parity
    from edgedeploy.runtimes.base import get_runtime

    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()  # fmt: skip
    x = torch.from_numpy(default_calibration_set(32).arrays()[0])
    path = tmp_path / f"t.{precision}.{mode}.tflite"
    exp = get_exporter("tflite")
    exported = exp.export(m, x, path, ExportSettings(precision=precision, int8_mode=mode))
    census = exp.op_census(path)
    if precision == "int8" and mode == "full":
        q = exported.extra["quantization"]
        assert census.get("QUANTIZE", 0) >= 1 or q["input_dtype"] == "int8"  # int8 inside, or int8 I/O
        assert exported.extra["calibration"]["source"] == "default"
    else:
        assert census.get("DEQUANTIZE", 0) >= 1  # weights stored in fp16 / int8, dequantized for float compute
    session = get_runtime("litert").load(path, threads=1)
    report = check_parity(m, session.run, (1, 3, 32, 32), DEFAULT_THRESHOLDS[precision])
    assert report.status in ("passed", "failed") and report.cosine_similarity is not None
    assert report.cosine_similarity > 0.9
