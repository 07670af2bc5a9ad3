"""Fuzz and bad-input suite (issue 12): every command, in-process with CliRunner.

Each case asserts one line on stderr, the documented exit code, and that the stored results and artifacts that were
there before (a result store, a baseline, an artifact with its manifest) are byte-for-byte unchanged. Property-based
cases (hypothesis) cover option values and result files; the counts are kept small so the file runs in well under a
minute. Interrupts, full disks and read-only mounts need real child processes: ``tests/test_faults.py``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import stat
import tempfile
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgedeploy import limits, registry
from edgedeploy.cli import main
from edgedeploy.clierrors import ErrorHandlingGroup
from edgedeploy.errors import INTERNAL_ERROR_EXIT, ConfigError
from edgedeploy.results.compare import min_p_value, samples_needed
from tests.robust_util import lognormal, one_line, snapshot, tiny_onnx, write_manifest_for, write_result

CASES_TRIED: list[str] = []  # every CLI invocation of this file, for the count in the report


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    CASES_TRIED.append(" ".join(args))
    res = CliRunner().invoke(main, list(args), env=env)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What must survive every case: an artifact + manifest, a result store with one run, a baseline."""
    from edgedeploy.results.baseline import save_baseline
    from edgedeploy.results.store import append_result
    from tests.robust_util import result

    root = tmp_path_factory.mktemp("world")
    arts = root / "artifacts"
    arts.mkdir()
    art = tiny_onnx(arts / "tiny.onnx")
    write_manifest_for(art)
    store = root / "store"
    append_result(store, result(lognormal(1, 50)))
    baselines = root / "baselines"
    save_baseline([result(lognormal(2, 50))], "main", baselines)
    good = write_result(root / "good.json", lognormal(3, 50))
    return {"root": root, "art": art, "store": store, "baselines": baselines, "good": good}


@pytest.fixture(autouse=True)
def _nothing_damaged(world: dict[str, Path]):
    before = snapshot(world["root"] / "artifacts", world["store"], world["baselines"])
    yield
    assert snapshot(world["root"] / "artifacts", world["store"], world["baselines"]) == before


# ------------------------------------------------------------------------------------------------ option ranges
CORES = limits.local_cores()
OUT_OF_RANGE: list[tuple[str, list[str], str]] = [
    # (command, extra args, text the one line must contain)
    *[("export", ["--opset", v], "--opset must be between") for v in ("99", "10", "0", "-1", "24")],
    *[("export", ["--input-size", v], "--input-size must be between") for v in ("0", "-3", "15", "99999")],
    *[("export", ["--atol", v], "--atol") for v in ("-1", "nan", "inf", "-1e-9")],
    *[("export", ["--min-cosine", v], "--min-cosine") for v in ("2", "-1.5", "nan", "inf")],
    *[("export", ["--min-top1", v], "--min-top1") for v in ("2", "-0.1", "nan", "1.0001")],
    *[("bench", ["--iterations", v], "--iterations must be between") for v in ("0", "-1", "100001", "1000000000")],
    *[("bench", ["--warmup", v], "--warmup must be between") for v in ("-1", "10001")],
    *[("bench", ["--threads", v], "--threads") for v in ("0", "-1", "9999", "257", str(CORES + 1))],
    ("bench", ["--threads", str(4 * CORES + 1), "--allow-oversubscribe"], "even with --allow-oversubscribe"),
    *[("bench", ["--input-size", v], "--input-size must be between") for v in ("0", "-3", "5000")],
    *[("parity", ["--tolerance", v], "--tolerance") for v in ("-1", "nan")],
    *[("compare", ["--alpha", v], "--alpha") for v in ("0", "1", "-0.5", "2", "nan", "inf")],
    *[("compare", ["--threshold", v], "--threshold") for v in ("-5%", "nan", "abc", "inf%")],
    *[("compare", ["--min-abs-ms", v], "--min-abs-ms") for v in ("-1", "nan", "inf")],
]


@pytest.mark.parametrize(
    ("command", "extra", "expect"), OUT_OF_RANGE, ids=[f"{c} {' '.join(e)}" for c, e, _ in OUT_OF_RANGE]
)
def test_out_of_range_option_is_refused_at_once(
    world: dict[str, Path], command: str, extra: list[str], expect: str
) -> None:
    target = {
        "export": ["mobilevit_xxs", "--to", "onnx", "--out", str(world["root"] / "never")],
        "bench": ["mobilevit_xxs"],
        "parity": [str(world["art"])],
        "compare": [str(world["good"]), str(world["good"])],
    }[command]
    for module in ("edgedeploy.api", "edgedeploy.devices.profile"):  # warm: time the refusal, not a first import
        importlib.import_module(module)

    t0 = time.process_time()
    code, out, err = invoke(command, *target, *extra)
    cpu = time.process_time() - t0  # CPU, not wall: the shared test machine's load is not the CLI's doing
    assert code == 2, err
    assert expect in one_line(err)
    assert out == ""
    assert cpu < 1.0, f"refused only after {cpu:.2f} s of CPU"
    assert not (world["root"] / "never").exists()  # nothing was started


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    option=st.sampled_from(["--iterations", "--warmup", "--threads", "--input-size"]),
    value=st.one_of(st.integers(max_value=-1), st.integers(min_value=100_001, max_value=10**12)),
)
def test_property_out_of_range_bench_integers(world: dict[str, Path], option: str, value: int) -> None:
    code, _, err = invoke("bench", str(world["art"]), option, str(value))
    assert code == 2
    assert option in one_line(err)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_property_integer_bounds_are_exactly_the_documented_ones(n: int) -> None:
    for check, (lo, hi) in (
        (limits.check_iterations, limits.ITERATIONS),
        (limits.check_warmup, limits.WARMUP),
        (limits.check_input_size, limits.INPUT_SIZE),
        (limits.check_opset, registry.OPSET_RANGE),
    ):
        if lo <= n <= hi:
            assert check(n) == n
        else:
            with pytest.raises(ConfigError):
                check(n)


@settings(max_examples=60, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_property_threshold_domains(x: float) -> None:
    cases = [
        (dict(atol=x), math.isfinite(x) and x >= 0),
        (dict(min_cosine=x), math.isfinite(x) and -1 <= x <= 1),
        (dict(min_top1=x), math.isfinite(x) and 0 <= x <= 1),
        (dict(tolerance=x), math.isfinite(x) and x >= 0),
    ]
    for kw, ok in cases:
        if ok:
            limits.check_parity_thresholds(**kw)
        else:
            with pytest.raises(ConfigError):
                limits.check_parity_thresholds(**kw)
    if math.isfinite(x) and 0 < x < 1:
        limits.check_alpha(x)
    else:
        with pytest.raises(ConfigError):
            limits.check_alpha(x)


def test_threads_against_cores() -> None:
    assert limits.check_run_options(10, 0, CORES, CORES) == []
    with pytest.raises(ConfigError, match="more than the device's"):
        limits.check_run_options(10, 0, CORES + 1, CORES)
    warnings = limits.check_run_options(10, 0, CORES + 1, CORES, allow_oversubscribe=True)
    assert len(warnings) == 1 and "oversubscribed" in warnings[0]
    with pytest.raises(ConfigError):
        limits.check_run_options(10, 0, limits.MAX_THREADS + 1, None, allow_oversubscribe=True)
    assert limits.check_run_options(10, 0, None, 1) == []  # the default is always fine


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["bench", "a.onnx", "b.onnx"],  # (plain `bench` runs the default suite: issue 10)
        ["bench", "x.onnx", "--iterations", "abc"],
        ["export", "mobilevit_xxs"],
        ["export", "mobilevit_xxs", "--to", "onnx", "--precision", "fp8"],
        ["compare", "a.json"],
        ["devices", "check"],
        ["baseline", "save"],
        ["nosuchcommand"],
    ],
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    code, out, err = invoke(*args)
    assert code == 2 and out == ""
    assert one_line(err).startswith("error: ") and "--help" in err


def test_input_size_zero_is_not_the_default(world: dict[str, Path]) -> None:
    code, _, err = invoke("bench", "mobilevit_xxs", "--runtime", "torch", "--input-size", "0", "--iterations", "1")
    assert code == 2 and "--input-size must be between" in one_line(err)


# ------------------------------------------------------------------------------------------------ malformed files
def _malformed(tmp: Path, suffix: str) -> dict[str, Path]:
    good = tiny_onnx(tmp / f"src{suffix}") if suffix == ".onnx" else None
    files = {
        "empty": tmp / f"empty{suffix}",
        "random": tmp / f"random{suffix}",
        "directory": tmp / f"dir{suffix}",
    }
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(os.urandom(3000))
    files["directory"].mkdir()
    if good is not None:
        trunc = tmp / f"truncated{suffix}"
        trunc.write_bytes(good.read_bytes()[:150])
        files["truncated"] = trunc
    return files


@pytest.mark.parametrize("suffix", [".onnx", ".mnn", ".tflite", ".param"])
def test_bench_and_parity_of_malformed_artifacts(tmp_path: Path, suffix: str) -> None:
    for kind, f in _malformed(tmp_path, suffix).items():
        for cmd in (["bench", str(f), "--iterations", "2"], ["parity", str(f), "--model", "mobilevit_xxs"]):
            code, _, err = invoke(*cmd)
            line = one_line(err)
            assert code == 2, (kind, cmd, err)
            assert str(f) in line or f.name in line, line
            if kind == "directory":
                assert "is a directory" in line


def test_wrong_model_and_wrong_shape(tmp_path: Path) -> None:
    art = tiny_onnx(tmp_path / "m.onnx", size=64)
    write_manifest_for(art, shape=[1, 3, 128, 128], model="mobilevit_xxs")  # the file says 64x64
    code, _, err = invoke("bench", str(art), "--iterations", "2")
    assert code == 2 and "differs from its manifest's" in one_line(err)
    code, _, err = invoke("parity", str(art))
    assert code == 2 and "cannot run" in one_line(err)
    write_manifest_for(art, shape=[1, 3, 64, 64], model="mobilevit_xxs")  # right shape, 8 outputs, not 1000
    code, _, err = invoke("parity", str(art))
    assert code == 2 and "is not this model" in one_line(err)
    other = tiny_onnx(tmp_path / "other.onnx", classes=5)
    art.write_bytes(other.read_bytes())  # swapped file: the manifest's sha256 no longer matches
    code, _, err = invoke("bench", str(art), "--iterations", "2")
    assert code == 2 and "does not match its manifest" in one_line(err)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe garbage", b"[1, 2, 3]", b'{"model": "x"}', b"{" * 5000])
def test_bad_manifest(tmp_path: Path, content: bytes) -> None:
    art = tiny_onnx(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_bytes(content)
    for cmd in (["bench", str(art), "--iterations", "2"], ["parity", str(art)]):
        code, _, err = invoke(*cmd)
        assert code == 2, err
        assert "manifest" in one_line(err)


def test_unreadable_manifest(tmp_path: Path) -> None:
    art = tiny_onnx(tmp_path / "m.onnx")
    # a manifest that cannot be read even by root: /proc/self/mem fails at offset 0 with EIO
    (tmp_path / "m.onnx.json").symlink_to("/proc/self/mem")
    code, _, err = invoke("bench", str(art), "--iterations", "2")
    assert code == 2 and "cannot read manifest" in one_line(err)
    if os.geteuid() != 0:
        (tmp_path / "m.onnx.json").unlink()
        write_manifest_for(art)
        (tmp_path / "m.onnx.json").chmod(0)
        code, _, err = invoke("bench", str(art), "--iterations", "2")
        assert code == 2 and "Permission denied" in one_line(err)


def test_file_without_manifest_is_marked_unverified(tmp_path: Path) -> None:
    art = tiny_onnx(tmp_path / "bare.onnx")
    code, out, err = invoke("bench", str(art), "--iterations", "3", "--warmup", "0", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["verified"] is False and len(doc["samples_ms"]) == 3
    lines = [ln for ln in err.splitlines() if "unverified" in ln]
    assert len(lines) == 1 and "has no manifest" in lines[0]
    write_manifest_for(art)
    code, out, err = invoke("bench", str(art), "--iterations", "3", "--warmup", "0", "--json")
    assert code == 0 and json.loads(out)["verified"] is True and "unverified" not in err


RESULT_FILES = {
    "empty": b"",
    "random": os.urandom(500),
    "truncated": b'{"model": "tiny", "samples_ms": [1.0, 2.',
    "a list of numbers": b"[1, 2, 3]",
    "a string": b'"hello"',
    "an empty object": b"{}",
    "empty samples": None,
    "nan sample": None,
    "negative sample": None,
    "deep nesting": b"[" * 100_000,
    "huge integer": b'{"results": [], "schema_version": 1' + b"1" * 5000 + b"}",
    "results not a list": b'{"results": 5}',
}


def _result_file(tmp: Path, kind: str) -> Path:
    p = tmp / f"{kind.replace(' ', '_')}.json"
    content = RESULT_FILES[kind]
    if content is None:
        samples = {"empty samples": [], "nan sample": [1.0, float("nan")], "negative sample": [1.0, -2.0]}[kind]
        doc = json.loads(write_result(tmp / "tmp.json", [1.0]).read_text())
        doc["samples_ms"] = samples
        p.write_text(json.dumps(doc))
    else:
        p.write_bytes(content)
    return p


@pytest.mark.parametrize("kind", list(RESULT_FILES))
def test_results_commands_with_malformed_result_file(world: dict[str, Path], tmp_path: Path, kind: str) -> None:
    bad = _result_file(tmp_path, kind)
    good = str(world["good"])
    for cmd in (
        ["compare", good, str(bad)],
        ["compare", str(bad), good],
        ["report", str(bad), "--markdown", str(tmp_path / "r.md")],
        ["baseline", "save", str(bad), "--dir", str(tmp_path / "b")],
    ):
        code, _, err = invoke(*cmd)
        assert code == 2, (cmd, err)
        assert bad.name in one_line(err)
    assert not (tmp_path / "r.md").exists() and not (tmp_path / "b").exists()


def test_results_list_with_a_corrupt_file_in_the_store(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_bytes(os.urandom(100))
    code, _, err = invoke("results", "list", str(tmp_path))
    assert code == 2 and "run.json" in one_line(err)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _mutated_result() -> st.SearchStrategy[object]:
    fields = {
        "model": st.text(max_size=5),
        "format": st.text(max_size=5),
        "runtime": st.text(max_size=5),
        "device": st.text(max_size=5),
        "threads": st.integers(),
        "iterations": st.integers(),
        "warmup": st.integers(),
        "samples_ms": st.lists(st.floats(), max_size=12) | json_values,
        "schema_version": st.integers() | json_values,
        "timestamp": st.text(max_size=30) | json_values,
    }
    return st.fixed_dictionaries({}, optional=fields)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(json_values, _mutated_result(), st.lists(_mutated_result(), max_size=3)))
def test_property_compare_never_crashes_on_result_files(world: dict[str, Path], doc: object) -> None:
    root = world["root"] / "fuzz"
    root.mkdir(exist_ok=True)
    f = root / "doc.json"
    text = json.dumps(doc)
    f.write_text(text)
    code, _, err = invoke("compare", str(world["good"]), str(f))
    assert code in (0, 1, 2), err
    if code == 2:
        one_line(err)
    assert "internal error" not in err and "Traceback" not in err
    assert f.read_text() == text  # compare never writes to its inputs


# ------------------------------------------------------------------------------------------------ compare verdicts
def test_thin_data_is_insufficient_not_unchanged(tmp_path: Path) -> None:
    base = write_result(tmp_path / "b.json", [10.0])
    cur = write_result(tmp_path / "c.json", [270.0])  # 27x slower, one sample each
    code, out, err = invoke("compare", str(base), str(cur))
    assert code == 2
    line = one_line(err)
    assert "too few samples" in line and f"at least {samples_needed(0.01)} samples per side" in line
    assert "no regression" not in out and "inconclusive" in out
    base = write_result(tmp_path / "b.json", lognormal(1, 8))
    cur = write_result(tmp_path / "c.json", [27 * v for v in lognormal(2, 8)])
    code, out, _ = invoke("compare", str(base), str(cur))
    assert code == 1 and "1 regression" in out


def test_minimum_p_value_rule() -> None:
    assert min_p_value(1, 1) == 1.0
    assert min_p_value(4, 4) == pytest.approx(2 / 70)
    assert min_p_value(5, 5) == pytest.approx(2 / 252)
    assert samples_needed(0.01) == 5 and samples_needed(0.05) == 4
    assert samples_needed(0.01, other=1) == 200  # 2 / (k + 1) < 0.01
    assert min_p_value(3000, 3000) == 0.0


def test_fail_on_missing_message_agrees_with_exit_code(tmp_path: Path) -> None:
    from tests.robust_util import result

    base = tmp_path / "b.json"
    base.write_text(json.dumps([json.loads(result(lognormal(1, 30), model=m).to_json()) for m in ("a", "b")]))
    cur = write_result(tmp_path / "c.json", lognormal(2, 30), model="a")
    code, out, err = invoke("compare", str(base), str(cur), "--fail-on-missing")
    assert code == 1
    assert "no regression" not in out and "missing" in one_line(err)
    code, out, err = invoke("compare", str(base), str(cur))
    assert code == 0 and "no regression" in out


@pytest.mark.parametrize("which", ["--markdown", "--html", "--json"])
def test_unwritable_compare_and_report_outputs_exit_2(world: dict[str, Path], tmp_path: Path, which: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    good = str(world["good"])
    for target in (blocker / "out", tmp_path):  # under a file; a folder
        code, _, err = invoke("compare", good, good, which, str(target))
        assert code == 2, err  # not 1, which would read as "regression"
        line = one_line(err)
        assert "cannot write" in line or "is a directory" in line
        if which != "--json":
            code, _, err = invoke("report", good, which, str(target))
            line = one_line(err)
            assert code == 2 and ("cannot write" in line or "is a directory" in line)


# ------------------------------------------------------------------------------------------------ devices, yaml
def test_bad_yaml_profile_is_skipped_by_devices_and_named_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)  # ./devices is searched first
    Path("devices").mkdir()
    Path("devices/broken.yaml").write_text("name: broken\ntransport: ssh\n  host: [oops\n")
    Path("devices/typo.yaml").write_text("name: typo\ntransport: sssh\n")
    res = runner.invoke(main, ["devices"])
    CASES_TRIED.append("devices (bad yaml)")
    assert res.exit_code == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(warnings) == 2 and all(w.startswith("warning: skipped") for w in warnings)
    assert "broken.yaml" in res.stderr and "line 3" in res.stderr and "typo.yaml" in res.stderr
    assert "rk3288" in res.stdout  # the good, shipped profiles are still listed
    res = runner.invoke(main, ["devices", "check", "broken"])
    CASES_TRIED.append("devices check broken")
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert "broken.yaml" in line and "line 3, column" in line
    res = runner.invoke(main, ["bench", "x.onnx", "--device", "devices/typo.yaml"])
    CASES_TRIED.append("bench --device typo.yaml")
    assert res.exit_code == 2 and "transport" in one_line(res.stderr)


def test_read_only_lock_folder_is_one_line(tmp_path: Path) -> None:
    art = tiny_onnx(tmp_path / "m.onnx")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    prof = tmp_path / "board.yaml"
    prof.write_text("name: board\ntransport: ssh\nhost: 127.0.0.1\nport: 9\n")
    code, _, err = invoke("bench", str(art), "--device", str(prof), env={"EDGEDEPLOY_LOCK_DIR": str(blocker / "locks")})
    assert code == 2
    err = "\n".join(ln for ln in err.splitlines() if not ln.startswith("benchmarking on"))  # progress line
    assert "cannot create the device lock" in one_line(err)


class NotWeights:
    """Pickled into a checkpoint: not a tensor, so torch.load(weights_only=True) refuses it."""


def test_weights_messages_are_one_line(tmp_path: Path) -> None:
    import torch

    pickled = tmp_path / "obj.pt"
    torch.save({"x": NotWeights()}, pickled)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(200))
    for f, expect in ((pickled, "holds Python objects"), (garbage, "cannot read weights file")):
        code, _, err = invoke("bench", "mobilevit_xxs", "--runtime", "torch", "--weights", str(f), "--iterations", "1")
        assert code == 2 and expect in one_line(err)


def test_bad_model_card_file(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_bytes(os.urandom(300))
    code, _, err = invoke("export", str(card), "--to", "onnx", "--out", str(tmp_path / "o"))
    assert code == 2 and "card.yaml" in one_line(err)


# ------------------------------------------------------------------------------------------------ the error path
def test_last_resort_handler_turns_any_exception_into_one_line() -> None:
    @click.group(cls=ErrorHandlingGroup)
    def grp() -> None:
        pass

    @grp.command()
    def boom() -> None:
        {}["missing"]  # a real KeyError, as a bug would raise it

    res = CliRunner().invoke(grp, ["boom"])
    assert res.exit_code == INTERNAL_ERROR_EXIT == 70
    line = one_line(res.stderr)
    assert line.startswith("internal error: KeyError") and "run with --debug for the traceback" in line


CORRUPT_STORE = Path(tempfile.mkdtemp(prefix="edgedeploy-corrupt-store-"))
(CORRUPT_STORE / "run.json").write_bytes(b"\x00garbage")


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "nope.json", "nope2.json"],
        ["devices", "check", "no-such-board"],
        ["baseline", "show", "--branch", "no-such-branch", "--dir", "/nonexistent"],
        ["results", "list", str(CORRUPT_STORE)],
        ["parity", "/nonexistent.onnx"],
    ],
)
def test_debug_shows_the_traceback_in_every_group(args: list[str]) -> None:
    code, _, err = invoke(*args)
    assert code == 2 and "Traceback" not in err
    code_dbg, _, err_dbg = invoke("--debug", *args)
    assert code_dbg == code and "Traceback (most recent call last)" in err_dbg
    assert err_dbg.strip().splitlines()[-1].startswith("error:")
    code_env, _, err_env = invoke(*args, env={"EDGEDEPLOY_DEBUG": "1"})
    assert code_env == code and "Traceback" in err_env


# ------------------------------------------------------------------------------------------------ umask
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    from edgedeploy._util import atomic_write_text

    art = tiny_onnx(tmp_path / "m.onnx")
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "x.txt", "hello")
        manifest = write_manifest_for(art)
        code, _, err = invoke("bench", str(art), "--iterations", "2", "--warmup", "0", "--out", str(tmp_path / "r"))
        assert code == 0, err
    finally:
        os.umask(old)
    stored = next((tmp_path / "r").glob("*.json"))
    for f in (tmp_path / "x.txt", manifest, stored):
        assert stat.S_IMODE(f.stat().st_mode) == mode, f


def test_report_cases_tried() -> None:
    """Not a check: prints how many CLI cases this module drove (read by the issue's closing note)."""
    print(f"\ntest_fuzz_cli.py drove {len(CASES_TRIED)} CLI invocations")
    assert CASES_TRIED


# ------------------------------------------------------------------------------------------------ issue 24
# Table-driven: each row is (id, command line with {placeholders} for the files of the `bad24` fixture, exit code,
# text the one line must contain). A new command or path (A/B, matrix, corpus) adds its rows here.
USER_PY = """
import sys
import torch.nn as nn

def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())

def build_exit():
    sys.exit(7)

def build_kbd():
    raise KeyboardInterrupt

def build_value_error():
    raise ValueError("no weights here")

class ExitingForward(nn.Module):
    def forward(self, x):
        sys.exit(9)

def build_exiting_forward():
    return ExitingForward()
"""


@pytest.fixture(scope="module")
def bad24(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import onnx
    from onnx import TensorProto, helper

    root = tmp_path_factory.mktemp("bad24")
    (root / "user.py").write_text(USER_PY)
    (root / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    nodes = [helper.make_node("Cast", ["input"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("GlobalAveragePool", ["f"], ["out"])]  # fmt: skip
    graph = helper.make_graph(nodes, "i64", [helper.make_tensor_value_info("input", TensorProto.INT64, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 1, 1])])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(root / "i64.onnx"))
    tiny_onnx(root / "tiny.onnx")
    (root / "a-file").write_text("x")
    suites = root / "suites"
    suites.mkdir()
    (suites / "s.yaml").write_text("name: s\nmodels: [../tiny.onnx]\nruntimes: [onnxruntime]\niterations: 3\n")
    (suites / "neg_timeout.yaml").write_text("name: s\nmodels: [../tiny.onnx]\ncase_timeout: -1\n")
    (suites / "big_warmup.yaml").write_text("name: s\nmodels: [../tiny.onnx]\nwarmup: 20000\n")
    (root / "good.json").write_text(write_result(root / "good.json", lognormal(3, 50)).read_text())
    return {k: str(v) for k, v in {
        "root": root, "user": root / "user.py", "exits_on_import": root / "exits_on_import.py",
        "i64": root / "i64.onnx", "tiny": root / "tiny.onnx", "file": root / "a-file", "suite": suites / "s.yaml",
        "neg_timeout": suites / "neg_timeout.yaml", "big_warmup": suites / "big_warmup.yaml",
        "good": root / "good.json", "out": root / "out",
    }.items()}  # fmt: skip


SHAPE = ["--input-shape", "1,3,16,16"]
BAD_INPUTS_24: list[tuple[str, list[str], int, str]] = [
    # user code cannot take over the exit code
    ("sys.exit in the callable", ["export", "{user}:build_exit", *SHAPE, "--to", "onnx", "--out", "{out}"], 2,
     "your callable raised SystemExit: 7"),
    ("KeyboardInterrupt in the callable", ["export", "{user}:build_kbd", *SHAPE, "--to", "onnx", "--out", "{out}"], 2,
     "your callable raised KeyboardInterrupt"),
    ("exception in the callable", ["bench", "{user}:build_value_error", *SHAPE, "--runtime", "onnxruntime"], 2,
     "your callable raised ValueError: no weights here"),
    ("sys.exit in forward", ["export", "{user}:build_exiting_forward", *SHAPE, "--to", "onnx", "--out", "{out}"], 2,
     "your callable raised SystemExit: 9 (in the model's code)"),
    ("sys.exit on import", ["export", "{exits_on_import}:build", *SHAPE, "--to", "onnx", "--out", "{out}"], 2,
     "your callable raised SystemExit: 3 while importing"),
    # names are one path component
    *[(f"--name {n!r}", ["export", "{user}:build", *SHAPE, "--to", "onnx", "--out", "{out}/a/b", "--name", n], 2,
       "--name") for n in ("../../escaped", "a/b", "..", ".", "", ".hidden", "x\\y", "tab\there")],
    ("bench --name '../x'", ["bench", "{user}:build", *SHAPE, "--runtime", "onnxruntime", "--name", "../x"], 2,
     "--name '../x' must be a single file name"),
    # "file not found" before "--input-shape required"
    ("missing file.py, no shape", ["export", "{root}/nothere.py:build", "--to", "onnx", "--out", "{out}"], 2,
     "model file not found"),
    # ONNX input dtypes
    ("int64 ONNX input: bench", ["bench", "{i64}", "--iterations", "2"], 2,
     "input 'input' of this ONNX model is int64"),
    ("int64 ONNX input: export", ["export", "{i64}", "--to", "onnx", "--out", "{out}"], 2, "input 'input' is int64"),
    # profile option ranges
    *[(f"profile {o} {v}", ["profile", "{tiny}", o, v], 2, f"{o} must be between")
      for o, v in (("--depth", "-1"), ("--depth", "33"), ("--top", "0"), ("--top", "10001"))],
    # suites: case timeout, fields with the bench bounds
    ("--case-timeout 0", ["bench", "--suite", "{suite}", "--case-timeout", "0"], 2, "--case-timeout must be between"),
    ("suite case_timeout: -1", ["bench", "--suite", "{neg_timeout}"], 2, "case_timeout"),
    ("suite warmup past the bench bound", ["bench", "--suite", "{big_warmup}"], 2, "warmup"),
    ("--suite a folder", ["bench", "--suite", "{root}"], 2, "is a directory"),
]  # fmt: skip

#: every output option of every command: (command line, the option's value is appended); all must be refused before
#: any work when the path cannot be written (a file in the way, a folder where a file goes)
OUTPUT_OPTIONS_24: list[list[str]] = [
    ["export", "{tiny}", "--to", "onnx", "--out"],
    ["bench", "{tiny}", "--iterations", "2", "--out"],
    ["bench", "--suite", "{suite}", "--markdown"],
    ["bench", "--suite", "{suite}", "--out"],
    ["profile", "{tiny}", "--html"],
    ["compare", "{good}", "{good}", "--markdown"],
    ["compare", "{good}", "{good}", "--json"],
    ["compare", "{good}", "{good}", "--html"],
    ["report", "{good}", "--html"],
    ["report", "{good}", "--markdown"],
    ["bench", "{tiny}", "--matrix", "--markdown"],
    ["ab", "{tiny}", "{tiny}", "--markdown"],
    ["calibrate", "--device", "local", "--out"],
    ["results", "history", "{good}", "--markdown"],
    ["results", "history", "{good}", "--html"],
    ["baseline", "save", "{good}", "--dir"],
]


def _fill(args: list[str], files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in args]


@pytest.mark.parametrize(("case", "args", "code", "needle"), BAD_INPUTS_24, ids=[c for c, *_ in BAD_INPUTS_24])
def test_issue24_bad_inputs_are_one_line(bad24: dict[str, str], case: str, args: list[str], code: int,
                                         needle: str) -> None:  # fmt: skip
    got, _, err = invoke(*_fill(args, bad24))
    assert got == code, (case, err)
    assert needle in one_line(err), case
    assert not (Path(bad24["root"]).parent / "escaped.onnx").exists()
    assert not list(Path(bad24["root"]).rglob("*.onnx.json")), "nothing was exported"


@pytest.mark.parametrize("args", OUTPUT_OPTIONS_24, ids=[" ".join(a[:1] + a[-1:]) for a in OUTPUT_OPTIONS_24])
@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_issue24_output_paths_are_checked_before_any_work(bad24: dict[str, str], args: list[str], where: str) -> None:
    target = f"{bad24['file']}/sub/x.md" if where == "under a file" else bad24["file"]
    if where == "a folder":
        if args[-1] in ("--out", "--dir") and args[0] not in ("calibrate",):  # a folder is what they take: a file
            target = bad24["file"]
        else:
            target = bad24["root"]
    for module in ("edgedeploy.api", "edgedeploy.devices.profile"):
        importlib.import_module(module)
    t0 = time.process_time()
    code, _, err = invoke(*_fill(args, bad24), target)
    cpu = time.process_time() - t0
    line = one_line(err)
    assert code == 2, err
    assert "cannot write" in line or "is a directory" in line or "is a file" in line, line
    assert cpu < 1.5, f"refused only after {cpu:.2f} s of CPU: the work ran first"


def test_issue24_dot_edgedeploy_yaml_that_is_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edgedeploy.yaml").mkdir()
    code, out, err = invoke("bench")
    assert code == 2 and "is a directory, not a suite file" in one_line(err) and out == ""


def test_issue24_suite_paths_are_relative_to_the_suite_file(bad24: dict[str, str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # not the suite's folder: ../tiny.onnx must be found next to it
    code, out, err = invoke("bench", "--suite", bad24["suite"], "--json", "--out", str(tmp_path / "store"),
                            env={"EDGEDEPLOY_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert [c["status"] for c in doc["cases"]] == ["benchmarked"] * len(doc["cases"])


def test_issue24_export_writes_only_under_out(bad24: dict[str, str], tmp_path: Path) -> None:
    """Exports of a callable (with a name), a user card and an ONNX file into --out a/b: a walk of the whole tree
    finds every new file under a/b (the source files excepted)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "user.py").write_text(USER_PY)
    (tmp_path / "src" / "card.yaml").write_text("entry: user.py:build\nname: carded\ninput_shape: [1, 3, 16, 16]\n")
    tiny_onnx(tmp_path / "src" / "t.onnx")
    bad_card = tmp_path / "src" / "bad.yaml"
    bad_card.write_text("entry: user.py:build\nname: ../../up\ninput_shape: [1, 3, 16, 16]\n")
    before = set(tmp_path.rglob("*"))
    out = tmp_path / "a" / "b"
    for spec, extra in ((f"{tmp_path}/src/user.py:build", [*SHAPE, "--name", "named"]),
                        (str(tmp_path / "src" / "card.yaml"), []), (str(tmp_path / "src" / "t.onnx"), [])):  # fmt: skip
        code, _, err = invoke("export", spec, *extra, "--to", "onnx", "--out", str(out))
        assert code == 0, err
    code, _, err = invoke("export", str(bad_card), "--to", "onnx", "--out", str(out))
    assert code == 2 and "must be a single file name" in one_line(err)
    new = {p for p in tmp_path.rglob("*") if p not in before and p.is_file()}
    outside = sorted(str(p) for p in new if not p.is_relative_to(out) and p.suffix != ".pyc")
    assert outside == []
    assert {p.name for p in new if p.suffix == ".onnx"} == {"named.onnx", "carded.onnx", "t.onnx"}
    assert not list(tmp_path.glob("up*")) and not list(tmp_path.parent.glob("up.onnx*"))


def test_issue24_stale_staging_folders_are_removed(bad24: dict[str, str], tmp_path: Path) -> None:
    import socket

    from edgedeploy.export.pipeline import _owner_tag

    out = tmp_path / "arts"
    out.mkdir()
    old = out / ".edgedeploy-staging-abc123"  # an older edgedeploy's, killed: no owner in the name
    dead = out / f".edgedeploy-staging-{_owner_tag().rpartition('-')[0]}-999999999-xyz"  # a pid that cannot run
    live = out / f".edgedeploy-staging-{_owner_tag()}-live"  # this very process: an export under way
    for d in (old, dead, live):
        d.mkdir()
        (d / "half.onnx").write_bytes(b"partial")
        os.utime(d, (time.time() - 3600, time.time() - 3600))
    assert socket.gethostname()
    code, _, err = invoke("export", str(bad24["tiny"]), "--to", "onnx", "--out", str(out))
    assert code == 0, err
    assert not old.exists() and not dead.exists()
    assert live.exists()  # its owner still runs


def test_issue24_sample_count_message_for_unequal_sides(tmp_path: Path) -> None:
    base = write_result(tmp_path / "b.json", [10.0])
    cur = write_result(tmp_path / "c.json", lognormal(2, 100, median=30.0))
    code, _, err = invoke("compare", str(base), str(cur))
    assert code == 2
    line = one_line(err)
    assert "(1 vs 100)" in line and "at least 2 baseline samples given 100 current ones, or 5 per side" in line


@pytest.mark.parametrize(
    ("call", "kwargs", "needle"),
    [
        ("bench", {"iterations": "5"}, "option iterations must be int"),
        ("bench", {"warmup": 2.5}, "option warmup must be int"),
        ("bench", {"threads": "1"}, "option threads must be int | None"),
        ("bench", {"iterations": True}, "option iterations must be int"),
        ("bench", {"device": 3}, "option device must be str"),
        ("bench", {"runtime": 5}, "option runtime must be str | None"),
        ("bench", {"out": 5}, "option out must be"),
        ("bench", {"on_sample": "print"}, "option on_sample must be"),
        ("export", {"opset": "17"}, "option opset must be int | None"),
        ("export", {"parity": "yes"}, "option parity must be bool"),
        ("export", {"atol": "0.1"}, "option atol must be float | None"),
    ],
)
def test_issue24_api_argument_types_are_typed_errors(bad24: dict[str, str], call: str, kwargs: dict,
                                                     needle: str) -> None:  # fmt: skip
    import edgedeploy

    with pytest.raises(ConfigError, match=needle.replace("|", r"\|")):
        if call == "bench":
            edgedeploy.bench(bad24["tiny"], **kwargs)
        else:
            edgedeploy.export(bad24["tiny"], "onnx", out=bad24["out"], **kwargs)


def test_issue24_user_keyboard_interrupt_via_the_api_is_a_signal_or_an_error(bad24: dict[str, str]) -> None:
    """Without the CLI's handlers a KeyboardInterrupt cannot be told from Ctrl-C: it passes through unchanged."""
    import signal as _signal

    import edgedeploy

    assert _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        edgedeploy.export(f"{bad24['user']}:build_kbd", "onnx", input_shape=(1, 3, 16, 16), out=bad24["out"])
    from edgedeploy.errors import UserCodeError

    with pytest.raises(UserCodeError, match="your callable raised SystemExit: 7"):
        edgedeploy.export(f"{bad24['user']}:build_exit", "onnx", input_shape=(1, 3, 16, 16), out=bad24["out"])
