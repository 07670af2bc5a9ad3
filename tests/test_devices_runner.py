"""The board runner (edgedeploy/devices/runner.py) run as a real subprocess on this machine, on every runtime it
supports here: repeated runs give identical outputs, and its parity dumps match PyTorch fp32 under the host's gates.

The MNN case is the regression test of issue 11: MNN 3.6.1 overwrites the session's input tensor during
``runSession``, so a runner that copied the input once reported an output sum of 4.36 for mobilevit_xxs on its
timed runs where the right one is 6.11 (measured on this machine with the old runner).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgedeploy.devices import runner as runner_module
from edgedeploy.devices.parity_io import ParityRequest, prepare
from edgedeploy.export.parity import compare_outputs

RUNNER = Path(runner_module.__file__)
NCNN = Path(__file__).parent / "fixtures" / "ncnn_tiny"
# runner runtime -> (edgedeploy format, python module that must be importable here)
ZOO_RUNTIMES = {"onnxruntime": ("onnx", "onnxruntime"), "mnn": ("mnn", "MNN"), "tflite": ("tflite", "ai_edge_litert")}


def _have(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def _run_runner(artifact: Path, runtime: str, shape: list[int], tmp: Path, request: ParityRequest | None = None):
    argv = [sys.executable, str(RUNNER), "--artifact", str(artifact), "--runtime", runtime, "--iterations", "4",
            "--warmup", "2", "--threads", "1", "--input-shape", ",".join(map(str, shape))]  # fmt: skip
    out_dir = tmp / "out"
    if request is not None:
        in_dir = tmp / "in"
        in_dir.mkdir()
        request.files(in_dir)
        argv += ["--parity-inputs", str(in_dir), "--parity-outputs", str(out_dir)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))
    res = json.loads(line[7:])
    outs = {}
    if request is not None:
        for i, name in enumerate(request.inputs):
            outs[name] = np.load(out_dir / f"out-{i}.npy")
    return res, outs


@pytest.fixture(scope="module")
def zoo_artifacts() -> dict[str, Path]:
    from edgedeploy.export.pipeline import cached_export

    out = {}
    for rt, (fmt, mod) in ZOO_RUNTIMES.items():
        if _have(mod):
            outcome = cached_export("mobilevit_xxs", fmt)
            assert outcome.parity.passed, outcome.parity.failures
            out[rt] = outcome.artifact
    return out


@pytest.mark.slow
@pytest.mark.parametrize("runtime", list(ZOO_RUNTIMES))
def test_repeated_runs_identical_and_parity(runtime: str, zoo_artifacts: dict[str, Path], tmp_path: Path) -> None:
    if runtime not in zoo_artifacts:
        pytest.skip(f"{ZOO_RUNTIMES[runtime][1]} is not installed here")
    art = zoo_artifacts[runtime]
    req = prepare(art)
    res, outs = _run_runner(art, runtime, [1, 3, 256, 256], tmp_path, req)
    # the same input, 1 first + 2 warm-up + 4 timed runs: bit-identical outputs after the warm-up and at the end
    assert res["repeat_identical"] is True
    assert res["output"] == res["output_last"]
    assert res["output"]["sum"] == pytest.approx(6.1148, abs=2e-3)  # mobilevit_xxs on linspace input (4.36 = bug)
    assert len(res["samples_ms"]) == 4 and res["parity_outputs"] == [f"out-{i}.npy" for i in range(5)]
    # what the runner dumped is what PyTorch computes, under the host's fp32 gates
    report = compare_outputs(req.reference, outs, req.thresholds)
    assert report.passed, report.failures
    assert report.max_abs_error < 1e-4 and report.cosine_similarity > 0.99999
    # a second process gives the same dumps, bit for bit
    (tmp_path / "again").mkdir()
    _, outs2 = _run_runner(art, runtime, [1, 3, 256, 256], tmp_path / "again", req)
    for k in outs:
        assert np.array_equal(outs[k], outs2[k]), k


def test_repeated_runs_identical_ncnn(tmp_path: Path) -> None:
    if not _have("ncnn"):
        pytest.skip("the ncnn wheel is not installed here")
    art = tmp_path / "tiny.ncnn.param"
    shutil.copy(NCNN / "tiny.ncnn.param", art)
    shutil.copy(NCNN / "tiny.ncnn.bin", tmp_path / "tiny.ncnn.bin")  # the side file beside the .param
    rng = np.random.default_rng(0)
    inputs = {f"random[{i}]": rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for i in range(3)}
    req = ParityRequest("tiny", "fp32", "NCHW", inputs, {}, None)  # type: ignore[arg-type]
    res, outs = _run_runner(art, "ncnn", [1, 3, 32, 32], tmp_path, req)
    ref = json.loads((NCNN / "reference.json").read_text())
    assert res["repeat_identical"] is True and res["output"] == res["output_last"]
    assert res["output"]["sum"] == pytest.approx(ref["sum"], abs=1e-4)
    (tmp_path / "again").mkdir()
    _, outs2 = _run_runner(art, "ncnn", [1, 3, 32, 32], tmp_path / "again", req)
    assert all(np.array_equal(outs[k], outs2[k]) and outs[k].shape == (1, 10) for k in outs)
    assert not np.array_equal(outs["random[0]"], outs["random[1]"])  # different inputs, different outputs
