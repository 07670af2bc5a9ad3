"""Capabilities live in the registry and one check refuses what a format does not declare, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgedeploy import registry
from edgedeploy.errors import ConfigError
from tests.conftest import run_cli


def test_onnx_refuses_nhwc_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("export", "mobilevit_xxs", "--to", "onnx", "--layout", "NHWC", "--out", str(out), timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: onnx takes NCHW input only (got --layout NHWC)"
    assert not out.exists()  # refused before the output folder was made


@pytest.mark.parametrize(
    ("fmt", "kw", "msg"),
    [
        ("onnx", {"layout": "NHWC"}, "onnx takes NCHW input only"),
        ("mnn", {"layout": "NHWC"}, "mnn takes NCHW input only"),
        ("ncnn", {"precision": "int8"}, "does not support precision int8"),
        ("tflite", {"opset": 17}, "--opset applies to ONNX-based formats"),
        ("coreml", {"opset": 17}, "--opset applies to ONNX-based formats"),
    ],
)
def test_one_check_reads_the_registry(fmt: str, kw: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        registry.check_format_request(fmt, **kw)


def test_declared_capabilities() -> None:
    assert registry.format_spec("tflite").layouts == ("NCHW", "NHWC")
    assert registry.format_spec("onnx").opsets == registry.OPSET_RANGE
    assert registry.format_spec("coreml").opsets is None
    registry.check_format_request("tflite", "int8", None, "NHWC")  # declared: no error
    assert set(registry.native_tools().values()) <= set(registry.runtime_names())
    assert registry.profiler_runtimes() == ["onnxruntime", "mnn", "torch"]


@pytest.mark.parametrize(
    ("fmt", "bad"),
    [
        ("coreml", {"opset": 13}),
        ("coreml", {"layout": "NHWC"}),
        ("tflite", {"opset": 13}),
        ("tflite", {"layout": "NWHC"}),
    ],
)
def test_exporter_rejects_settings_its_format_does_not_take(fmt: str, bad: dict) -> None:
    """CoreML has no opset and takes NCHW only; TFLite has no opset and takes NCHW / NHWC (not a typo like NWHC)."""
    from edgedeploy.export.base import ExportSettings, get_exporter

    with pytest.raises(ConfigError):
        get_exporter(fmt).check_settings(ExportSettings(**bad))
