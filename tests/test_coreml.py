"""CoreML export (torch.export → coremltools ML program, iOS16) and the CoreML runtime.

On Linux, prediction is impossible: these tests check that parity is recorded as "not run" with the reason and
``passed: null``, and validate what Linux can (the saved package loads as a spec; MIL op census). On macOS the
same export tests also run parity for real.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from edgedeploy.errors import RuntimeUnavailableError
from edgedeploy.export.base import ExportSettings, get_exporter
from edgedeploy.export.parity import DEFAULT_THRESHOLDS
from edgedeploy.export.pipeline import export_model, run_parity
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.zoo import list_models

pytest.importorskip("coremltools")

ON_MAC = platform.system() == "Darwin"
#: every zoo variant (3–10 s each on 2 quiet cores); EDGEDEPLOY_COREML_SUBSET=1 keeps one per family
SUBSET = {"edgeformer_s", "mobilevit_xxs", "emo_1m", "edgevit_xxs", "parc_mobilenetv2"}


def _variants() -> list[str]:
    names = [c.name for c in list_models()]
    if os.environ.get("EDGEDEPLOY_COREML_SUBSET") == "1":
        return [n for n in names if n in SUBSET]
    return names


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 200)  # > 2048 weights: compressed at int8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.conv(x))
        x = self.norm(x.permute(0, 2, 3, 1)).mean(dim=(1, 2))
        return self.fc(x)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tiny_module_converts_and_validates(tmp_path: Path, precision: str) -> None:
    torch.manual_seed(0)
    m = Tiny().eval()
    x = torch.randn(1, 3, 32, 32)
    path = tmp_path / f"tiny.{precision}.mlpackage"
    exp = get_exporter("coreml")
    exported = exp.export(m, x, path, ExportSettings(precision=precision))
    assert path.is_dir() and (path / "Manifest.json").is_file()
    assert exported.input_shape == [1, 3, 32, 32]
    assert exported.extra["minimum_deployment_target"] == "iOS16"
    census = exp.op_census(path)
    assert census.get("conv") == 1 and census.get("linear") == 1
    assert "gelu" in census and "layer_norm" in census
    if precision == "int8":
        assert any(op.startswith("constexpr_") for op in census), census  # compressed weights
    if precision in ("fp16", "int8"):
        assert census.get("cast", 0) >= 2  # float32 I/O around fp16 compute
    report = run_parity(m, path, "coreml", (1, 3, 32, 32), DEFAULT_THRESHOLDS[precision])
    if ON_MAC:
        assert report.status in ("passed", "failed") and report.passed is not None
    else:
        assert report.status == "not run" and report.passed is None
        assert "macOS" in (report.reason or "")
        assert report.max_abs_error is None


@pytest.mark.skipif(ON_MAC, reason="Linux behaviour")
def test_coreml_runtime_is_unavailable_off_macos(tmp_path: Path) -> None:
    (tmp_path / "x.mlpackage").mkdir()
    with pytest.raises(RuntimeUnavailableError, match="macOS"):
        get_runtime("coreml").load(tmp_path / "x.mlpackage", threads=1)


@pytest.fixture(scope="session")
def coreml_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("coreml")


@pytest.mark.slow
@pytest.mark.parametrize("model", _variants())
def test_zoo_variant_converts_to_coreml(model: str, coreml_out: Path) -> None:
    t0 = time.perf_counter()
    outcome = export_model(model, "coreml", coreml_out)
    elapsed = time.perf_counter() - t0
    m = outcome.manifest
    assert outcome.artifact.suffix == ".mlpackage" and outcome.artifact.is_dir()
    assert m.op_census.get("conv", 0) > 0
    assert m.model_extra["minimum_deployment_target"] == "iOS16"
    if ON_MAC:
        assert outcome.parity.status == "passed", outcome.parity.failures
    else:
        assert m.status == "exported"
        assert m.parity["status"] == "not run" and m.parity["passed"] is None
        assert "macOS" in m.parity["reason"]
    print(f"{model}: CoreML export {m.timings_s.get('export')} s, total {elapsed:.1f} s")
