"""``bench SPEC --device D --matrix``: every format × precision × runtime the device has, at every thread count.

:func:`run_matrix` answers "which configuration should I ship on this board":

1. **Cases.** The runtimes are the device's (:func:`edgedeploy.suite.device_runtimes`: what this process can import
   locally, the profile's ``runtimes`` list or the runner's ``--probe`` answer on a board); for each, every format it
   runs and every precision that format has (the registry); thread counts ``1 … cores`` (the device's cores, see
   :func:`edgedeploy.limits.profile_cores`) or ``threads`` (``--threads-sweep 1,2``). The torch runtime is the
   PyTorch reference itself, not an artifact to ship: it is listed as skipped.
2. **Each case** is one :func:`edgedeploy.bench` call with ``parity=True``: the model is exported (or its cached
   artifact reused), timed, its memory measured, and its outputs compared with PyTorch fp32 on the device that ran
   it (board-side on boards, :mod:`edgedeploy.devices.board_parity`). An export or a bench that fails marks its
   case with the error; the others go on.
3. **Bound.** ``max_minutes`` bounds the whole run: once it has passed, the cases not started are ``skipped`` with
   the reason (a case that started runs to its end).
4. **Ranking.** Benchmarked cases by p50 (ms); ``best``: the fastest case whose parity passed and the one with the
   smallest ``peak_rss_mb`` whose parity passed (``None`` with a reason when there is none).

Every result goes into one result-store run (:class:`~edgedeploy.results.store.RunWriter`), like a suite's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgedeploy import registry
from edgedeploy.errors import ConfigError, EdgeDeployError
from edgedeploy.results.result import BenchResult

Progress = Callable[[str], None]


@dataclass(frozen=True)
class MatrixOptions:
    """What :func:`run_matrix` takes besides the model spec.

    ``threads``: thread counts to sweep (``None``: 1 … the device's cores). ``iterations`` / ``warmup``: per case.
    ``max_minutes``: bound on the whole run (``None``: unbounded). ``store``: the result store folder (``None``: the
    default store). ``progress(msg)`` is called before each case.
    """

    device: str = "local"
    threads: tuple[int, ...] | None = None
    iterations: int = 20
    warmup: int = 3
    max_minutes: float | None = None
    trust_on_first_use: bool = False
    store: str | None = None
    progress: Progress | None = None


@dataclass
class MatrixCase:
    """One configuration and what became of it (``status``: benchmarked / skipped / export failed / bench failed)."""

    format: str
    precision: str
    runtime: str
    threads: int
    status: str = "pending"
    reason: str = ""
    result: BenchResult | None = None

    @property
    def parity(self) -> str | None:
        """``passed`` / ``failed`` / ``not run`` of the case's own parity check, ``None`` before it ran."""
        bp = getattr(self.result, "board_parity", None) if self.result is not None else None
        if not bp:
            return None
        return "passed" if bp.get("passed") else "failed" if bp.get("passed") is False else "not run"

    @property
    def median_ms(self) -> float | None:
        return self.result.median_ms if self.result is not None and self.result.samples_ms else None

    def label(self) -> str:
        return f"{self.format} {self.precision} · {self.runtime} · {self.threads} thread{'s' * (self.threads != 1)}"

    def to_dict(self, model: str, device: str) -> dict[str, Any]:
        """The suite schema's case (:meth:`edgedeploy.bench.suite_run.CaseOutcome.to_dict`) plus threads, parity."""
        from edgedeploy.results.figures import FIGURES

        r = self.result
        out: dict[str, Any] = {
            "model": model, "format": self.format, "precision": self.precision, "runtime": self.runtime,
            "device": device, "board": r.board if r is not None else None, "threads": self.threads,
            "status": self.status, "reason": self.reason, "median_ms": self.median_ms,
            "p90_ms": r.p90_ms if r is not None and r.samples_ms else None, "parity": self.parity,
        }  # fmt: skip
        out.update({k: getattr(r, k, None) for k in FIGURES})
        if r is not None and getattr(r, "board_parity", None):
            bp = r.board_parity  # type: ignore[attr-defined]
            out["parity_detail"] = {k: bp.get(k) for k in ("max_abs_error", "cosine_similarity", "top1_agreement",
                                                           "runtime", "failures")}  # fmt: skip
        return out


@dataclass
class MatrixReport:
    """Every case of the matrix, the stored run, and the wall time (s)."""

    model: str
    device: str
    cases: list[MatrixCase]
    run_id: str = ""
    record: str | None = None
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def ranked(self) -> list[MatrixCase]:
        """Benchmarked cases, fastest p50 first."""
        done = [c for c in self.cases if c.status == "benchmarked" and c.median_ms is not None]
        return sorted(done, key=lambda c: c.median_ms or 0.0)

    def passing(self) -> list[MatrixCase]:
        return [c for c in self.ranked() if c.parity == "passed"]

    def fastest(self) -> MatrixCase | None:
        """The fastest case whose parity passed."""
        ok = self.passing()
        return ok[0] if ok else None

    def smallest_memory(self) -> MatrixCase | None:
        """The case with the smallest ``peak_rss_mb`` whose parity passed (ties: the faster)."""
        ok = [c for c in self.passing() if c.result is not None and c.result.peak_rss_mb is not None]
        return min(ok, key=lambda c: (c.result.peak_rss_mb, c.median_ms)) if ok else None  # type: ignore[union-attr]

    def best(self) -> dict[str, Any]:
        """``{"fastest": case | None, "smallest_memory": case | None, "reason": …}`` (cases as in ``cases``)."""
        fast, small = self.fastest(), self.smallest_memory()
        out: dict[str, Any] = {
            "fastest": fast.to_dict(self.model, self.device) if fast else None,
            "smallest_memory": small.to_dict(self.model, self.device) if small else None,
        }
        if fast is None:
            out["reason"] = "no benchmarked case passed its parity check"
        elif small is None:
            out["reason"] = "no case that passed parity has a peak_rss_mb reading"
        return out

    def best_line(self) -> str:
        """One line: the fastest case that passes parity and the smallest-memory case that passes."""
        fast, small = self.fastest(), self.smallest_memory()
        if fast is None:
            return f"{self.model} on {self.device}: no case passed its parity check"
        line = f"{self.model} on {self.device}: fastest passing parity: {fast.label()} ({fast.median_ms:.2f} ms p50)"
        if small is not None and small.result is not None:
            line += f"; smallest memory passing parity: {small.label()} ({small.result.peak_rss_mb:.1f} MB peak RSS)"
        else:
            line += "; smallest memory: no peak_rss_mb reading"
        return line

    def to_json_dict(self) -> dict[str, Any]:
        """The suite schema (``cases``, ``run_id``, ``record``) plus ``best``, ``model``, ``device``, ``wall_s``."""
        return {
            "cases": [c.to_dict(self.model, self.device) for c in self.cases],
            "run_id": self.run_id,
            "record": self.record,
            "best": self.best(),
            "model": self.model,
            "device": self.device,
            "wall_s": round(self.wall_s, 3),
            "notes": self.notes,
        }


def thread_counts(cores: int | None, sweep: tuple[int, ...] | None) -> tuple[tuple[int, ...], list[str]]:
    """The thread counts to run and notes: ``sweep`` as given, else ``1 … cores`` (``(1,)`` when cores are unknown).

    Raises :class:`ConfigError` for a count < 1 or above the cores.
    """
    notes: list[str] = []
    if sweep:
        bad = [t for t in sweep if t < 1 or (cores is not None and t > cores)]
        if bad:
            raise ConfigError(f"--threads-sweep: {bad} outside 1 … {cores or '?'} (the device's cores)")
        return tuple(dict.fromkeys(sweep)), notes
    if cores is None:
        notes.append("the device's cores are unknown (no clusters in its profile): 1 thread only; use --threads-sweep")
        return (1,), notes
    return tuple(range(1, cores + 1)), notes


def plan(runtimes: list[str], threads: tuple[int, ...]) -> list[MatrixCase]:
    """Every (format, precision, runtime, threads) of ``runtimes`` (registry order; exports shared)."""
    cases: list[MatrixCase] = []
    known = set(registry.format_names())
    for rt in runtimes:
        spec = registry.runtime_spec(rt)
        for fmt in spec.formats:
            if spec.host_only or fmt not in known:
                cases.append(MatrixCase(fmt, "fp32", rt, threads[0], "skipped",
                                        "the PyTorch reference itself, not an artifact to ship"))  # fmt: skip
                continue
            for prec in registry.format_spec(fmt).precisions:
                cases += [MatrixCase(fmt, prec, rt, t) for t in threads]
    return cases


def device_runtimes_of(profile: Any) -> list[str]:
    """The runtimes ``profile``'s device has (a board without a ``runtimes`` list is probed once)."""
    from edgedeploy.suite import device_runtimes

    if profile.transport == "local" or profile.runtimes:
        return device_runtimes(profile)
    from edgedeploy.devices.connect import connect
    from edgedeploy.devices.remote import probe_device

    t = connect(profile)
    try:
        probed = probe_device(t, profile)
    finally:
        t.close()
    return device_runtimes(profile, list((probed.get("runtimes") or {}).keys()))


def run_matrix(model: str, opts: MatrixOptions) -> MatrixReport:
    """Run the matrix of ``model`` (a zoo name or anything :func:`edgedeploy.export` takes) on ``opts.device``.

    Raises :class:`ConfigError` (bad thread sweep, a device with no runtime), ``UnknownDeviceError`` and the device
    errors of connecting to a board for its probe; a failing case does not raise (its status says why).
    """
    import edgedeploy
    from edgedeploy import limits
    from edgedeploy.devices.profile import load_profile
    from edgedeploy.results.store import RunWriter

    say = opts.progress or (lambda _m: None)
    limits.check_run_options(opts.iterations, opts.warmup, None)
    profile = load_profile(opts.device)
    threads, notes = thread_counts(limits.profile_cores(profile), opts.threads)
    runtimes = device_runtimes_of(profile)
    if not runtimes:
        raise ConfigError(f"{profile.name}: no runtime found (its profile lists none and the probe found none)")
    cases = plan(runtimes, threads)
    t0 = time.monotonic()
    deadline = t0 + 60.0 * opts.max_minutes if opts.max_minutes is not None else None
    writer = RunWriter(opts.store, label=f"matrix {model} @ {profile.name}")
    failed_exports: dict[tuple[str, str], str] = {}
    todo = [c for c in cases if c.status == "pending"]
    for i, c in enumerate(todo):
        if deadline is not None and time.monotonic() >= deadline:
            c.status = "skipped"
            c.reason = f"--max-minutes {opts.max_minutes:g} reached after {(time.monotonic() - t0) / 60:.1f} min"
            continue
        if (c.format, c.precision) in failed_exports:
            c.status, c.reason = "export failed", failed_exports[(c.format, c.precision)]
            continue
        say(f"case {i + 1}/{len(todo)}: {c.label()}")
        try:
            c.result = edgedeploy.bench(
                model, device=opts.device, runtime=c.runtime, precision=c.precision, threads=c.threads,
                iterations=opts.iterations, warmup=opts.warmup, parity=True,
                trust_on_first_use=opts.trust_on_first_use or profile.trust_on_first_use,
            )  # fmt: skip
        except EdgeDeployError as e:
            from edgedeploy.errors import ExportError, MissingExtraError

            if isinstance(e, (ExportError, MissingExtraError)):
                failed_exports[(c.format, c.precision)] = f"{type(e).__name__}: {e}"[:400]
                c.status, c.reason = "export failed", failed_exports[(c.format, c.precision)]
            else:
                c.status, c.reason = "bench failed", f"{type(e).__name__}: {e}"[:400]
            continue
        except Exception as e:  # noqa: BLE001 - one broken case must not stop the others (as in a suite)
            c.status, c.reason = "bench failed", f"{type(e).__name__}: {e}"[:400]
            continue
        writer.add(c.result)
        c.status = "benchmarked" if c.result.status == "complete" else "bench failed"
        if c.status == "bench failed":
            c.reason = "partial: " + "; ".join(c.result.warnings)[:300]
    report = MatrixReport(model, profile.name, cases, writer.run.run_id, None, time.monotonic() - t0, notes)
    if writer.path is not None:
        writer.update(matrix={k: v for k, v in report.to_json_dict().items() if k not in ("cases",)},
                      cases=[c.to_dict(model, profile.name) for c in cases])  # fmt: skip
        report.record = str(writer.path)
    return report


def matrix_markdown(doc: dict[str, Any]) -> str:
    """The ranked table as GitHub Markdown, from :meth:`MatrixReport.to_json_dict` (or its ``--json`` output)."""
    from edgedeploy.results.figures import fmt, fmt_mb_bytes

    cases = doc["cases"]
    ranked = sorted((c for c in cases if c["status"] == "benchmarked"), key=lambda c: c["median_ms"])
    rest = [c for c in cases if c["status"] != "benchmarked"]
    lines = [
        "| # | format | precision | runtime | threads | p50 ms | p90 ms | artifact MB | load ms | first ms | "
        "peak RSS MB | RSS Δ MB | parity | status |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for i, c in enumerate([*ranked, *rest], 1):
        status = c["status"] + (f": {c['reason']}" if c["reason"] else "")
        lines.append(
            f"| {i if c in ranked else '–'} | {c['format']} | {c['precision']} | {c['runtime']} | {c['threads']} | "
            f"{fmt(c['median_ms'], '{:.2f}')} | {fmt(c['p90_ms'], '{:.2f}')} | {fmt_mb_bytes(c['artifact_bytes'])} | "
            f"{fmt(c['load_ms'])} | {fmt(c['first_ms'])} | {fmt(c['peak_rss_mb'])} | {fmt(c['rss_delta_mb'])} | "
            f"{c['parity'] or '–'} | {status.replace('|', '/')} |"
        )
    best = doc.get("best") or {}
    fast, small = best.get("fastest"), best.get("smallest_memory")

    def name(c: dict[str, Any]) -> str:
        return f"{c['format']} {c['precision']} · {c['runtime']} · {c['threads']} thread{'s' * (c['threads'] != 1)}"

    if fast:
        line = f"Fastest passing parity: {name(fast)} ({fast['median_ms']:.2f} ms p50)"
        if small:
            line += f"; smallest memory passing parity: {name(small)} ({small['peak_rss_mb']:.1f} MB peak RSS)"
        lines += ["", line + "."]
    else:
        lines += ["", f"No case passed its parity check ({best.get('reason', '')})."]
    return "\n".join(lines) + "\n"
