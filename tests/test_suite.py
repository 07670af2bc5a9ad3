"""Suite files: schema errors name the file and the field, the matrix follows the registry, exclusions keep their
reason; `edgedeploy bench` with no model runs ./edgedeploy.yaml, honest statuses, one stored run, exit codes."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
import yaml

from edgedeploy import registry
from edgedeploy.errors import ConfigError
from edgedeploy.suite import DEFAULT_MODELS, default_suite, expand, find_suite, load_suite, local_runtimes
from tests.conftest import run_cli


def _write(tmp: Path, data: dict, name: str = "suite.yaml") -> Path:
    p = tmp / name
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"formats": ["onxx"]}, "formats", "did you mean onnx"),
        ({"runtimes": ["onnxrt"]}, "runtimes", "unknown runtime"),
        ({"precisions": ["fp8"]}, "precisions", "unknown precision 'fp8'"),
        ({"models": ["edgeformer_ss"]}, "models", "unknown model"),
        ({"models": []}, "models", "at least 1"),
        ({"iterations": 0}, "iterations", "greater than or equal to 1"),
        ({"exclude": [{"model": "emo_1m"}]}, "exclude.0.reason", "Field required"),
        ({"exclude": [{"reason": "why"}]}, "exclude.0", "at least one of"),
        ({"exclude": [{"format": "nope", "reason": "x"}]}, "exclude.0.format", "unknown format"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
        ({"formats": ["tflite"], "runtimes": ["onnxruntime"]}, "(top level)", "run by none of the runtimes"),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path: Path, data: dict, field: str, message: str) -> None:
    p = _write(tmp_path, {"models": ["emo_1m"], **data})
    with pytest.raises(ConfigError) as e:
        load_suite(p)
    assert str(p) in str(e.value) and f"field '{field}'" in str(e.value) and message in str(e.value), str(e.value)


def test_matrix_follows_the_registry_and_exclusions_keep_their_reason(tmp_path: Path) -> None:
    p = _write(tmp_path, {
        "models": ["emo_1m", "mobilevit_xxs"], "formats": ["onnx", "mnn"], "precisions": ["fp32", "fp16"],
        "runtimes": ["ort", "mnn"],
        "exclude": [{"model": "emo_1m", "precision": "fp16", "reason": "not today"},
                    {"runtime": "mnn", "device": "local", "format": "mnn", "model": "mobilevit_xxs", "reason": "r2"}],
    })  # fmt: skip
    suite = load_suite(p)
    assert suite.runtimes == ["onnxruntime", "mnn"]  # alias resolved by the registry
    cases = expand(suite, "local", [])
    # a runtime only ever runs a format the registry says it runs
    assert all(c.format in registry.runtime_spec(c.runtime).formats for c in cases)
    assert all(c.precision in registry.format_spec(c.format).precisions for c in cases)
    assert len(cases) == 2 * 2 * 2  # models x (onnx/onnxruntime, mnn/mnn) x precisions
    excluded = {c.key: c.excluded for c in cases if c.excluded}
    assert excluded == {
        ("emo_1m", "onnx", "fp16", "onnxruntime", "local"): "not today",
        ("emo_1m", "mnn", "fp16", "mnn", "local"): "not today",
        ("mobilevit_xxs", "mnn", "fp32", "mnn", "local"): "r2",
        ("mobilevit_xxs", "mnn", "fp16", "mnn", "local"): "r2",
    }


def test_default_suite_is_the_seeds_comparison_on_every_local_runtime(tmp_path: Path) -> None:
    assert find_suite(tmp_path).models == list(DEFAULT_MODELS) == default_suite().models
    rts = local_runtimes()
    assert "torch" not in rts  # the eager reference is not a deployment runtime
    if platform.system() != "Darwin":
        assert "coreml" not in rts  # CoreML cannot run a model here
    cases = expand(default_suite(), "local", rts)
    assert {c.runtime for c in cases} == set(rts) and {c.model for c in cases} == set(DEFAULT_MODELS)
    own = _write(tmp_path, {"name": "mine", "models": ["emo_1m"]}, "edgedeploy.yaml")
    assert find_suite(tmp_path).name == "mine" and own.is_file()


def test_bad_suite_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    p = _write(tmp_path, {"models": ["emo_1m"], "exclude": [{"model": "emo_1m"}]})
    r = run_cli("bench", "--suite", str(p))
    assert r.returncode == 2 and "exclude.0.reason" in r.stderr and str(p) in r.stderr


@pytest.mark.slow
def test_bench_without_model_runs_edgedeploy_yaml_with_honest_statuses(tmp_path: Path) -> None:
    """`edgedeploy bench` in a folder with an edgedeploy.yaml: one case benchmarked, one excluded, one whose model
    card cannot be built (export failed) — exit 1, every status and reason in --json, one stored run."""
    (tmp_path / "broken.yaml").write_text("name: broken\nfamily: no_such_family\ninput_size: 32\n")
    (tmp_path / "edgedeploy.yaml").write_text(yaml.safe_dump({
        "name": "mini", "models": ["emo_1m", "broken.yaml"], "formats": ["onnx"], "precisions": ["fp32", "fp16"],
        "iterations": 5, "warmup": 1, "threads": 1,
        "exclude": [{"precision": "fp16", "reason": "fp16 is not measured here"}],
    }))  # fmt: skip
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "edgedeploy.cli", "bench", "--json", "--out", "store"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 1, r.stderr
    cases = {(c["model"], c["precision"]): c for c in json.loads(r.stdout)["cases"]}
    assert cases[("emo_1m", "fp32")]["status"] == "benchmarked" and cases[("emo_1m", "fp32")]["median_ms"] > 0
    assert cases[("emo_1m", "fp16")]["status"] == "excluded"
    assert cases[("emo_1m", "fp16")]["reason"] == "fp16 is not measured here"
    assert cases[("broken.yaml", "fp32")]["status"] == "export failed" and cases[("broken.yaml", "fp32")]["reason"]
    assert cases[("broken.yaml", "fp32")]["median_ms"] is None
    (record,) = (tmp_path / "store").glob("*.json")
    stored = json.loads(record.read_text())
    assert len(stored["results"]) == 1 and stored["results"][0]["started_at"] < stored["results"][0]["finished_at"]
    assert [c["status"] for c in stored["cases"]].count("export failed") == 1
    assert "excluded: " not in r.stdout  # --json: stdout is JSON alone; the table went to stderr
    assert "fp16 is not measured here" in r.stderr
