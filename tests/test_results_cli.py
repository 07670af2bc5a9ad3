"""The click commands of the results layer: exit codes 0 / 1 / 2, written files, --confirm through a subprocess."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgedeploy.results.cli import compare_cmd, main
from tests.robust_util import result


def samples(seed: int, n: int = 150, median: float = 21.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return median * np.exp(rng.normal(0, 0.04, n))


def write_bench(path: Path, per_model: dict[str, np.ndarray], commit: str = "c0ffee1") -> Path:
    board = {"format": "mnn", "runtime": "mnn", "device": "rk3288", "threads": 4, "warmup": 10}
    docs = [json.loads(result(s.tolist(), m, commit, **board).to_json()) for m, s in per_model.items()]
    path.write_text(json.dumps(docs))
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write_bench(tmp_path / "base.json", {"edgeformer_s": samples(1), "mobilevit_s": samples(2, median=31.8)})


def run(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(compare_cmd, args, catch_exceptions=False)
    return res.exit_code, res.output


def test_slowdown_of_25_percent_exits_1_and_markdown_names_the_model(base: Path, tmp_path: Path) -> None:
    cur = write_bench(
        tmp_path / "cur.json", {"edgeformer_s": samples(3) * 1.25, "mobilevit_s": samples(4, median=31.8)}
    )
    md, js = tmp_path / "cmp.md", tmp_path / "cmp.json"
    code, out = run([str(base), str(cur), "--markdown", str(md), "--json", str(js)])
    assert code == 1, out
    text = md.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert "edgeformer_s" in table[1] and "regression" in table[1]  # first data row: the regression
    assert "mobilevit_s" in text and "unchanged" in text
    assert "+2" in table[1]  # change ≈ +25 %
    data = json.loads(js.read_text())
    assert data["summary"]["regressions"] == 1 and data["rows"][0]["model"] == "edgeformer_s"


def test_same_samples_reshuffled_exits_0(base: Path, tmp_path: Path) -> None:
    docs = json.loads(base.read_text())
    rng = np.random.default_rng(5)
    for d in docs:
        d["samples_ms"] = rng.permutation(d["samples_ms"]).tolist()
    cur = tmp_path / "cur.json"
    cur.write_text(json.dumps(docs))
    code, out = run([str(base), str(cur)])
    assert code == 0, out
    assert "no regression" in out


def test_improvement_exits_0(base: Path, tmp_path: Path) -> None:
    cur = write_bench(
        tmp_path / "cur.json", {"edgeformer_s": samples(6) * 0.75, "mobilevit_s": samples(7, median=31.8)}
    )
    md = tmp_path / "cmp.md"
    code, _ = run([str(base), str(cur), "--markdown", str(md)])
    assert code == 0
    assert "improvement" in md.read_text()


@pytest.mark.parametrize(
    "make_args",
    [
        lambda b, t: [str(b), str(t / "absent.json")],
        lambda b, t: [str(b), str((t / "bad.json").write_text("{oops") and t / "bad.json")],
        lambda b, t: [str(b), str(b), "--threshold", "lots"],
        lambda b, t: [str(b), str(b), "--alpha", "2"],
        lambda b, t: [str(b)],
        lambda b, t: [str(b), "baseline:main@" + str(t / "nobaselines")],
    ],
    ids=["missing-file", "corrupt-json", "bad-threshold", "bad-alpha", "missing-arg", "no-baseline"],
)
def test_bad_input_exits_2(base: Path, tmp_path: Path, make_args) -> None:  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(compare_cmd, make_args(base, tmp_path))
    assert res.exit_code == 2, res.output


def test_threshold_and_floor_options_decide(base: Path, tmp_path: Path) -> None:
    cur = write_bench(tmp_path / "cur.json", {"edgeformer_s": samples(8) * 1.08, "mobilevit_s": samples(9, 150, 31.8)})
    assert run([str(base), str(cur), "--threshold", "5%"])[0] == 1
    assert run([str(base), str(cur), "--threshold", "10%"])[0] == 0
    assert run([str(base), str(cur), "--threshold", "5%", "--min-abs-ms", "5"])[0] == 0


def test_fail_on_missing(base: Path, tmp_path: Path) -> None:
    cur = write_bench(tmp_path / "cur.json", {"edgeformer_s": samples(10)})
    assert run([str(base), str(cur)])[0] == 0
    assert run([str(base), str(cur), "--fail-on-missing"])[0] == 1


RERUN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from edgedeploy.results.result import BenchResult
    model, fmt, prec, rt, dev, threads, iters, warmup, out, scale = sys.argv[1:]
    s = 21.0 * np.exp(np.random.default_rng(99).normal(0, 0.04, int(iters))) * float(scale)
    r = BenchResult(model=model, format=fmt, precision=prec, runtime=rt, device=dev, threads=int(threads),
                    iterations=int(iters), warmup=int(warmup), samples_ms=s.tolist())
    open(out, "w").write(r.to_json())
    """
)


@pytest.mark.parametrize(("scale", "expected"), [(1.0, 0), (1.25, 1)])
def test_confirm_reruns_through_a_subprocess(base: Path, tmp_path: Path, scale: float, expected: int) -> None:
    script = tmp_path / "fake_bench.py"
    script.write_text(RERUN_SCRIPT)
    cur = write_bench(
        tmp_path / "cur.json", {"edgeformer_s": samples(11) * 1.25, "mobilevit_s": samples(12, 150, 31.8)}
    )
    cmd = (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} "
        "{model} {format} {precision} {runtime} {device} {threads} {iterations} {warmup} {out} " + str(scale)
    )
    js = tmp_path / "cmp.json"
    code, out = run([str(base), str(cur), "--confirm", "--rerun-cmd", cmd, "--json", str(js)])
    assert code == expected, out
    row = json.loads(js.read_text())["rows"][0]
    assert row["model"] == "edgeformer_s" and row["first_verdict"] == "regression"
    assert row["rerun"]["n_current"] == 150  # re-run used the key's iteration count
    assert ("not confirmed" in row["note"]) == (expected == 0)


def test_confirm_with_failing_command_is_an_error(base: Path, tmp_path: Path) -> None:
    cur = write_bench(tmp_path / "cur.json", {"edgeformer_s": samples(13) * 1.25})
    cmd = f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(3)' {{out}}"
    res = CliRunner().invoke(compare_cmd, [str(base), str(cur), "--confirm", "--rerun-cmd", cmd])
    assert res.exit_code == 2
    assert "exited 3" in res.output


def test_results_list_baseline_and_stored_run_ids(tmp_path: Path, base: Path) -> None:
    from edgedeploy.results import sources, store

    st = tmp_path / "store"
    run1 = store.append_run(sources.load_source(base), st)
    runner = CliRunner()
    res = runner.invoke(main, ["results", "list", str(st)])
    assert res.exit_code == 0 and run1.run_id in res.output and "edgeformer_s/mnn" in res.output
    res = runner.invoke(main, ["baseline", "save", run1.run_id, "--store", str(st), "--dir", str(tmp_path / "bl")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["baseline", "show", "--dir", str(tmp_path / "bl")])
    assert res.exit_code == 0 and "edgeformer_s" in res.output and "rk3288" in res.output
    cur = write_bench(tmp_path / "cur.json", {"edgeformer_s": samples(14) * 1.3, "mobilevit_s": samples(15, 150, 31.8)})
    res = runner.invoke(main, ["compare", f"baseline:main@{tmp_path / 'bl'}", str(cur)])
    assert res.exit_code == 1
    res = runner.invoke(main, ["compare", run1.run_id[:6], str(base), "--store", str(st)])
    assert res.exit_code == 0, res.output


def test_report_command_writes_html_and_markdown(tmp_path: Path, base: Path) -> None:
    cur = write_bench(tmp_path / "cur.json", {"edgeformer_s": samples(16) * 1.3}, commit="beef002")
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    res = CliRunner().invoke(main, ["report", str(base), str(cur), "--html", str(html), "--markdown", str(md)])
    assert res.exit_code == 0, res.output
    page = html.read_text()
    assert page.count("<svg") == 3 and "edgeformer_s" in page
    assert "edgeformer_s" in md.read_text()
    res = CliRunner().invoke(main, ["report", str(cur), "--baseline", str(base), "--markdown", str(md)])
    assert res.exit_code == 0 and "regression" in md.read_text()
    assert CliRunner().invoke(main, ["report", str(cur)]).exit_code == 2


@pytest.mark.slow
def test_module_entry_point_exit_codes(base: Path, tmp_path: Path) -> None:
    cur = write_bench(
        tmp_path / "cur.json", {"edgeformer_s": samples(17) * 1.25, "mobilevit_s": samples(18, 150, 31.8)}
    )
    cmd = [sys.executable, "-m", "edgedeploy.results.cli", "compare"]
    assert subprocess.run([*cmd, str(base), str(cur)], capture_output=True, check=False).returncode == 1
    assert subprocess.run([*cmd, str(base), str(base)], capture_output=True, check=False).returncode == 0
    bad = subprocess.run([*cmd, str(base), str(tmp_path / "x.json")], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_default_rerun_command_parses_as_a_bench_invocation(tmp_path: Path) -> None:
    """The --confirm default must stay in step with the real `edgedeploy bench` options."""
    from edgedeploy.results.cli import DEFAULT_RERUN_CMD

    cli = pytest.importorskip("edgedeploy.cli")
    bench = cli.main.commands.get("bench")
    if bench is None:
        pytest.skip("edgedeploy bench not wired yet")
    argv = [
        tok.format(model="edgeformer_s", format="mnn", precision="fp32", runtime="mnn", device="local", threads=2,
                   iterations=100, warmup=10, out=str(tmp_path / "r.json"))
        for tok in shlex.split(DEFAULT_RERUN_CMD)
    ]  # fmt: skip
    assert argv[:2] == ["edgedeploy", "bench"]
    ctx = bench.make_context("bench", argv[2:])
    assert ctx.params["runtime"] == "mnn" and ctx.params["threads"] == 2 and ctx.params["out"].endswith("r.json")


def test_append_result_is_what_bench_out_uses(tmp_path: Path) -> None:
    from edgedeploy.results import sources, store

    path = store.append_result(
        tmp_path, sources.load_source(write_bench(tmp_path / "b.json", {"emo_5m": samples(19)}))[0]
    )
    assert path.parent == tmp_path and store.list_runs(tmp_path)[0].results[0].model == "emo_5m"
