"""The result store and baselines: round trips, accepted inputs, bad inputs, and atomic writes under SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgedeploy.errors import ArtifactError, ConfigError
from edgedeploy.results import baseline as bl
from edgedeploy.results import sources, store
from edgedeploy.results.result import BenchResult


def result(model: str = "edgeformer_s", n: int = 50, seed: int = 0, **kw: object) -> BenchResult:
    rng = np.random.default_rng(seed)
    fields: dict[str, object] = dict(
        model=model,
        format="onnx",
        runtime="onnxruntime",
        device="local",
        threads=2,
        iterations=n,
        warmup=5,
        samples_ms=(10 + rng.random(n)).tolist(),
    )
    fields.update(kw)
    return BenchResult(**fields)  # type: ignore[arg-type]


def test_append_list_and_load_round_trip(tmp_path: Path) -> None:
    r1 = store.append_run([result(seed=1, git_commit="abc1234"), result("mobilevit_s", seed=2)], tmp_path)
    r2 = store.append_run(result(seed=3), tmp_path, label="nightly")
    runs = store.list_runs(tmp_path)
    assert [r.run_id for r in runs] == [r1.run_id, r2.run_id]
    assert runs[0].git_commit == "abc1234" and runs[1].label == "nightly"
    assert runs[0].results[0].samples_ms == r1.results[0].samples_ms
    # stats are re-derived from samples, not trusted from the file
    assert runs[0].results[0].median_ms == pytest.approx(float(np.median(r1.results[0].samples_ms)))
    loaded = sources.load_source(tmp_path)
    assert len(loaded) == 3
    assert {r.git_commit for r in loaded if r.model == "mobilevit_s"} == {"abc1234"}  # stamped from the record


def test_load_by_run_id_and_prefix(tmp_path: Path) -> None:
    run = store.append_run(result(), tmp_path, run_id="deadbeef0001")
    store.append_run(result(), tmp_path, run_id="deadbeef0002")
    assert sources.load_source_runs("deadbeef0001", tmp_path)[0].run_id == run.run_id
    with pytest.raises(ArtifactError, match="ambiguous"):
        sources.load_source("deadbeef", tmp_path)
    with pytest.raises(ArtifactError, match="not a file, a folder or a run id"):
        sources.load_source("cafe", tmp_path)


def test_load_bench_json_shapes(tmp_path: Path) -> None:
    single = tmp_path / "single.json"
    single.write_text(result().to_json())
    many = tmp_path / "many.json"
    many.write_text(json.dumps([json.loads(result().to_json()), json.loads(result("emo_5m").to_json())]))
    assert len(sources.load_source(single)) == 1
    assert [r.model for r in sources.load_source(many)] == ["edgeformer_s", "emo_5m"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"model": "x"}', "not a valid benchmark result"),
        ("42", "not a benchmark result"),
    ],
)
def test_bad_files_are_artifact_errors(tmp_path: Path, content: str, match: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ArtifactError, match=match):
        sources.load_source(p)


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such file"):
        sources.load_source(tmp_path / "nope.json")
    with pytest.raises(ArtifactError, match="no benchmark results"):
        sources.load_source(tmp_path)
    assert store.list_runs(tmp_path / "absent") == []


def test_default_store_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(store.STORE_ENV, str(tmp_path / "s"))
    run = store.append_run(result())
    assert run.path is not None and run.path.parent == tmp_path / "s"
    assert store.find_run(run.run_id).run_id == run.run_id


def test_baseline_save_show_and_spec(tmp_path: Path) -> None:
    saved = bl.save_baseline([result(seed=1), result(seed=2)], "main", tmp_path, git_commit="f00d")
    assert saved.path == tmp_path / "main.json"
    assert bl.load_baseline("main", tmp_path).git_commit == "f00d"
    bl.save_baseline([result(seed=3)], "feature/x", tmp_path)
    assert bl.list_baselines(tmp_path) == ["feature/x", "main"]
    # replacing is atomic and complete
    bl.save_baseline([result(seed=4)], "main", tmp_path)
    assert len(bl.load_baseline("main", tmp_path).results) == 1
    assert len(sources.load_source(f"baseline:main@{tmp_path}")) == 1
    with pytest.raises(ArtifactError, match="no baseline saved"):
        bl.load_baseline("release", tmp_path)
    with pytest.raises(ConfigError):
        bl.baseline_path("../etc", tmp_path)
    with pytest.raises(ArtifactError):
        bl.save_baseline([], "main", tmp_path)


WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from edgedeploy.results.result import BenchResult
    from edgedeploy.results import store

    folder, mode = sys.argv[1], sys.argv[2]
    big = BenchResult(model="m", format="onnx", runtime="onnxruntime", device="local", threads=1,
                      iterations=200000, warmup=0, samples_ms=np.random.default_rng(0).random(200000).tolist())
    store.append_run(big, folder)              # one complete run before any kill
    print("READY", flush=True)
    if mode == "hang-before-rename":
        real_fsync = os.fsync
        def fsync_then_hang(fd):
            real_fsync(fd)
            print("WRITTEN", flush=True)   # temp file fully written, not yet renamed
            time.sleep(60)
        os.fsync = fsync_then_hang
    while True:
        store.append_run(big, folder)
    """
)


def _spawn(folder: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _assert_store_readable(folder: Path) -> int:
    runs = store.list_runs(folder)  # raises on any partial or corrupt visible file
    for run in runs:
        assert len(run.results[0].samples_ms) == 200000
    return len(runs)


def test_killed_writer_between_write_and_rename_leaves_store_readable(tmp_path: Path) -> None:
    proc = _spawn(tmp_path, "hang-before-rename")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        assert proc.stdout.readline().strip() == "WRITTEN"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers and all(p.name.startswith(".") for p in leftovers)  # the kill did land mid-write
    assert _assert_store_readable(tmp_path) == 1


@pytest.mark.slow
def test_writer_killed_at_random_moments_leaves_store_readable(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    total_visible = 0
    for _ in range(4):
        proc = _spawn(tmp_path, "loop")
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY"
            time.sleep(float(rng.uniform(0.0, 0.4)))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        total_visible = _assert_store_readable(tmp_path)
    assert total_visible >= 4
