"""``edgedeploy export MODEL --to all``: every format in turn, an honest table, a non-zero exit on failure."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import run_cli
from rich.console import Console

from edgedeploy.commands.export_all import exit_code, run_export_all
from edgedeploy.commands.tables import export_all_table
from edgedeploy.errors import UnsupportedOpError
from edgedeploy.export import multi
from edgedeploy.export.parity import ParityReport
from edgedeploy.options import ExportOptions

FORMATS = ["onnx", "mnn", "tflite", "coreml"]


def _outcome(fmt: str, tmp: Path, report: ParityReport) -> Any:
    status = {"passed": "parity passed", "failed": "parity failed", "not run": "exported"}[report.status]
    manifest = SimpleNamespace(status=status, size_bytes=1_234_567, timings_s={"export": 1.5})
    return SimpleNamespace(artifact=tmp / f"m.{fmt}", manifest=manifest, parity=report)


@pytest.fixture
def fake_export(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []

    def export_model(model: str, fmt: str, out_dir: Any, opts: Any = None, **kw: Any) -> Any:
        precision = opts.precision if opts is not None else "fp32"
        calls.append((fmt, precision))
        if fmt == "mnn":
            raise UnsupportedOpError("MNN conversion failed", op="GridSample", node="/layer_3/GridSample")
        if fmt == "tflite":
            r = ParityReport("failed", False, 0.5, 0.1, 0.9, 0.2, ["x"], {}, ["max abs error 0.5 > 0.001"], "litert")
            return _outcome(fmt, tmp_path, r)
        if fmt == "coreml":
            return _outcome(fmt, tmp_path, ParityReport.not_run("CoreML prediction needs macOS"))
        return _outcome(fmt, tmp_path, ParityReport("passed", True, 1e-7, 1e-7, 1.0, 1.0, ["x"], {}, [], "ort"))

    import edgedeploy.export.pipeline as pipeline

    monkeypatch.setattr(pipeline, "export_model", export_model)
    return calls


def test_every_format_is_tried_and_failures_are_named(fake_export: list, tmp_path: Path) -> None:
    results = multi.export_each("m", FORMATS, tmp_path)
    assert [c[0] for c in fake_export] == FORMATS  # one failure does not stop the others
    by = {r.format: r for r in results}
    assert by["onnx"].status == "parity passed"
    assert (
        by["mnn"].status == "export failed" and by["mnn"].op == "GridSample" and by["mnn"].node == "/layer_3/GridSample"
    )
    assert by["tflite"].status == "parity failed"
    assert by["coreml"].status == "exported" and by["coreml"].parity["passed"] is None
    assert exit_code(results) == 4
    con = Console(record=True, width=200)
    con.print(export_all_table("m", results))
    text = con.export_text()
    for needle in ("parity passed", "export failed at op GridSample node /layer_3/GridSample", "parity failed",
                   "parity not run: CoreML prediction needs macOS", "1.23 MB", "1.5 s"):  # fmt: skip
        assert needle in text, needle


def test_exit_codes() -> None:
    r = lambda s: multi.FormatResult("f", "fp32", s)  # noqa: E731
    assert exit_code([r("parity passed"), r("exported")]) == 0
    assert exit_code([r("parity passed"), r("parity failed")]) == 1
    assert exit_code([r("parity failed"), r("export failed")]) == 4
    assert exit_code([r("missing extra")]) == 3


def test_precision_a_format_lacks_is_skipped(
    fake_export: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgedeploy.export.coreml import CoreMlExporter

    monkeypatch.setattr(CoreMlExporter, "precisions", ("fp32",))
    results = multi.export_each("m", ["onnx", "coreml"], tmp_path, ExportOptions(precision="int8"))
    assert [r.status for r in results] == ["parity passed", "skipped"]
    assert ("coreml", "int8") not in fake_export


def test_json_output_is_a_list(fake_export: list, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = run_export_all("m", ["onnx", "coreml"], tmp_path, True)
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["format"] for r in rows] == ["onnx", "coreml"]
    assert rows[1]["parity"]["status"] == "not run" and rows[1]["parity"]["passed"] is None


@pytest.mark.slow
def test_cli_to_all_real(tmp_path: Path) -> None:
    """The real thing on the smallest transformer: every registered format, one table, exit 0 (CoreML: not run on
    Linux)."""
    from edgedeploy import registry

    proc = run_cli("export", "mobilevit_xxs", "--to", "all", "--out", str(tmp_path), "--json", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    assert [r["format"] for r in rows] == registry.format_names()
    for r in rows:
        assert Path(r["artifact"]).exists() and r["size_bytes"] > 0
        assert (r["status"] == "exported") if r["format"] == "coreml" else (r["status"] == "parity passed")
    assert "export to every format" in proc.stderr


def _all_variants() -> list[str]:
    from edgedeploy.zoo import list_models

    return [c.name for c in list_models()]


@pytest.mark.slow
@pytest.mark.parametrize("model", _all_variants())
def test_every_variant_exports_to_onnx_and_mnn_with_parity(model: str, tmp_path: Path) -> None:
    """Issue 4, item 7: every zoo variant to ONNX and MNN at fp32, parity passing (TFLite: test_tflite.py)."""
    results = multi.export_each(model, ["onnx", "mnn"], tmp_path)
    for r in results:
        assert r.status == "parity passed", (r.format, r.error, r.parity.get("failures"))


def _count_export_checks(monkeypatch: pytest.MonkeyPatch) -> list[ExportOptions]:
    from edgedeploy import limits

    checks: list[ExportOptions] = []
    real = limits.check_export_options
    monkeypatch.setattr(limits, "check_export_options", lambda opts: checks.append(opts) or real(opts))
    return checks


@pytest.mark.parametrize("to", ["onnx", "all"])
def test_cli_bad_export_option_is_refused_by_the_api(
    to: str, fake_export: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI relies on the API's check (issue 21): the same one-line error and exit 2, nothing exported."""
    from click.testing import CliRunner

    from edgedeploy.cli import main

    checks = _count_export_checks(monkeypatch)
    res = CliRunner().invoke(main, ["export", "m", "--to", to, "--opset", "99", "--out", str(tmp_path / "never")])
    assert res.exit_code == 2 and "--opset must be between" in res.stderr
    assert len(checks) == 1 and checks[0].opset == 99
    assert fake_export == [] and not (tmp_path / "never").exists()


def test_cli_export_options_are_checked_once(
    fake_export: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One CLI export, one check of its options (at the API boundary, not again in the CLI)."""
    from click.testing import CliRunner

    from edgedeploy.cli import main

    checks = _count_export_checks(monkeypatch)
    res = CliRunner().invoke(main, ["export", "m", "--to", "all", "--opset", "17", "--out", str(tmp_path)])
    assert res.exit_code == 4, res.stderr  # the fake's mnn export fails
    assert len(checks) == 1 and checks[0].opset == 17
    from edgedeploy import registry

    assert [c[0] for c in fake_export] == registry.format_names()
