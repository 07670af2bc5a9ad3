"""``edgedeploy calibrate --device D``: measure the sequential A/B rule's false alarms and power ON that device.

What it runs
------------
ABNet (:mod:`edgedeploy.nn.abnet`, ``blocks`` depthwise-separable blocks at ``input_size``) is exported once, and
so are its slowed variants with extra blocks for nominal +3 / +5 / +10 / +20 % (real graph changes, not
busy-waits). Each *trial* is one interleaved A/B (:mod:`edgedeploy.bench.ab`; both sides in one process, on a
board in one runner process): A/A trials pair two separately loaded sessions of the base model, slowdown trials
the base against a variant. A trial records blocks until the strictest candidate rule decides (or
``trial_seconds`` / the block cap); every candidate rule (block length × confidence) is then replayed on the
recorded prefix, which is exactly what running it sequentially would have given, so one set of trials scores all
confidences of one block length.

What it chooses
---------------
Among the candidates whose A/A false-alarm rate (``regression`` verdicts on A/A trials) is ≤ 1 %, the one that
detects the most +5 % trials, then the fastest (median seconds per verdict). The achieved slowdown of each variant
is measured (the median block ratio over its trials), not assumed. With few trials a 0/N false-alarm count only
bounds the rate (the report states N). The result is stored per device (:mod:`edgedeploy.results.ab_calibration`)
and ``edgedeploy ab --device D`` uses it.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgedeploy.bench.ab import ABTiming, BlockPlan
from edgedeploy.errors import ConfigError
from edgedeploy.results.ab_calibration import Calibration, device_id
from edgedeploy.results.ab_verdict import ABRule, block_ratio, evaluate

SLOWDOWNS_PCT = (3.0, 5.0, 10.0, 20.0)
BLOCK_MS_CHOICES = (25.0, 50.0, 100.0)
CONFIDENCE_CHOICES = (0.95, 0.99, 0.995, 0.999)
TARGET_FALSE_ALARM = 0.01


@dataclass(frozen=True)
class CalibrateOptions:
    """``max_seconds``: the whole calibration's time budget (s, > 0; trials stop when it is spent);
    ``trial_seconds``: one trial's cap (s); ``trials``: rounds at most (each round: 2 A/A trials and one per
    slowdown, per block length); ``threshold_pct``: the band the rule uses; ``input_size`` / ``blocks``: ABNet's
    size; ``runtime`` / ``threads`` as for ``ab``; ``seed`` orders the trials."""

    device: str = "local"
    runtime: str = "onnxruntime"
    threads: int | None = 1
    max_seconds: float = 900.0
    trial_seconds: float = 20.0
    trials: int = 1000
    threshold_pct: float = 3.0
    input_size: int = 96
    blocks: int = 60
    block_ms: tuple[float, ...] = BLOCK_MS_CHOICES
    confidences: tuple[float, ...] = CONFIDENCE_CHOICES
    slowdowns_pct: tuple[float, ...] = SLOWDOWNS_PCT
    seed: int = 0
    progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if not self.max_seconds > 0 or not self.trial_seconds > 0:
            raise ConfigError("--max-seconds and --trial-seconds must be > 0")
        if self.trials < 1 or self.blocks < 4 or not (16 <= self.input_size <= 512):
            raise ConfigError("--trials >= 1, blocks >= 4, --input-size in 16..512")
        ABRule(self.threshold_pct, max(self.confidences))


@dataclass
class Trial:
    """One recorded trial: condition (``A/A`` or ``+5%`` …), block length, the block ratios, block wall time (s)."""

    condition: str
    block_ms: float
    ratios: list[float]
    seconds_per_block: float


@dataclass
class CalibrationRun:
    """Every trial and the resulting :class:`Calibration` (``calibration``)."""

    trials: list[Trial] = field(default_factory=list)
    calibration: Calibration | None = None
    elapsed_s: float = 0.0


def replay(trial: Trial, rule: ABRule) -> tuple[str, float]:
    """The verdict the sequential ``rule`` gives on ``trial``'s recorded blocks, and the seconds it took."""
    for n in range(rule.min_blocks, len(trial.ratios) + 1):
        v = evaluate(trial.ratios[:n], rule).verdict
        if v is not None:
            return v, n * trial.seconds_per_block
    return "inconclusive", len(trial.ratios) * trial.seconds_per_block


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def score(trials: list[Trial], block_ms: float, confidence: float, threshold_pct: float) -> dict[str, Any]:
    """False alarms, detection per slowdown and seconds per verdict of one candidate rule over the trials."""
    rule = ABRule(threshold_pct, confidence)
    out: dict[str, Any] = {"block_ms": block_ms, "confidence": confidence, "threshold_pct": threshold_pct,
                           "conditions": {}}  # fmt: skip
    secs: list[float] = []
    for cond in sorted({t.condition for t in trials if t.block_ms == block_ms}):
        got = [replay(t, rule) for t in trials if t.block_ms == block_ms and t.condition == cond]
        verdicts = [v for v, _ in got]
        secs += [s for _, s in got]
        out["conditions"][cond] = {
            "trials": len(got),
            **{v: verdicts.count(v) for v in ("regression", "improvement", "unchanged", "inconclusive")},
            "rate": verdicts.count("regression") / len(got) if got else float("nan"),
            "median_s": _pct([s for _, s in got], 0.5),
            "p95_s": _pct([s for _, s in got], 0.95),
        }
    out["median_s"], out["p95_s"] = _pct(secs, 0.5), _pct(secs, 0.95)
    return out


def choose(cands: list[dict[str, Any]], target: float = TARGET_FALSE_ALARM) -> dict[str, Any]:
    """The candidate with A/A false alarms ≤ ``target`` detecting the most +5 % trials, then the fastest; when
    none meets the target, the one with the fewest false alarms (its ``meets_target`` is False)."""

    def fa(c: dict[str, Any]) -> float:
        return c["conditions"].get("A/A", {}).get("rate", 1.0)

    def key(c: dict[str, Any]) -> tuple[float, float]:
        five = c["conditions"].get("+5%", {}).get("rate", 0.0)
        return (-five, c["median_s"])

    ok = [c for c in cands if fa(c) <= target]
    best = min(ok, key=key) if ok else min(cands, key=lambda c: (fa(c), *key(c)))
    return {**best, "meets_target": bool(ok)}


def _achieved(trials: list[Trial], cond: str) -> float:
    rs = [r for t in trials if t.condition == cond for r in t.ratios]
    return (statistics.median(rs) - 1) * 100 if rs else float("nan")


def build_calibration(run: CalibrationRun, opts: CalibrateOptions, profile: Any) -> Calibration:
    """Score every candidate on ``run.trials``, choose one (:func:`choose`), and describe it."""
    from edgedeploy.results.result import utc_now_iso

    cands = [score(run.trials, b, c, opts.threshold_pct) for b in opts.block_ms for c in opts.confidences
             if any(t.block_ms == b for t in run.trials)]  # fmt: skip
    if not cands:
        raise ConfigError("no trial finished within --max-seconds; give it more time")
    best = choose(cands)
    conds = best["conditions"]
    power = {}
    for pct in opts.slowdowns_pct:
        label = f"+{pct:g}%"
        c = conds.get(label, {})
        power[label] = {"nominal_pct": pct, "achieved_pct": _achieved(run.trials, label), "trials": c.get("trials", 0),
                        "detected": c.get("regression", 0), "rate": c.get("rate"), "median_s": c.get("median_s"),
                        "p95_s": c.get("p95_s")}  # fmt: skip
    aa = conds.get("A/A", {})
    return Calibration(
        device=profile.name, device_id=device_id(profile), created=utc_now_iso(), block_ms=best["block_ms"],
        confidence=best["confidence"], threshold_pct=opts.threshold_pct, min_blocks=6,
        false_alarm={**aa, "target": TARGET_FALSE_ALARM, "meets_target": best["meets_target"]}, power=power,
        candidates=cands, model=f"abnet blocks={opts.blocks} input {opts.input_size}x{opts.input_size}",
        runtime=opts.runtime, threads=opts.threads, elapsed_s=run.elapsed_s, median_s=best["median_s"],
        p95_s=best["p95_s"],
    )  # fmt: skip


Recorder = Callable[[str, float, float], ABTiming]


def run_trials(record: Recorder, opts: CalibrateOptions) -> CalibrationRun:
    """Rounds of trials until ``opts.trials`` rounds or ``opts.max_seconds``; ``record(condition, block_ms,
    seconds)`` times one trial (the caller binds the sessions: local or board)."""
    rng = random.Random(opts.seed)
    run = CalibrationRun()
    say = opts.progress or (lambda _m: None)
    start = time.monotonic()
    conds = ["A/A", "A/A", *(f"+{p:g}%" for p in opts.slowdowns_pct)]
    for rnd in range(opts.trials):
        for block_ms in opts.block_ms:
            order = conds[:]
            rng.shuffle(order)
            for cond in order:
                left = opts.max_seconds - (time.monotonic() - start)
                if left <= 0:
                    run.elapsed_s = time.monotonic() - start
                    return run
                t = record(cond, block_ms, min(opts.trial_seconds, left))
                ratios = [block_ratio(b, c) for b, c in zip(t.baseline, t.candidate, strict=True)]
                if ratios:
                    run.trials.append(Trial(cond, block_ms, ratios, t.elapsed_s / len(ratios)))
        say(f"round {rnd + 1}: {len(run.trials)} trials, {time.monotonic() - start:.0f} s")
    run.elapsed_s = time.monotonic() - start
    return run


def calibrate(opts: CalibrateOptions) -> CalibrationRun:
    """Export ABNet and its slowed variants, run the trials on ``opts.device``, build the calibration (not saved:
    :func:`edgedeploy.results.ab_calibration.save` stores it)."""
    from edgedeploy import limits
    from edgedeploy.bench.ab import run_interleaved
    from edgedeploy.bench.run import resolve_target
    from edgedeploy.devices.profile import load_profile
    from edgedeploy.nn.abnet import abnet, extra_for_pct
    from edgedeploy.results.ab import load_local, stop_rule

    limits.check_run_options(1, 5, opts.threads)
    profile = load_profile(opts.device)
    say = opts.progress or (lambda _m: None)
    shape = (1, 3, opts.input_size, opts.input_size)
    variants = {"base": 0, **{f"+{p:g}%": extra_for_pct(p, opts.blocks) for p in opts.slowdowns_pct}}
    targets = {}
    for label, extra in variants.items():
        name = f"abnet{opts.blocks}_x{extra}_{opts.input_size}"
        targets[label] = resolve_target(abnet(extra, opts.blocks), opts.runtime, input_shape=shape, name=name,
                                        progress=say)  # fmt: skip
    strictest = ABRule(opts.threshold_pct, max(opts.confidences))
    if profile.transport == "local":
        import os

        threads = opts.threads or os.cpu_count() or 1
        sessions = {"A/A": load_local(targets["base"], threads)[0]}
        sessions.update({k: load_local(t, threads)[0] for k, t in targets.items()})

        def record(cond: str, block_ms: float, seconds: float) -> ABTiming:
            plan = BlockPlan(block_ms=block_ms, max_seconds=seconds, warmup=3, max_blocks=400)
            return run_interleaved(sessions["base"], sessions[cond], plan, stop_rule(strictest))
    else:
        from edgedeploy import registry
        from edgedeploy.devices.remote_ab import MAX_BOARD_BLOCKS, BoardABRequest, ab_on_device
        from edgedeploy.results.ab_verdict import critical_values

        tcrit = tuple(critical_values(strictest.confidence, MAX_BOARD_BLOCKS))
        rt = registry.device_runtime(targets["base"].runtime)

        def record(cond: str, block_ms: float, seconds: float) -> ABTiming:
            other = targets["base" if cond == "A/A" else cond]
            req = BoardABRequest((targets["base"].artifact, other.artifact), rt, opts.threads, shape,
                                 BlockPlan(block_ms=block_ms, max_seconds=seconds, warmup=3),
                                 opts.threshold_pct, strictest.min_blocks, tcrit)  # fmt: skip
            return ab_on_device(profile, req)

    run = run_trials(record, opts)
    run.calibration = build_calibration(run, opts, profile)
    return run
