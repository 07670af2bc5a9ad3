"""``edgedeploy calibrate`` on the host (onnxruntime): real A/A and extra-block trials, a stored calibration that
``ab`` then uses and names; the trial replay of the sequential rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from edgedeploy.results.ab_calibrate import Trial, choose, replay, score
from edgedeploy.results.ab_verdict import ABRule


@pytest.mark.slow
def test_calibrate_stores_a_power_curve_that_ab_uses(tmp_path: Path) -> None:
    env = {"EDGEDEPLOY_CALIBRATION": str(tmp_path / "cal")}
    r = run_cli("calibrate", "--max-seconds", "40", "--trial-seconds", "4", "--input-size", "48", "--json",
                env=env, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    cal = json.loads(r.stdout)
    assert cal["device"] == "local" and cal["device_id"].startswith("local:")
    assert set(cal["power"]) == {"+3%", "+5%", "+10%", "+20%"}
    assert cal["false_alarm"]["trials"] >= 1
    assert cal["power"]["+20%"]["achieved_pct"] > cal["power"]["+3%"]["achieved_pct"] > 0  # real extra blocks
    stored = tmp_path / "cal" / "local.json"
    assert json.loads(stored.read_text())["block_ms"] == cal["block_ms"]
    card = tmp_path / "m.yaml"
    card.write_text("entry: edgedeploy.nn.abnet:abnet\nname: abnet_cal\ninput_shape: [1, 3, 32, 32]\n"
                    "kwargs: {blocks: 8}\n")  # fmt: skip
    r = run_cli("ab", str(card), str(card), "--runtime", "onnxruntime", "--threads", "1", "--json", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"calibration {stored}" in " ".join(r.stderr.split())
    assert json.loads(r.stdout)["confidence"] == cal["confidence"]


def test_replay_is_the_sequential_rule_on_the_recorded_prefix() -> None:
    rule = ABRule(3.0, 0.99)
    t = Trial("+5%", 50.0, [1.05, 1.06, 1.05, 1.04, 1.05, 1.06, 1.05, 1.05], 0.1)
    verdict, secs = replay(t, rule)
    assert verdict == "regression" and secs == pytest.approx(0.6)  # decided at min_blocks = 6
    aa = Trial("A/A", 50.0, [1.0, 1.01, 0.99, 1.0, 1.0, 1.01, 0.99], 0.1)
    assert replay(aa, rule)[0] == "unchanged"
    noisy = Trial("A/A", 50.0, [1.2, 0.8, 1.1, 0.9, 1.2, 0.8], 0.1)
    assert replay(noisy, rule) == ("inconclusive", pytest.approx(0.6))


def test_choose_keeps_false_alarms_at_most_1_percent() -> None:
    bad = Trial("A/A", 25.0, [1.05] * 8, 0.05)  # an A/A trial that a loose rule flags
    trials = [bad, *[Trial("A/A", 25.0, [1.0, 1.01, 0.99] * 3, 0.05)] * 99, Trial("+5%", 25.0, [1.06] * 8, 0.05)]
    c = score(trials, 25.0, 0.95, 3.0)
    assert c["conditions"]["A/A"]["regression"] == 1 and c["conditions"]["A/A"]["trials"] == 100
    assert choose([c])["meets_target"] is True  # 1 / 100 = 1 %
    c2 = score([bad, bad, *trials[1:3]], 25.0, 0.95, 3.0)
    assert choose([c2])["meets_target"] is False
