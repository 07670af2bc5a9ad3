"""The public Python API: ``edgedeploy.export`` / ``bench`` / ``compare`` on a user's module (not in the zoo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import edgedeploy
from edgedeploy.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "byom"
USER_NET = FIXTURES / "user_net.py"
SHAPE = (1, 3, 96, 160)


def test_public_functions_survive_subpackage_imports() -> None:
    """``edgedeploy.export`` / ``.bench`` stay the functions after their subpackages' modules are imported, every
    import form still reaches the submodules, and ``import edgedeploy`` imports neither torch nor onnx."""
    code = """
import sys
import edgedeploy
assert "torch" not in sys.modules and "onnx" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)[:3]
from edgedeploy import api
import edgedeploy.export.pipeline
import edgedeploy.bench.run
import edgedeploy.export.pipeline as pipeline
import edgedeploy.bench.run as run
from edgedeploy.export.pipeline import export_model
from edgedeploy.export import parity
assert edgedeploy.export is api.export and callable(edgedeploy.export), edgedeploy.export
assert edgedeploy.bench is api.bench and edgedeploy.compare is api.compare
assert pipeline is sys.modules["edgedeploy.export.pipeline"] and run is sys.modules["edgedeploy.bench.run"]
assert parity is sys.modules["edgedeploy.export.parity"]
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def _user_module() -> Any:
    from edgedeploy.spec import callable_factory

    return callable_factory(f"{USER_NET}:build")()


@pytest.mark.slow
def test_export_and_bench_a_module(tmp_path: Path) -> None:
    """A bare nn.Module, non-square, dense output → ONNX with parity passed; bench(outcome) gives 20 samples."""
    outcome = edgedeploy.export(_user_module(), "onnx", input_shape=SHAPE, out=tmp_path, name="mine")
    assert outcome.artifact == tmp_path / "mine.onnx" and outcome.artifact.is_file()
    assert outcome.parity.passed is True
    assert outcome.parity.top1_agreement is None  # a (1, 8, 24, 40) map is not class scores: n/a, not gated
    m = json.loads(outcome.manifest_path.read_text())
    assert m["input"]["shape"] == list(SHAPE)
    assert m["source"]["kind"] == "module" and m["source"]["input_shape"] == list(SHAPE)
    assert m["outputs"] == ["output"] and m["parity"]["outputs"][0]["shape"] == [1, 8, 24, 40]
    result = edgedeploy.bench(outcome, iterations=20, warmup=2, threads=1)
    assert len(result.samples_ms) == 20 and all(s > 0 for s in result.samples_ms)
    assert result.input_shape == list(SHAPE) and result.runtime == "onnxruntime" and result.model == "mine"
    # the same module by spec goes through the cache: a second bench reuses the exported artifact
    first = edgedeploy.bench(f"{USER_NET}:build", input_shape=SHAPE, runtime="onnxruntime", iterations=3, warmup=0)
    again = edgedeploy.bench(f"{USER_NET}:build", input_shape=SHAPE, runtime="onnxruntime", iterations=3, warmup=0)
    assert first.artifact["path"] == again.artifact["path"] and first.model == "user_net"


@pytest.mark.slow
def test_multi_output_parity_reports_each_output(tmp_path: Path) -> None:
    """A dict output {dense, logits} → MNN: both outputs compared, named, top-1 only on the logits."""
    from edgedeploy.spec import callable_factory

    net = callable_factory(f"{USER_NET}:build_two_heads")()
    outcome = edgedeploy.export(net, "mnn", input_shape=SHAPE, out=tmp_path, name="two")
    p = outcome.parity
    assert p.passed is True, p.failures
    assert outcome.manifest.outputs == ["dense", "logits"]
    assert [(o["name"], o["shape"]) for o in p.outputs] == [("dense", [1, 8, 24, 40]), ("logits", [1, 10])]
    assert p.outputs[0]["top1_agreement"] is None and p.outputs[1]["top1_agreement"] == 1.0
    assert p.max_abs_error == max(o["max_abs_error"] for o in p.outputs)


def test_bad_api_input_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs input_shape"):
        edgedeploy.export(_user_module(), "onnx", out=tmp_path)
    with pytest.raises(ConfigError, match="unknown export option"):
        edgedeploy.export(_user_module(), "onnx", input_shape=SHAPE, out=tmp_path, atoll=1.0)
    with pytest.raises(ConfigError, match="batch 1"):
        edgedeploy.export(_user_module(), "onnx", input_shape=(2, 3, 96, 160), out=tmp_path)
    with pytest.raises(ConfigError, match="unknown bench option"):
        edgedeploy.bench("edgeformer_s", iteration=3)


def test_compare_takes_results_and_files(tmp_path: Path) -> None:
    """compare() on BenchResult lists and on files: a 2x slower current is a regression."""
    from edgedeploy.results.result import BenchResult

    def result(ms: float) -> BenchResult:
        samples = [ms + 0.01 * (i % 7) for i in range(60)]
        return BenchResult(model="m", format="onnx", runtime="onnxruntime", device="local", threads=1,
                           iterations=60, warmup=0, samples_ms=samples)  # fmt: skip

    report = edgedeploy.compare([result(5.0)], [result(10.0)], threshold="10%")
    assert [r.verdict for r in report.rows] == ["regression"] and report.exit_code == 1
    (tmp_path / "a.json").write_text(result(5.0).to_json())
    (tmp_path / "b.json").write_text(result(5.0).to_json())
    same = edgedeploy.compare(tmp_path / "a.json", str(tmp_path / "b.json"))
    assert same.exit_code == 0 and same.rows[0].verdict == "unchanged"
    with pytest.raises(ConfigError, match="unknown compare option"):
        edgedeploy.compare([result(5.0)], [result(5.0)], treshold=5)
