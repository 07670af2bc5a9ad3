"""``edgedeploy ab`` on the host with a real runtime (onnxruntime): A/A, a real extra-block slowdown, bad inputs.

The candidate of the regression test is ABNet with 6 more depthwise-separable blocks than the baseline's 30 (a
real graph change, ~+20 %), not a busy-wait. The sequential rule, its JSON document and the exit codes are
checked through the real CLI in a child process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_cli

from edgedeploy.results.ab_verdict import ABRule, band_verdict, evaluate, interval

KEYS = ["verdict", "ratio", "ci_low", "ci_high", "confidence", "threshold_pct", "blocks", "block_ratios",
        "baseline", "candidate", "device", "runtime", "elapsed_s", "memory_verdict"]  # fmt: skip
COMMON = ["--runtime", "onnxruntime", "--threads", "1", "--no-calibration"]


def card(folder: Path, name: str, extra: int, size: int = 64, blocks: int = 30) -> Path:
    p = folder / f"{name}.yaml"
    p.write_text(
        f"entry: edgedeploy.nn.abnet:abnet\nname: {name}\ninput_shape: [1, 3, {size}, {size}]\n"
        f"kwargs: {{extra_blocks: {extra}, blocks: {blocks}}}\n"
    )
    return p


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("abcards")
    return {
        "base": card(d, "abnet_base", 0),
        "slow": card(d, "abnet_plus6", 6),
        "small": card(d, "abnet_48", 0, size=48),
    }


def test_a_a_is_unchanged_and_json_has_exactly_the_documented_keys(cards: dict[str, Path]) -> None:
    r = run_cli("ab", str(cards["base"]), str(cards["base"]), *COMMON, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert list(doc) == KEYS
    assert doc["verdict"] == "unchanged"
    assert doc["ci_low"] >= 0.97 and doc["ci_high"] <= 1.03
    assert doc["blocks"] == len(doc["block_ratios"]) >= 6
    for side in ("baseline", "candidate"):
        assert doc[side]["median_ms"] > 0
        assert len(doc[side]["samples_ms"]) >= 6 * 3
    assert doc["device"] == "local" and doc["runtime"] == "onnxruntime"
    assert "no calibration" in r.stderr
    # memory: each side in its own fresh child process; the same file twice is not a memory regression
    for side in ("baseline", "candidate"):
        assert doc[side]["peak_rss_mb"] > doc[side]["rss_delta_mb"] > 0, doc[side]["not_measured"]
    assert doc["memory_verdict"] == "unchanged"
    assert "memory unchanged (peak RSS" in " ".join(r.stderr.split())


def test_extra_blocks_are_a_regression_exit_1(cards: dict[str, Path], tmp_path: Path) -> None:
    md = tmp_path / "ab.md"
    r = run_cli("ab", str(cards["base"]), str(cards["slow"]), *COMMON, "--json", "--markdown", str(md))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "regression"
    assert doc["ci_low"] > 1.03
    assert 1.08 < doc["ratio"] < 1.5  # six more blocks of thirty
    assert doc["candidate"]["median_ms"] > doc["baseline"]["median_ms"]
    text = md.read_text()
    assert "**regression**" in text and "abnet_plus6" in text


def test_swapped_sides_are_an_improvement_exit_0(cards: dict[str, Path]) -> None:
    r = run_cli("ab", str(cards["slow"]), str(cards["base"]), *COMMON, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdict"] == "improvement"


def test_a_tiny_budget_is_inconclusive_exit_0(cards: dict[str, Path]) -> None:
    r = run_cli("ab", str(cards["base"]), str(cards["base"]), *COMMON, "--json", "--max-seconds", "0.01",
                "--block-size", "3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "inconclusive" and doc["blocks"] < 6


def _one_line_exit_2(r: object, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)  # type: ignore[attr-defined]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("building")]  # type: ignore[attr-defined]
    last = lines[-1]
    assert "Traceback" not in r.stderr  # type: ignore[attr-defined]
    for n in needles:
        assert n in last, last


def test_different_input_shapes_exit_2(cards: dict[str, Path]) -> None:
    _one_line_exit_2(run_cli("ab", str(cards["base"]), str(cards["small"]), *COMMON), "different inputs")


def test_max_seconds_0_exit_2(cards: dict[str, Path]) -> None:
    _one_line_exit_2(run_cli("ab", str(cards["base"]), str(cards["base"]), *COMMON, "--max-seconds", "0"),
                     "--max-seconds")  # fmt: skip


@pytest.mark.slow
def test_two_formats_exit_2(cards: dict[str, Path], tmp_path: Path) -> None:
    """Two artifacts of two formats; an artifact against a spec exported to another format."""
    out = tmp_path / "art"
    for fmt in ("onnx", "mnn"):
        r = run_cli("export", str(cards["base"]), "--to", fmt, "--out", str(out), "--no-parity")
        assert r.returncode == 0, r.stderr
    onnx, mnn = sorted(out.glob("*.onnx"))[0], sorted(out.glob("*.mnn"))[0]
    _one_line_exit_2(run_cli("ab", str(onnx), str(mnn), "--threads", "1"), "different formats")
    # an MNN artifact against a spec exported for onnxruntime (ONNX)
    _one_line_exit_2(run_cli("ab", str(mnn), str(cards["base"]), *COMMON), "mnn")
    # the same MNN artifact against the spec without --runtime: the spec is exported to MNN and it is an A/A
    r = run_cli("ab", str(mnn), str(cards["base"]), "--threads", "1", "--no-calibration", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["candidate"]["format"] == "mnn"


def test_a_calibration_of_another_device_exit_2(cards: dict[str, Path], tmp_path: Path) -> None:
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({
        "kind": "edgedeploy.ab-calibration", "device": "local", "device_id": "local:some-other-host:ARM:4",
        "created": "2026-12-06T00:00:00Z", "block_ms": 100, "confidence": 0.99, "threshold_pct": 3,
    }))  # fmt: skip
    r = run_cli("ab", str(cards["base"]), str(cards["base"]), "--runtime", "onnxruntime", "--calibration", str(cal))
    _one_line_exit_2(r, "some-other-host", "calibrate")


# ----------------------------------------------------------------------------------------- the rule itself
def test_the_band_rule() -> None:
    assert band_verdict(1.031, 1.2, 3) == "regression"
    assert band_verdict(0.8, 0.969, 3) == "improvement"
    assert band_verdict(0.98, 1.02, 3) == "unchanged"
    assert band_verdict(0.99, 1.04, 3) is None


def test_interval_is_a_t_interval_on_log_ratios() -> None:
    from scipy import stats

    ratios = [1.01, 0.99, 1.02, 1.0, 0.98, 1.03]
    logs = [math.log(r) for r in ratios]
    lo, hi = stats.t.interval(0.95, len(logs) - 1, loc=sum(logs) / len(logs), scale=stats.sem(logs))
    est, low, high = interval(ratios, stats.t.ppf(0.975, len(logs) - 1))
    assert math.isclose(low, math.exp(lo)) and math.isclose(high, math.exp(hi))
    assert math.isclose(est, math.exp(sum(logs) / len(logs)))


def test_no_verdict_before_min_blocks_and_inconclusive_when_final() -> None:
    rule = ABRule(3.0, 0.99, 6)
    assert evaluate([1.0] * 5, rule).verdict is None
    assert evaluate([1.0] * 5, rule, final=True).verdict == "inconclusive"
    assert evaluate([1.0, 1.001, 0.999, 1.0, 1.0, 1.0], rule).verdict == "unchanged"
