"""``edgedeploy ab``: the two sides resolved, loaded in one process, timed interleaved, judged sequentially.

:func:`run_ab` is what :func:`edgedeploy.ab` calls. Local runs load both sessions here and use
:func:`edgedeploy.bench.ab.run_interleaved`; board runs push both artifacts and time them in ONE runner process
(:func:`edgedeploy.devices.remote_ab.ab_on_device`). The verdict is always recomputed here from the block
samples with :mod:`edgedeploy.results.ab_verdict`.

Bad input raises :class:`~edgedeploy.errors.ConfigError` (exit 2): sides with different input shapes, sides of
different formats (an artifact and a spec that would export to another format, two artifacts of two formats),
``max_seconds <= 0``, a calibration file of another device.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgedeploy import registry
from edgedeploy.bench.ab import DEFAULT_BLOCK_MS, ABTiming, BlockPlan
from edgedeploy.errors import ConfigError
from edgedeploy.results import ab_calibration
from edgedeploy.results.ab_verdict import DEFAULT_CONFIDENCE, DEFAULT_THRESHOLD_PCT, ABRule, block_ratio, evaluate

JSON_KEYS = ("verdict", "ratio", "ci_low", "ci_high", "confidence", "threshold_pct", "blocks", "block_ratios",
             "baseline", "candidate", "device", "runtime", "elapsed_s", "memory_verdict")  # fmt: skip


@dataclass(frozen=True)
class ABOptions:
    """Options of :func:`edgedeploy.ab` (None: the device's calibration, else the default).

    ``threshold_pct`` (percent band half-width, default 3), ``confidence`` (default 0.99), ``block_size`` (timed
    runs per side per block; default: sized to the calibration's / 100 ms of inference), ``max_seconds`` (timing
    budget, s, > 0), ``calibration`` (a calibration JSON file; None: the stored one of ``device`` if any;
    ``False``: none), ``input_shape`` (NCHW, for callable specs), ``progress(msg)``.
    """

    device: str = "local"
    runtime: str | None = None
    threads: int | None = None
    threshold_pct: float | None = None
    confidence: float | None = None
    max_seconds: float = 60.0
    block_size: int | None = None
    min_blocks: int | None = None
    warmup: int = 5
    precision: str = "fp32"
    input_shape: Any = None
    calibration: str | Path | bool | None = None
    trust_on_first_use: bool = False
    progress: Callable[[str], None] | None = None
    #: after timing, measure each side's peak RSS in a fresh child process holding only the runtime (host runs;
    #: :mod:`edgedeploy.bench.memory`) and judge it with the memory rule of :mod:`edgedeploy.results.figures`
    memory: bool = True

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ABOptions:
        """Build from keyword arguments; :class:`ConfigError` names unknown ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"unknown ab option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**kwargs)


@dataclass
class ABSide:
    """One side: what was timed and every sample (ms), per block."""

    spec: str
    model: str
    format: str
    artifact: str | None
    blocks_ms: list[list[float]]
    process: dict[str, Any] = field(default_factory=dict)
    #: ``peak_rss_mb`` / ``rss_delta_mb`` (MB, a fresh child process per side) or None, ``not_measured`` reasons
    memory: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_ms(self) -> list[float]:
        return [s for b in self.blocks_ms for s in b]

    @property
    def median_ms(self) -> float:
        import statistics

        return float(statistics.median(self.samples_ms)) if self.samples_ms else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "model": self.model, "format": self.format, "artifact": self.artifact,
            "median_ms": self.median_ms, "samples_ms": self.samples_ms,
            "block_medians_ms": [sorted(b)[len(b) // 2] for b in self.blocks_ms], "process": self.process,
            "peak_rss_mb": self.memory.get("peak_rss_mb"), "rss_delta_mb": self.memory.get("rss_delta_mb"),
            "not_measured": self.memory.get("not_measured", {"peak_rss_mb": "memory not measured (memory=False)"}),
        }  # fmt: skip


@dataclass
class ABResult:
    """The outcome of one A/B: ``verdict`` (regression / improvement / unchanged / inconclusive), the paired ratio
    ``ratio`` (candidate / baseline, geometric mean of block ratios) with its interval ``[ci_low, ci_high]`` at
    ``confidence``, ``block_ratios``, both sides' samples (ms), ``elapsed_s`` of timing (s), ``block_size``
    (runs per side per block), ``stopped`` (rule / max_seconds / max_blocks / interrupted) and ``calibration``
    (the calibration file used, or None)."""

    verdict: str
    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    threshold_pct: float
    block_ratios: list[float]
    baseline: ABSide
    candidate: ABSide
    device: str
    runtime: str
    elapsed_s: float
    block_size: int = 0
    stopped: str = "rule"
    calibration: str | None = None
    settings_from: dict[str, str] = field(default_factory=dict)
    #: the memory rule on the sides' ``peak_rss_mb`` (regression / improvement / unchanged / unmeasured)
    memory_verdict: str = "unmeasured"

    @property
    def blocks(self) -> int:
        return len(self.block_ratios)

    @property
    def exit_code(self) -> int:
        """1 for a latency or a memory regression, 0 otherwise (the CLI's exit status)."""
        return 1 if "regression" in (self.verdict, self.memory_verdict) else 0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document: exactly :data:`JSON_KEYS`."""
        d = {
            "verdict": self.verdict, "ratio": self.ratio, "ci_low": self.ci_low, "ci_high": self.ci_high,
            "confidence": self.confidence, "threshold_pct": self.threshold_pct, "blocks": self.blocks,
            "block_ratios": self.block_ratios, "baseline": self.baseline.to_json(),
            "candidate": self.candidate.to_json(), "device": self.device, "runtime": self.runtime,
            "elapsed_s": self.elapsed_s, "memory_verdict": self.memory_verdict,
        }  # fmt: skip
        assert tuple(d) == JSON_KEYS
        return d

    def markdown_row(self, label: str | None = None) -> str:
        """One PR-table row: key, baseline / candidate p50 (ms), ratio [CI], verdict."""
        key = label or f"{self.candidate.model} / {self.candidate.format} / {self.runtime} / {self.device}"
        mark = {"regression": "**regression**", "improvement": "improvement"}.get(self.verdict, self.verdict)
        return (
            f"| {key} | {self.baseline.median_ms:.3f} | {self.candidate.median_ms:.3f} | {self.ratio:.3f} "
            f"[{self.ci_low:.3f}, {self.ci_high:.3f}] | {self.blocks} | {mark} |"
        )


MARKDOWN_HEADER = (
    "| case | baseline p50 ms | candidate p50 ms | ratio [CI] | blocks | verdict |\n|---|---:|---:|---|---:|---|"
)


def markdown_table(rows: list[tuple[str | None, ABResult]], title: str = "Latency A/B") -> str:
    """A Markdown report: the method line, then one row per A/B."""
    if not rows:
        return f"## {title}\n\nno cases\n"
    r0 = rows[0][1]
    cal = f"; calibration {r0.calibration}" if r0.calibration else ""
    head = (
        f"## {title}\n\nInterleaved A/B in one process; ratio = candidate / baseline (geometric mean of per-block "
        f"median ratios), {r0.confidence:.1%} t-interval on log ratios, band ±{r0.threshold_pct:g} %{cal}.\n\n"
    )
    return head + MARKDOWN_HEADER + "\n" + "\n".join(r.markdown_row(label) for label, r in rows) + "\n"


@dataclass(frozen=True)
class _Settings:
    rule: ABRule
    plan: BlockPlan
    calibration: str | None
    settings_from: dict[str, str]


def settings_for(opts: ABOptions, profile: Any) -> _Settings:
    """The rule and block plan: explicit options, else the device's calibration, else the defaults."""
    cal = None
    path: Path | None = None
    if opts.calibration is not False and opts.calibration is not True:
        path = Path(opts.calibration) if opts.calibration else ab_calibration.default_path(profile.name)
        if opts.calibration or path.is_file():
            cal = ab_calibration.load(path, profile)  # ConfigError: missing / bad / another device's
    src: dict[str, str] = {}

    def pick(name: str, given: Any, from_cal: Any, default: Any) -> Any:
        if given is not None:
            src[name] = "option"
            return given
        if cal is not None and from_cal is not None:
            src[name] = "calibration"
            return from_cal
        src[name] = "default"
        return default

    threshold = pick("threshold_pct", opts.threshold_pct, cal.threshold_pct if cal else None, DEFAULT_THRESHOLD_PCT)
    confidence = pick("confidence", opts.confidence, cal.confidence if cal else None, DEFAULT_CONFIDENCE)
    min_blocks = pick("min_blocks", opts.min_blocks, cal.min_blocks if cal else None, 6)
    block_ms = cal.block_ms if cal is not None else DEFAULT_BLOCK_MS
    rule = ABRule(float(threshold), float(confidence), int(min_blocks))
    plan = BlockPlan(block_size=opts.block_size, block_ms=block_ms, max_seconds=float(opts.max_seconds),
                     warmup=opts.warmup)  # fmt: skip
    return _Settings(rule, plan, str(path) if cal is not None else None, src)


def _check_pair(base: Any, cand: Any) -> None:
    if base.format != cand.format:
        raise ConfigError(
            f"the two sides are of different formats: baseline {base.format}, candidate {cand.format} "
            "(give two artifacts of one format, or pick --runtime)"
        )
    if base.input_shape and cand.input_shape and tuple(base.input_shape) != tuple(cand.input_shape):
        raise ConfigError(
            f"the two sides take different inputs: baseline {list(base.input_shape)}, "
            f"candidate {list(cand.input_shape)}"
        )


def resolve_pair(baseline: Any, candidate: Any, opts: ABOptions) -> tuple[Any, Any]:
    """Both sides as :class:`~edgedeploy.bench.run.BenchTarget` of one format and one runtime.

    An artifact side fixes the format (and, without ``--runtime``, the runtime) the other side is exported to.
    """
    from edgedeploy.bench.run import resolve_target

    runtime = opts.runtime
    artifacts = [s for s in (baseline, candidate) if isinstance(s, (str, Path)) and registry.is_artifact_path(s)]
    fmts = {registry.format_of(a) for a in artifacts}
    if len(fmts) > 1 and runtime is None:
        raise ConfigError(f"the two sides are artifacts of different formats: {', '.join(sorted(fmts))}")
    if runtime is None and artifacts:
        runtime = registry.default_runtime(registry.format_of(artifacts[0]))
    say = opts.progress or (lambda _m: None)
    got = []
    for side in (baseline, candidate):
        got.append(resolve_target(side, runtime, opts.precision, None, None, progress=say,
                                  input_shape=opts.input_shape))  # fmt: skip
    _check_pair(got[0], got[1])
    if got[0].runtime != got[1].runtime:
        raise ConfigError(f"the two sides resolve to different runtimes: {got[0].runtime}, {got[1].runtime}")
    return got[0], got[1]


def load_local(target: Any, threads: int) -> tuple[Callable[[], Any], tuple[int, ...]]:
    """Load one side here; returns its prepared ``infer()`` and its input shape (NCHW or NHWC)."""
    from edgedeploy.data import model_input
    from edgedeploy.runtimes.base import get_runtime

    if target.artifact is None:
        from edgedeploy.runtimes.torch_rt import TorchRuntime

        session = TorchRuntime.from_module(target.module, target.input_shape, threads)
    else:
        session = get_runtime(target.runtime).load(target.artifact, threads)
    shape = tuple(session.input_shape) if len(session.input_shape) == 4 else tuple(target.input_shape)
    if len(shape) != 4:
        raise ConfigError(f"cannot tell the input shape of {target.artifact}; export it with edgedeploy")
    if shape[1] != 3 and shape[-1] == 3:  # NHWC
        x = model_input((1, 3, shape[1], shape[2]), target.mean, target.std).transpose(0, 2, 3, 1).copy()
    else:
        x = model_input(shape, target.mean, target.std)
    return session.prepare(x), shape


def result_from_timing(
    timing: ABTiming, sides: tuple[ABSide, ABSide], rule: ABRule, where: tuple[str, str]
) -> ABResult:
    """Judge ``timing`` with ``rule``; ``sides`` get their block samples; ``where`` is (device, runtime)."""
    ratios = [block_ratio(b, c) for b, c in zip(timing.baseline, timing.candidate, strict=True)]
    est = evaluate(ratios, rule, final=True)
    verdict = est.verdict if timing.stopped == "rule" else "inconclusive"
    base, cand = sides
    base.blocks_ms, cand.blocks_ms = timing.baseline, timing.candidate
    base.process = cand.process = dict(timing.process)
    return ABResult(verdict or "inconclusive", est.ratio, est.ci_low, est.ci_high, rule.confidence,
                    rule.threshold_pct, ratios, base, cand, where[0], where[1], timing.elapsed_s,
                    block_size=timing.block_size, stopped=timing.stopped)  # fmt: skip


def stop_rule(rule: ABRule) -> Callable[[list[list[float]], list[list[float]]], bool]:
    """The harness's ``should_stop``: the sequential rule gave a verdict."""

    def should_stop(base: list[list[float]], cand: list[list[float]]) -> bool:
        ratios = [block_ratio(b, c) for b, c in zip(base, cand, strict=True)]
        return evaluate(ratios, rule).verdict is not None

    return should_stop


def _side(spec: Any, target: Any) -> ABSide:
    return ABSide(str(spec), target.model, target.format, str(target.artifact) if target.artifact else None, [])


def run_ab(baseline: Any, candidate: Any, opts: ABOptions) -> ABResult:
    """Resolve, load and time both sides, and judge them (see the module doc); the API's ``ab``."""
    from edgedeploy import limits
    from edgedeploy.bench.ab import run_interleaved
    from edgedeploy.devices.profile import load_profile

    if not (isinstance(opts.max_seconds, (int, float)) and opts.max_seconds > 0):
        raise ConfigError(f"--max-seconds must be > 0 (got {opts.max_seconds})")
    limits.check_run_options(1, opts.warmup, opts.threads)
    profile = load_profile(opts.device)
    limits.check_threads(opts.threads, limits.profile_cores(profile), False)
    settings = settings_for(opts, profile)
    say = opts.progress or (lambda _m: None)
    if settings.calibration:
        say(f"using calibration {settings.calibration}")
    base_t, cand_t = resolve_pair(baseline, candidate, opts)
    sides = (_side(baseline, base_t), _side(candidate, cand_t))
    if profile.transport != "local":
        from edgedeploy.devices.remote_ab import MAX_BOARD_BLOCKS, BoardABRequest, ab_on_device
        from edgedeploy.results.ab_verdict import critical_values

        if base_t.artifact is None or cand_t.artifact is None:
            raise ConfigError("the torch runtime runs only on the local device")
        if opts.trust_on_first_use:
            profile = profile.model_copy(update={"trust_on_first_use": True})
        say(f"A/B on {profile.name} ({profile.transport}): both sides in one runner process …")
        req = BoardABRequest(
            (base_t.artifact, cand_t.artifact), registry.device_runtime(base_t.runtime), opts.threads,
            tuple(base_t.input_shape or cand_t.input_shape or (1, 3, 224, 224)), settings.plan,
            settings.rule.threshold_pct, settings.rule.min_blocks,
            tuple(critical_values(settings.rule.confidence, MAX_BOARD_BLOCKS)),
        )  # fmt: skip
        timing = ab_on_device(profile, req)
        where, shape = (profile.name, base_t.runtime), None
    else:
        threads = opts.threads or os.cpu_count() or 1
        infer_b, shape_b = load_local(base_t, threads)
        infer_c, shape_c = load_local(cand_t, threads)
        if shape_b != shape_c:
            raise ConfigError(
                f"the two sides take different inputs: baseline {list(shape_b)}, candidate {list(shape_c)}"
            )
        say("timing interleaved blocks …")
        timing = run_interleaved(infer_b, infer_c, settings.plan, stop_rule(settings.rule))
        where, shape = ("local", base_t.runtime), shape_b
    result = result_from_timing(timing, sides, settings.rule, where)
    result.calibration = settings.calibration
    result.settings_from = settings.settings_from
    if opts.memory:
        say("measuring each side's memory in a fresh child process …")
        judge_memory(result, (base_t, cand_t), opts, shape)
    return result


def judge_memory(result: ABResult, targets: tuple[Any, Any], opts: ABOptions, shape: tuple[int, ...] | None) -> None:
    """Fill each side's ``memory`` (peak / rise of the resident set, MB) and ``result.memory_verdict``.

    ``shape``: the input both sides took here (the shape the sessions reported); ``None`` for a board run.

    On the host each side's artifact runs in its own fresh child process that holds only the runtime
    (:func:`edgedeploy.bench.memory.measure_host_memory`): the A/B process holds both sides and torch, so its own
    resident set cannot tell them apart. On a board both sides share one runner process: not measured, with that
    reason. The verdict is the memory rule of ``compare`` (:func:`edgedeploy.results.figures.memory_verdict`)."""
    from edgedeploy.results.figures import memory_verdict

    for side, t in zip((result.baseline, result.candidate), targets, strict=True):
        side.memory = _side_memory(t, opts, shape)
    result.memory_verdict = memory_verdict(
        result.baseline.memory.get("peak_rss_mb"), result.candidate.memory.get("peak_rss_mb")
    )


def _side_memory(t: Any, opts: ABOptions, shape: tuple[int, ...] | None) -> dict[str, Any]:
    from edgedeploy.bench.memory import MemoryReading, MemoryRequest, measure_host_memory

    if shape is None:
        reading = MemoryReading.unmeasured(
            "both sides ran in one runner process on the board, whose resident set cannot tell them apart"
        )
    elif t.artifact is None:
        reading = MemoryReading.unmeasured("the torch runtime runs only inside edgedeploy's own process")
    else:
        threads = opts.threads or os.cpu_count() or 1
        reading = measure_host_memory(MemoryRequest(Path(t.artifact), t.runtime, threads, shape, opts.precision))
    f = reading.result_fields()
    return {"peak_rss_mb": f["peak_rss_mb"], "rss_delta_mb": f["rss_delta_mb"], "not_measured": f["not_measured"]}
