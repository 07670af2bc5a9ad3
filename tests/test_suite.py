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


# ---------------------------------------------------------------------------------------------- farm profile, store
def test_labgrid_profile_fields_and_board_profiles(tmp_path: Path) -> None:
    from edgedeploy.devices.farm import board_profile
    from edgedeploy.devices.profile import load_profile_file

    p = _write(tmp_path, {"name": "farm", "transport": "labgrid", "tags": {"device": "rk3288"}}, "farm.yaml")
    with pytest.raises(ConfigError, match=r"field .*coordinator"):
        load_profile_file(p)
    p = _write(tmp_path, {"name": "farm", "transport": "labgrid", "coordinator": "lab:20408", "host": "x"}, "f2.yaml")
    with pytest.raises(ConfigError, match="'host' is not used"):
        load_profile_file(p)
    p = _write(tmp_path, {"name": "b", "transport": "ssh", "host": "x", "coordinator": "lab:1"}, "f3.yaml")
    with pytest.raises(ConfigError, match="belong to transport labgrid"):
        load_profile_file(p)
    farm = load_profile_file(_write(tmp_path, {
        "name": "farm", "transport": "labgrid", "coordinator": "lab:20408", "tags": {"device": "rk3288"},
        "known_hosts": "/keys/{board}/known_hosts", "runtimes": ["onnxruntime"],
    }, "farm.yaml"))  # fmt: skip
    assert farm.workdir == "/tmp/edgedeploy/{board}" and farm.address == "labgrid:lab:20408[device=rk3288]"
    b = board_profile(farm, "rk-7", {"address": "10.0.0.7", "port": 2222, "username": "linaro"})
    assert (b.transport, b.host, b.port, b.user, b.name) == ("ssh", "10.0.0.7", 2222, "linaro", "farm")
    assert b.workdir == "/tmp/edgedeploy/rk-7" and b.known_hosts == "/keys/rk-7/known_hosts"
    assert b.runtimes == ["onnxruntime"] and not b.trust_on_first_use
    from edgedeploy.devices.connect import connect

    with pytest.raises(ConfigError, match="labgrid farm"):
        connect(farm)


def test_result_schema_backward_compatible_and_run_writer(tmp_path: Path) -> None:
    from edgedeploy.results.result import BenchResult
    from edgedeploy.results.store import RunWriter, list_runs

    old = {"model": "m", "format": "onnx", "runtime": "onnxruntime", "device": "local", "threads": 1,
           "iterations": 2, "warmup": 0, "samples_ms": [1.0, 3.0]}  # fmt: skip
    r = BenchResult.model_validate(old)  # a file written before board / started_at existed
    assert r.board is None and r.started_at is None and r.median_ms == 2.0
    w = RunWriter(tmp_path / "store", label="s")
    assert w.path is None and w.update(cases=[]) is None  # nothing written before the first result
    p1 = w.add(r)
    p2 = w.add(r.model_copy(update={"board": "rk-1", "started_at": "2026-12-01T20:00:00.000001+00:00"}))
    w.update(cases=[{"status": "benchmarked"}])
    assert p1 == p2 and len(list((tmp_path / "store").iterdir())) == 1  # one run, rewritten in place
    (run,) = list_runs(tmp_path / "store")
    assert run.run_id == w.run.run_id and [x.board for x in run.results] == [None, "rk-1"]
    assert json.loads(p1.read_text())["cases"] == [{"status": "benchmarked"}]


def test_farm_with_no_coordinator_is_a_device_error(tmp_path: Path) -> None:
    pytest.importorskip("labgrid")
    from tests.testbed.sshd import free_port

    p = _write(tmp_path, {"name": "farm", "transport": "labgrid", "coordinator": f"127.0.0.1:{free_port()}",
                          "connect_timeout_s": 3}, "farm.yaml")  # fmt: skip
    suite = _write(tmp_path, {"models": ["emo_1m"], "formats": ["onnx"]})
    r = run_cli("bench", "--suite", str(suite), "--device", str(p), timeout=120)
    assert r.returncode == 5 and "labgrid coordinator" in r.stderr and "does not answer" in r.stderr


def test_device_without_any_runtime_is_a_config_error(tmp_path: Path) -> None:
    """A board with no Python runtime listed and no Python to probe with yields no case: exit 2 saying so, not an
    empty 'all benchmarked' table."""
    prof = _write(tmp_path, {"name": "bare", "transport": "ssh", "host": "127.0.0.1", "port": 1, "python": None},
                  "bare.yaml")  # fmt: skip
    suite = _write(tmp_path, {"models": ["emo_1m"]})
    r = run_cli("bench", "--suite", str(suite), "--device", str(prof), timeout=120)
    assert r.returncode == 2 and "no case for device bare" in r.stderr, r.stderr
