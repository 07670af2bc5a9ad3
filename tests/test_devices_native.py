"""Parsers of native benchmark tools, on genuine outputs (origin in tests/fixtures/native_outputs/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgedeploy.devices.native import (
    native_command,
    parse_benchncnn,
    parse_mnn_benchmark,
    parse_ort_perf_test,
    parse_tflite_benchmark,
    tool_runtime,
)
from edgedeploy.errors import ConfigError

OUT = Path(__file__).parent / "fixtures" / "native_outputs"


def test_mnn_benchmark() -> None:
    text = (OUT / "mnn_benchmark_kirin990.txt").read_text()
    r = parse_mnn_benchmark(text, "MobileNetV2_224.mnn")
    assert (r["model"], r["max_ms"], r["min_ms"], r["mean_ms"]) == ("MobileNetV2_224.mnn", 6.496, 4.821, 5.192)
    assert (r["forward"], r["threads"], r["precision"], r["loop"]) == ("CPU", 4, 2, 50)
    assert parse_mnn_benchmark(text)["model"] == "mobilenet-v1-1.0.mnn"  # last one by default
    with pytest.raises(ValueError, match="no"):
        parse_mnn_benchmark("Segmentation fault")


def test_tflite_benchmark_model() -> None:
    r = parse_tflite_benchmark((OUT / "tflite_benchmark_model_kirin970.txt").read_text())
    assert r["count"] == 10 and r["first_ms"] == pytest.approx(109.217) and r["min_ms"] == pytest.approx(108.165)
    assert r["mean_ms"] == pytest.approx(108.787) and r["std_ms"] == pytest.approx(0.452)
    assert r["warmup_mean_ms"] == pytest.approx(195.389) and r["init_ms"] == pytest.approx(16.46)
    with pytest.raises(ValueError):
        parse_tflite_benchmark("ERROR: Could not open model")


def test_onnxruntime_perf_test() -> None:
    r = parse_ort_perf_test((OUT / "onnxruntime_perf_test_17313.txt").read_text())
    assert r["count"] == 1000 and r["mean_ms"] == pytest.approx(58.8053)
    assert r["median_ms"] == pytest.approx(58.7108) and r["p99_ms"] == pytest.approx(61.9517)
    assert r["min_ms"] == pytest.approx(55.9777) and r["max_ms"] == pytest.approx(62.3472)
    old = parse_ort_perf_test((OUT / "onnxruntime_perf_test_2798.txt").read_text())
    assert old["count"] == 1 and old["mean_ms"] == pytest.approx(734.606) and old["load_ms"] == pytest.approx(1841.49)
    with pytest.raises(ValueError):
        parse_ort_perf_test("")


def test_commands_are_argument_lists() -> None:
    a = "/data/local/tmp/ed ge/artifacts/ab/m.mnn"
    assert native_command("mnn-benchmark", "/b/benchmark.out", a, 50, 5, 4, "fp32") == [
        "/b/benchmark.out", "/data/local/tmp/ed ge/artifacts/ab", "50", "5", "0", "4", "1",
    ]  # fmt: skip
    assert "--graph=/x y/m.tflite" in native_command("tflite-benchmark_model", "bm", "/x y/m.tflite", 9, 1, 2, "fp32")
    assert native_command("onnxruntime_perf_test", "pt", "m.onnx", 9, 1, 2, "fp32")[-1] == "m.onnx"
    with pytest.raises(ConfigError):
        native_command("trtexec", "t", "m", 1, 1, 1, "fp32")


def test_benchncnn() -> None:
    text = (OUT / "benchncnn_threadripper3970x.txt").read_text()
    r = parse_benchncnn(text, "mobilenet_v2")
    assert (r["model"], r["min_ms"], r["max_ms"], r["mean_ms"]) == ("mobilenet_v2", 14.70, 14.95, 14.82)
    assert (r["loop"], r["threads"], r["powersave"], r["gpu_device"], r["cooling_down"]) == (10, 1, 0, -1, 0)
    assert parse_benchncnn(text)["model"] == "yolov4-tiny"  # last one by default
    assert parse_benchncnn(text, "yolov4-tiny")["mean_ms"] == 85.79
    with pytest.raises(ValueError, match="benchncnn"):
        parse_benchncnn("loop_count = 4\nnum_threads = 1\nSegmentation fault")


def test_benchncnn_command_and_tool_runtimes() -> None:
    argv = native_command("benchncnn", "/opt/benchncnn", "/tmp/a b/m.ncnn.param", 8, 1, 4, "fp32", "[256,256,3]")
    # run in the model's folder (benchncnn reads the .param from its working directory), all arguments positional
    assert argv[:3] == ["sh", "-c", 'cd "$1" && shift && exec "$@"'] and argv[4] == "/tmp/a b"
    assert argv[5:] == ["/opt/benchncnn", "8", "4", "0", "-1", "0", "param=m.ncnn.param", "shape=[256,256,3]"]
    assert tool_runtime("native:mnn-runner") == "mnn" and tool_runtime("native:benchncnn") == "ncnn"
    assert tool_runtime("mnn") is None and tool_runtime(None) is None
    with pytest.raises(ConfigError, match="unknown native tool"):
        tool_runtime("native:trtexec")
