"""The regression rule on constructed sample sets: its logic, the shift estimate and the confirm hook."""

from __future__ import annotations

import numpy as np
import pytest

from edgedeploy.errors import ConfigError
from edgedeploy.results.compare import (
    RegressionRule,
    compare_results,
    compare_samples,
    decide,
    hodges_lehmann,
    mann_whitney_p,
    parse_threshold,
    select_samples,
)
from edgedeploy.results.result import BenchResult

KEY = ("edgeformer_s", "onnx", "fp32", "onnxruntime", "local", 2)


def latency(n: int = 200, median: float = 20.0, sigma: float = 0.04, seed: int = 0, spikes: float = 0.02) -> np.ndarray:
    """Latency-like samples (ms): log-normal around ``median`` plus rare one-sided spikes (interference)."""
    rng = np.random.default_rng(seed)
    x = median * np.exp(rng.normal(0.0, sigma, n))
    spike = rng.random(n) < spikes
    x[spike] *= 1.0 + rng.exponential(0.5, spike.sum())
    return x


def result(
    samples: np.ndarray | list[float], model: str = "edgeformer_s", fmt: str = "onnx", **kw: object
) -> BenchResult:
    fields: dict[str, object] = dict(
        model=model,
        format=fmt,
        runtime="onnxruntime",
        device="local",
        threads=2,
        iterations=len(samples),
        warmup=10,
        samples_ms=[float(s) for s in samples],
    )
    fields.update(kw)
    return BenchResult(**fields)  # type: ignore[arg-type]


def test_no_change_is_unchanged() -> None:
    row = compare_samples(KEY, latency(seed=1), latency(seed=2))
    assert row.verdict == "unchanged"
    assert abs(row.change_pct) < 3


def test_same_samples_reshuffled_is_unchanged_with_p_one() -> None:
    base = latency(seed=3)
    cur = np.random.default_rng(9).permutation(base)
    row = compare_samples(KEY, base, cur)
    assert row.verdict == "unchanged"
    assert row.p_value == pytest.approx(1.0)
    assert row.change_pct == pytest.approx(0.0)
    assert row.shift is not None and row.shift.estimate_ms == pytest.approx(0.0)


def test_shift_of_25_percent_is_a_regression() -> None:
    base = latency(seed=4)
    row = compare_samples(KEY, base, latency(seed=5) * 1.25)
    assert row.verdict == "regression"
    assert 20 < row.change_pct < 30
    assert row.p_value < 1e-10
    s = row.shift
    assert s is not None and s.low_ms > 0 and s.low_ms <= s.estimate_ms <= s.high_ms
    assert s.estimate_ms == pytest.approx(0.25 * 20.0, rel=0.2)


def test_improvement_is_not_a_regression() -> None:
    row = compare_samples(KEY, latency(seed=6), latency(seed=7) * 0.8)
    assert row.verdict == "improvement"
    assert row.change_pct < -15


def test_noisier_with_same_median_is_unchanged() -> None:
    base = latency(seed=8, sigma=0.03)
    cur = latency(seed=9, sigma=0.15)  # 5x the spread, same centre
    row = compare_samples(KEY, base, cur)
    assert row.verdict == "unchanged"


def test_significant_but_below_threshold_is_unchanged_with_note() -> None:
    base = latency(n=2000, seed=10, sigma=0.02, spikes=0)
    cur = latency(n=2000, seed=11, sigma=0.02, spikes=0) * 1.03
    row = compare_samples(KEY, base, cur, RegressionRule(threshold_pct=5))
    assert row.p_value < 1e-6
    assert row.verdict == "unchanged"
    assert "threshold" in row.note
    # the same data with a lower threshold is a regression: the threshold is what decided
    assert compare_samples(KEY, base, cur, RegressionRule(threshold_pct=2)).verdict == "regression"


def test_absolute_floor_blocks_tiny_models() -> None:
    base = latency(median=0.2, seed=12, spikes=0)
    cur = latency(median=0.2, seed=13, spikes=0) * 1.3  # +30 % but only +0.06 ms
    assert compare_samples(KEY, base, cur, RegressionRule(min_abs_ms=0.1)).verdict == "unchanged"
    assert compare_samples(KEY, base, cur, RegressionRule(min_abs_ms=0.01)).verdict == "regression"


def test_too_few_samples_to_ever_flag_is_insufficient_not_unchanged() -> None:
    base = latency(n=4, seed=14)
    cur = latency(n=4, seed=15) * 1.10
    row = compare_samples(KEY, base, cur, RegressionRule(alpha=0.01))
    assert row.p_value >= 0.01  # four samples each cannot reach p < 0.01 two-sided: 2 / C(8, 4) = 0.029
    assert row.verdict == "insufficient"
    assert "need at least 5 per side" in row.note


def test_decide_table() -> None:
    rule = RegressionRule(threshold_pct=5, alpha=0.01, min_abs_ms=0.1)
    assert decide(0.001, 6.0, 1.0, rule) == "regression"
    assert decide(0.02, 6.0, 1.0, rule) == "unchanged"
    assert decide(0.001, 4.9, 1.0, rule) == "unchanged"
    assert decide(0.001, 6.0, 0.05, rule) == "unchanged"
    assert decide(0.001, -6.0, -1.0, rule) == "improvement"


def test_missing_keys_both_directions() -> None:
    base = [result(latency(seed=16)), result(latency(seed=17), model="mobilevit_s")]
    cur = [result(latency(seed=18)), result(latency(seed=19), model="emo_5m")]
    rep = compare_results(base, cur)
    by_model = {r.model: r for r in rep.rows}
    assert by_model["mobilevit_s"].verdict == "missing" and "not in" in by_model["mobilevit_s"].note
    assert by_model["emo_5m"].verdict == "missing" and "new" in by_model["emo_5m"].note
    assert by_model["edgeformer_s"].verdict == "unchanged"
    assert rep.exit_code == 0


def test_report_sorts_regressions_first_and_exit_code() -> None:
    base = [result(latency(seed=20), model=m) for m in ("a_model", "b_model", "c_model")]
    cur = [
        result(latency(seed=21), model="a_model"),
        result(latency(seed=22) * 1.4, model="b_model"),
        result(latency(seed=23) * 1.2, model="c_model"),
    ]
    rep = compare_results(base, cur)
    order = [r.model for r in rep.sorted_rows()]
    assert order == ["b_model", "c_model", "a_model"]
    assert rep.exit_code == 1
    assert len(rep.regressions) == 2


def test_keys_differ_by_threads_and_format() -> None:
    base = [result(latency(seed=24), threads=1), result(latency(seed=25), fmt="mnn")]
    cur = [result(latency(seed=26) * 1.5, threads=1), result(latency(seed=27), fmt="mnn")]
    rep = compare_results(base, cur)
    verdicts = {(r.key[1], r.key[5]): r.verdict for r in rep.rows}
    assert verdicts == {("onnx", 1): "regression", ("mnn", 2): "unchanged"}


def test_select_fastest_run_and_latest_commit() -> None:
    quiet = result(latency(seed=28), git_commit="c1", timestamp="2026-01-01T00:00:02+00:00")
    slow = result(latency(seed=29) * 1.8, git_commit="c1", timestamp="2026-01-01T00:00:03+00:00")
    old = result(latency(seed=30) * 0.5, git_commit="c0", timestamp="2026-01-01T00:00:01+00:00")
    samples, n = select_samples([old, quiet, slow], "fastest")
    assert n == 2  # the c0 run is of an older commit and is dropped
    assert samples == quiet.samples_ms
    pooled, n = select_samples([old, quiet, slow], "pool")
    assert len(pooled) == len(quiet.samples_ms) + len(slow.samples_ms)


def test_fastest_baseline_run_absorbs_a_slow_phase() -> None:
    base = [result(latency(seed=31) * 1.8), result(latency(seed=32))]  # one run caught in a slow phase
    cur = [result(latency(seed=33))]
    assert compare_results(base, cur).exit_code == 0
    assert compare_results(base, cur, RegressionRule(aggregate="pool")).rows[0].verdict != "regression"


def test_hodges_lehmann_matches_brute_force_and_covers() -> None:
    x = [1.0, 2.0, 4.0, 7.0]
    y = [3.0, 5.0, 6.0]
    diffs = sorted(b - a for a in x for b in y)
    assert hodges_lehmann(x, y).estimate_ms == pytest.approx(float(np.median(diffs)))
    # coverage of the 95 % interval for a known shift of 1.0 ms over repeated draws
    rng = np.random.default_rng(34)
    covered = 0
    trials = 300
    for _ in range(trials):
        a = rng.gamma(4.0, 1.0, 40)
        b = rng.gamma(4.0, 1.0, 40) + 1.0
        s = hodges_lehmann(a, b, confidence=0.95)
        covered += s.low_ms <= 1.0 <= s.high_ms
    assert 0.90 <= covered / trials <= 0.99


def test_mann_whitney_p_is_calibrated_under_the_null() -> None:
    rng = np.random.default_rng(35)
    ps = np.array([mann_whitney_p(rng.lognormal(0, 0.1, 50), rng.lognormal(0, 0.1, 50)) for _ in range(400)])
    assert 0.02 <= (ps < 0.05).mean() <= 0.09
    assert mann_whitney_p([1.0, 1.0], [1.0, 1.0]) == 1.0


def test_confirm_hook_keeps_a_confirmed_regression() -> None:
    base = [result(latency(seed=36))]
    cur = [result(latency(seed=37) * 1.3)]
    calls: list[tuple] = []

    def rerun(key: tuple) -> BenchResult:
        calls.append(key)
        return result(latency(seed=38) * 1.3)

    rep = compare_results(base, cur, rerun=rerun)
    assert calls == [cur[0].key]
    row = rep.rows[0]
    assert row.verdict == "regression" and row.rerun is not None and "confirmed" in row.note
    assert rep.exit_code == 1


def test_confirm_hook_drops_a_transient_slowdown() -> None:
    base = [result(latency(seed=39))]
    cur = [result(latency(seed=40) * 1.6)]  # e.g. the host's slow phase
    rep = compare_results(base, cur, rerun=lambda key: result(latency(seed=41)))
    row = rep.rows[0]
    assert row.verdict == "unchanged" and row.first_verdict == "regression"
    assert "not confirmed" in row.note
    assert rep.exit_code == 0


def test_confirm_not_called_without_regression() -> None:
    def boom(key: tuple) -> BenchResult:
        raise AssertionError("must not re-run")

    rep = compare_results([result(latency(seed=42))], [result(latency(seed=43))], rerun=boom)
    assert rep.exit_code == 0


def test_confirm_wrong_key_is_bad_input() -> None:
    with pytest.raises(ConfigError):
        compare_results(
            [result(latency(seed=44))],
            [result(latency(seed=45) * 1.5)],
            rerun=lambda key: result(latency(seed=46), model="other"),
        )


@pytest.mark.parametrize(("text", "value"), [("5%", 5.0), ("7.5 %", 7.5), ("10", 10.0), (2.5, 2.5)])
def test_parse_threshold(text: str | float, value: float) -> None:
    assert parse_threshold(text) == value


@pytest.mark.parametrize("text", ["five", "-5%", "nan", ""])
def test_parse_threshold_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_threshold(text)


def test_rule_validation_and_empty_inputs() -> None:
    with pytest.raises(ConfigError):
        RegressionRule(alpha=0.0)
    with pytest.raises(ConfigError):
        RegressionRule(min_abs_ms=-1)
    with pytest.raises(ConfigError):
        compare_results([], [result(latency())])
    with pytest.raises(ConfigError):
        compare_samples(KEY, [], [1.0])
    with pytest.raises(ConfigError):
        compare_samples(KEY, [1.0, float("nan")], [1.0])


def test_to_json_round_trip() -> None:
    import json

    rep = compare_results([result(latency(seed=47))], [result(latency(seed=48) * 1.3)])
    d = json.loads(rep.to_json())
    assert d["summary"]["regressions"] == 1
    assert d["rows"][0]["model"] == "edgeformer_s" and d["rows"][0]["verdict"] == "regression"
    assert d["rule"]["threshold_pct"] == rep.rule.threshold_pct
