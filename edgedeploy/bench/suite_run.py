"""Run a benchmark suite: export every artifact once, bench every case on every board, one honest status per case.

:func:`run_suite` takes a :class:`~edgedeploy.suite.Suite` and does, in order:

1. **Devices.** Each suite device is a profile. A ``transport: labgrid`` profile is a farm: its matching places are
   reserved and acquired (:class:`~edgedeploy.devices.farm.LabgridFarm`) and each becomes a *board*; any other
   profile is one board. Runtimes not named by the suite are the device's (:func:`edgedeploy.suite.device_runtimes`;
   a board without a ``runtimes`` list in its profile is probed once). A farm is reserved after the export step
   (so its boards are not held while exporting) unless its runtimes must be probed first.
2. **Export.** Every (model, format, precision) the non-excluded cases need is exported once (the artifact cache:
   an artifact exported earlier with the same weights and settings is reused) with the parity check. A failed
   export marks its cases ``export failed``, a failed parity check ``parity failed``; neither is benched.
3. **Bench.** Each case is run ``suite.runs`` times. Every board has one worker thread taking the next job of its
   device: one case per board at a time, all boards in parallel. A job that fails (the runtime is missing, the
   runner errors) marks its case ``bench failed`` and the board goes on. A board that drops out (unreachable,
   connection lost for good, refused authentication) hands the job back and stops; the other boards of its device
   take its remaining jobs, and what it measured before it dropped (a ``partial`` result) is stored. Every run
   goes through the public API, :func:`edgedeploy.bench`, on the exported artifact.
4. **Store.** One result-store run (:class:`~edgedeploy.results.store.RunWriter`) holds every result, rewritten
   as each one arrives, plus ``suite`` and ``cases`` (the statuses) as extra record keys.

Statuses: ``benchmarked`` (every run complete), ``export failed``, ``parity failed``, ``bench failed``, ``excluded``,
``timed out`` (an export or a run took longer than ``suite.case_timeout``: the suite goes on; a run's samples
measured before the deadline are kept), ``partial`` (the case in progress when SIGINT / SIGTERM arrived: its
samples are kept) and ``interrupted`` (not run, or stopped before timing, because of the signal).
A case's ``median_ms`` is the median of its fastest run (what ``compare`` keeps of repeated runs), in ms.

**Interrupts** (:mod:`edgedeploy.bench.interrupt`): under SIGINT / SIGTERM the export in progress stops at once,
each board finishes the inference it is in and stops (its partial samples stored), no new job starts, every
finished case is kept, and :func:`run_suite` *returns* its report with ``interrupted`` set to the signal number
(the caller prints the table and exits 130 / 143). A second signal stops the wait for the boards
(``abandoned``). **Case timeout**: with ``suite.case_timeout`` each export runs in a child process
(:mod:`edgedeploy.bench.case_process`: user code that never returns is killed there) and each timed run has a
deadline checked between inferences.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgedeploy.bench import interrupt
from edgedeploy.bench.interrupt import StopRequested
from edgedeploy.devices.profile import DeviceProfile, load_profile
from edgedeploy.errors import (
    ConfigError,
    ConnectionDroppedError,
    DeviceAuthError,
    DeviceUnreachableError,
    EdgeDeployError,
)
from edgedeploy.results.result import BenchResult
from edgedeploy.results.store import RunWriter
from edgedeploy.spec import spec_relative_to
from edgedeploy.suite import Case, Suite, device_runtimes, expand

STATUSES = (
    "benchmarked",
    "export failed",
    "parity failed",
    "bench failed",
    "excluded",
    "timed out",
    "partial",
    "interrupted",
)
#: how long (s) an interrupted suite waits for its boards to finish the inference they are in
STOP_GRACE_S = 60.0
#: errors after which a board is taken out of the suite (its jobs go to the other boards of its device)
BOARD_GONE = (ConnectionDroppedError, DeviceUnreachableError, DeviceAuthError)


@dataclass
class CaseOutcome:
    """A case and what became of it. ``results`` holds every stored result, partial ones included."""

    case: Case
    status: str = "pending"
    reason: str = ""
    results: list[BenchResult] = field(default_factory=list)
    runs_done: int = 0
    errors: list[str] = field(default_factory=list)
    #: "timed out" / "partial" / "interrupted" and why, when a run was stopped (see the module docstring)
    stopped: tuple[str, str] | None = None

    @property
    def complete(self) -> list[BenchResult]:
        return [r for r in self.results if r.status == "complete" or len(r.samples_ms) >= r.iterations]

    @property
    def median_ms(self) -> float | None:
        """Median of the fastest complete run (ms), or ``None``."""
        done = self.complete
        return min(r.median_ms for r in done) if done else None

    @property
    def board(self) -> str | None:
        """The board(s) the complete runs ran on (comma-separated), or ``None``."""
        boards = list(dict.fromkeys(r.board or r.device for r in self.complete))
        return ", ".join(boards) if boards else None

    def to_dict(self) -> dict[str, Any]:
        c = self.case
        return {
            "model": c.model, "format": c.format, "precision": c.precision, "runtime": c.runtime, "device": c.device,
            "board": self.board, "status": self.status, "reason": self.reason, "median_ms": self.median_ms,
            **self.figures(),
        }  # fmt: skip

    def figures(self) -> dict[str, Any]:
        """``artifact_bytes``, ``load_ms``, ``first_ms``, ``peak_rss_mb``, ``rss_delta_mb`` of the fastest complete
        run (``None`` each when there is none or it did not measure that figure)."""
        from edgedeploy.results.figures import FIGURES

        done = self.complete
        best = min(done, key=lambda r: r.median_ms) if done else None
        return {k: getattr(best, k, None) for k in FIGURES}


@dataclass
class SuiteReport:
    """Every case's outcome, the stored run's file, and the boards used (``board -> why it dropped out or ""``)."""

    suite: Suite
    cases: list[CaseOutcome]
    record: Path | None
    run_id: str
    boards: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    #: the signal (SIGINT 2 / SIGTERM 15) that stopped the suite, or None
    interrupted: int | None = None
    #: True when a second signal stopped the wait: a board thread may still be inside a runtime call
    abandoned: bool = False

    @property
    def ok(self) -> bool:
        """True when every case that was not excluded was benchmarked (and no signal stopped the suite)."""
        return self.interrupted is None and all(c.status in ("benchmarked", "excluded") for c in self.cases)

    def to_json_dict(self) -> dict[str, Any]:
        return {"cases": [c.to_dict() for c in self.cases], "run_id": self.run_id,
                "record": str(self.record) if self.record else None,
                "interrupted": signal.Signals(self.interrupted).name if self.interrupted else None}  # fmt: skip


@dataclass
class _Board:
    name: str
    device: str
    profile: DeviceProfile
    spec: str  # what edgedeploy.bench(device=...) takes: the profile's name or a YAML file
    farm_board: bool = False
    dropped: str = ""
    busy: bool = False


@dataclass
class _Artifact:
    path: Path | None
    input_shape: tuple[int, ...]
    model: str
    parity_status: str | None


Progress = Callable[[str], None]


def _noop(msg: str) -> None:
    pass


class _Queue:
    """Per-device job queues; a worker waits while jobs of its device are still in flight elsewhere (they may be
    handed back by a board that drops out)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jobs: dict[str, deque[tuple[CaseOutcome, int]]] = {}
        self.in_flight: dict[str, int] = {}
        self.stop = threading.Event()

    def put(self, device: str, job: tuple[CaseOutcome, int], front: bool = False) -> None:
        with self.cond:
            q = self.jobs.setdefault(device, deque())
            q.appendleft(job) if front else q.append(job)
            self.cond.notify_all()

    def take(self, device: str) -> tuple[CaseOutcome, int] | None:
        with self.cond:
            while not self.stop.is_set() and not interrupt.stop_requested():
                q = self.jobs.get(device)
                if q:
                    self.in_flight[device] = self.in_flight.get(device, 0) + 1
                    return q.popleft()
                if not self.in_flight.get(device):
                    return None
                self.cond.wait(0.5)
            return None

    def done(self, device: str) -> None:
        with self.cond:
            self.in_flight[device] -= 1
            self.cond.notify_all()


def run_suite(
    suite: Suite,
    devices: list[str] | None = None,
    store: str | Path | None = None,
    *,
    trust_on_first_use: bool = False,
    progress: Progress | None = None,
    on_case: Callable[[CaseOutcome], None] | None = None,
    on_plan: Callable[[list[CaseOutcome]], None] | None = None,
) -> SuiteReport:
    """Run ``suite`` on ``devices`` (profile names or YAML paths; default ``suite.devices``) and store every result
    in ``store`` (default: the result store). ``progress`` gets one-line messages, ``on_plan`` the cases once they
    are known, ``on_case`` each case when it reaches its final status.

    Raises :class:`~edgedeploy.errors.ConfigError` / :class:`~edgedeploy.errors.UnknownDeviceError` for a bad
    device, the farm's errors (:mod:`edgedeploy.devices.farm`) when no board can be had, and ``KeyboardInterrupt``
    after releasing every place (what was measured is stored).
    """
    log = progress or _noop
    t_start = time.monotonic()
    specs = list(devices or suite.devices)
    profiles = [load_profile(d) for d in specs]
    if trust_on_first_use:
        profiles = [p.model_copy(update={"trust_on_first_use": True}) for p in profiles]
    writer = RunWriter(store, label=suite.name)
    outcomes: list[CaseOutcome] = []
    boards: list[_Board] = []
    abandoned = False
    with interrupt.stop_on_signals(), contextlib.ExitStack() as stack:
        opened: set[int] = set()

        def open_boards(i: int) -> None:  # a farm's places are reserved only once its cases are ready to run
            if i in opened:
                return
            opened.add(i)
            spec, prof = specs[i], profiles[i]
            if prof.transport != "labgrid":
                boards.append(_Board(prof.name, prof.name, prof, spec))
                return
            from edgedeploy.devices.farm import LabgridFarm

            farm = stack.enter_context(LabgridFarm(prof, log=log))
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgedeploy-farm-")))
            for b in farm.boards:  # each board's SSH profile as a file, for edgedeploy.bench(device=...)
                path = folder / f"{b.name}.yaml"
                path.write_text(yaml.safe_dump(b.profile.model_dump(mode="json", exclude={"path"})))
                boards.append(_Board(b.name, prof.name, b.profile, str(path), farm_board=True))

        def finish(o: CaseOutcome) -> None:
            writer.update(cases=[c.to_dict() for c in outcomes])
            if on_case:
                on_case(o)

        try:
            for i, prof in enumerate(profiles):
                probed = None
                if not suite.runtimes and not prof.runtimes and prof.transport != "local":
                    open_boards(i)  # the runtimes this device has: ask its (first) board
                    probed = _probe(next(b for b in boards if b.device == prof.name))
                cases = expand(suite, prof.name, suite.runtimes or device_runtimes(prof, probed))
                if not cases:
                    raise ConfigError(
                        f"suite {suite.name}: no case for device {prof.name} (runtimes "
                        f"{suite.runtimes or prof.runtimes or probed or 'none found'}); name runtimes the device "
                        "has in the suite or in the profile's `runtimes`"
                    )
                outcomes += [CaseOutcome(c) for c in cases]
            for o in outcomes:
                if o.case.excluded is not None:
                    o.status, o.reason = "excluded", o.case.excluded
            writer.extra.update(suite={"name": suite.name, "path": str(suite.path) if suite.path else None})
            if on_plan:
                on_plan(outcomes)
            artifacts = _export_all(suite, [o for o in outcomes if o.status == "pending"], log, finish)
            if not interrupt.stop_requested():
                for i, prof in enumerate(profiles):
                    if any(o.status == "pending" and o.case.device == prof.name for o in outcomes):
                        open_boards(i)
                abandoned = _bench_all(suite, outcomes, boards, artifacts, writer, finish, log)
        except StopRequested:  # a signal in the main thread outside the export and bench steps (plan, farm)
            pass
        for o in outcomes:  # jobs left: stopped by a signal, or every board of the device dropped out
            if o.status == "pending":
                _settle_leftover(o, boards)
                finish(o)
        writer.update(cases=[c.to_dict() for c in outcomes])
        signum = interrupt.stop_signal()
    return SuiteReport(
        suite, outcomes, writer.path, writer.run.run_id, {b.name: b.dropped for b in boards},
        time.monotonic() - t_start, signum, abandoned,
    )  # fmt: skip


def _settle_leftover(o: CaseOutcome, boards: list[_Board]) -> None:
    """The final status of a case still pending once no board works on it."""
    signum = interrupt.stop_signal()
    if o.stopped is not None:
        o.status, o.reason = o.stopped
    elif signum is not None:
        name = signal.Signals(signum).name
        if o.results:
            o.status, o.reason = "partial", f"interrupted ({name}) after {len(o.results)} of its runs"
        else:
            o.status, o.reason = "interrupted", f"not run: interrupted ({name})"
    else:
        gone = "; ".join(f"{b.name}: {b.dropped}" for b in boards if b.device == o.case.device and b.dropped)
        o.status = "bench failed"
        o.reason = "; ".join(o.errors) or f"no board of {o.case.device} left ({gone or 'none'})"


def _bench_all(
    suite: Suite,
    outcomes: list[CaseOutcome],
    boards: list[_Board],
    artifacts: dict[tuple[str, str, str], _Artifact],
    writer: RunWriter,
    finish: Callable[[CaseOutcome], None],
    log: Progress,
) -> bool:
    """Run every pending job on the boards (one worker thread each); returns True when a second signal made it
    stop waiting for a board still inside a runtime call (the report is then ``abandoned``)."""
    queue = _Queue()
    for o in outcomes:
        if o.status == "pending":
            for i in range(suite.runs):
                queue.put(o.case.device, (o, i))
    lock = threading.Lock()
    ended = [threading.Event() for _ in boards]

    def work(b: _Board, done: threading.Event) -> None:
        try:
            _worker(b, queue, suite, artifacts, writer, lock, finish, log)
        finally:
            done.set()

    threads = [threading.Thread(target=work, args=(b, e), name=f"board-{b.name}", daemon=True)
               for b, e in zip(boards, ended, strict=True)]  # fmt: skip
    for th in threads:
        th.start()
    try:
        _join(ended, None)
        return False
    except StopRequested as e:
        queue.stop.set()
        with queue.cond:
            queue.cond.notify_all()
        log(f"{e.reason}: finishing the inference in progress on each board")
    try:
        if _join(ended, STOP_GRACE_S):
            return False
    except StopRequested:  # a second signal: stop waiting
        pass
    for b in boards:  # a worker still mid-case holds its board's lock folder: take it away (ours only)
        if b.busy:
            _release_own_lock(b.profile)
    return True


def _join(ended: list[threading.Event], timeout: float | None) -> bool:
    """Wait until every worker set its ``ended`` event (at most ``timeout`` s); True when they all ended.

    Polls with ``time.sleep`` rather than ``Thread.join``: on Python 3.11 a signal handler raising inside
    ``join`` marks the still running thread as stopped (``is_alive()`` False), which would end the wait early.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while not all(e.is_set() for e in ended):
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _release_own_lock(profile: DeviceProfile) -> None:
    """Remove the device-side lock folder of ``profile`` if this process holds it (after Ctrl-C, when a worker
    thread cannot unwind). Best effort and bounded by the profile's connect timeout."""
    if profile.transport == "local":
        return
    import json
    import os
    import shlex
    import socket

    from edgedeploy.devices.connect import connect

    with contextlib.suppress(Exception):
        with connect(profile) as t:
            lock_dir = t.expand_path(profile.workdir or ".").rstrip("/") + "/.lock"
            owner = json.loads(t.read_text(lock_dir + "/owner") or "{}")
            if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
                t.sh(f"rm -rf {shlex.quote(lock_dir)}", check=False, timeout=30)


def _probe(board: _Board) -> list[str] | None:
    """The runner names of the runtimes a board has (``--probe``), unless its profile lists them or it is local."""
    p = board.profile
    if p.transport == "local" or p.runtimes or not p.python:  # no Python on the board: nothing to probe with
        return None
    from edgedeploy.devices.connect import connect
    from edgedeploy.devices.remote import probe_device

    with connect(p) as t:
        return list(probe_device(t, p).get("runtimes", {}))


def _export_all(
    suite: Suite, pending: list[CaseOutcome], log: Progress, finish: Callable[[CaseOutcome], None]
) -> dict[tuple[str, str, str], _Artifact]:
    """Export each (model, format, precision) once; mark the cases of failed / timed-out exports and parity checks.

    A signal stops the export in progress (its cases become ``interrupted``) and the remaining ones are not
    started. With ``suite.case_timeout`` each export runs in a child process killed at the deadline.
    """
    out: dict[tuple[str, str, str], _Artifact] = {}
    by_key: dict[tuple[str, str, str], list[CaseOutcome]] = {}
    for o in pending:
        by_key.setdefault((o.case.model, o.case.format, o.case.precision), []).append(o)
    base = suite.path.parent if suite.path else None
    for n, (key, cases) in enumerate(by_key.items(), 1):
        if interrupt.stop_requested():
            break
        model, fmt, precision = key
        log(f"exporting {model} to {fmt} ({precision}) [{n}/{len(by_key)}]")
        status, reason = "", ""
        spec = model if base is None else spec_relative_to(model, base)
        try:
            if suite.case_timeout is None:
                art = _export(spec, fmt, precision, suite.input_size, log)
            else:
                from edgedeploy.bench.case_process import run_isolated

                what = f"the export of {model} to {fmt} ({precision})"
                args = (spec, fmt, precision, suite.input_size, None)
                art = run_isolated(_export, args, suite.case_timeout, what, preload=("edgedeploy.export.pipeline",))
            if art.parity_status == "failed":
                status, reason = "parity failed", "the exported artifact failed its parity check against PyTorch"
            out[key] = art
        except StopRequested as e:
            status = "timed out" if e.timed_out else "interrupted"
            reason = e.reason if e.timed_out else f"{e.reason} during the export"
        except EdgeDeployError as e:
            status, reason = "export failed", str(e)
        except Exception as e:  # noqa: BLE001 - an exporter may fail in any way; the other cases must still run
            status, reason = "export failed", f"{type(e).__name__}: {e}"
        if status:
            for o in cases:
                o.status, o.reason = status, reason
                finish(o)
    return out


def _export(model: str, fmt: str, precision: str, input_size: int | None, log: Progress | None) -> _Artifact:
    """Export (or reuse from the cache) one artifact with its parity check, through :func:`edgedeploy.api.export`."""
    from edgedeploy import api

    outcome = api.export(model, fmt, precision=precision, input_size=input_size, progress=log, cache=True)
    m = outcome.manifest
    return _Artifact(outcome.artifact, tuple(m.input.shape), m.model, outcome.parity.status)


def _bench_one(board: _Board, o: CaseOutcome, suite: Suite, art: _Artifact, log: Progress) -> BenchResult:
    """One timed run through the public API (:func:`edgedeploy.bench`) of the artifact exported for ``o``."""
    from edgedeploy import api

    c = o.case
    step = max(1, suite.iterations // 50)

    def on_sample(i: int, _ms: float) -> None:
        if i % step == 0 or i + 1 == suite.iterations:
            log(f"{board.name}: timing {c.model} {i + 1}/{suite.iterations}")

    return api.bench(
        art.path, device=board.spec, runtime=c.runtime, iterations=suite.iterations, warmup=suite.warmup,
        threads=suite.threads, trust_on_first_use=board.profile.trust_on_first_use, on_sample=on_sample,
    )  # fmt: skip


def _worker(
    board: _Board,
    queue: _Queue,
    suite: Suite,
    artifacts: dict[tuple[str, str, str], _Artifact],
    writer: RunWriter,
    lock: threading.Lock,
    finish: Callable[[CaseOutcome], None],
    log: Progress,
) -> None:
    """One board: take the next job of its device, bench it, store the result; stop when the device has no jobs
    left, a stop was requested (signal), or the board drops out (its job goes back to the queue for the others).
    A run past ``suite.case_timeout`` keeps its samples and marks its case ``timed out``."""
    while True:
        job = queue.take(board.device)
        if job is None:
            return
        o, run = job
        c = o.case
        log(f"{board.name}: {c.model} {c.format} {c.precision} {c.runtime} (run {run + 1}/{suite.runs}): "
            "loading, warm-up")  # fmt: skip
        handed_back = False
        board.busy = True
        what = f"run {run + 1} of {c.model} {c.format} {c.runtime} on {board.name}"
        try:
            with interrupt.case_deadline(suite.case_timeout, what):
                res = _bench_one(board, o, suite, artifacts[(c.model, c.format, c.precision)], log)
                timed_out = _past_deadline()
            if board.farm_board:
                res = res.model_copy(update={"board": board.name})
            writer.add(res)
            with lock:
                o.results.append(res)
            short = len(res.samples_ms) < res.iterations
            if short and (timed_out or interrupt.stop_requested()):  # stopped: the samples are kept
                kept = f"{len(res.samples_ms)} of {res.iterations} samples kept"
                with lock:
                    if timed_out:
                        o.stopped = ("timed out", f"{what} timed out after {suite.case_timeout:g} s; {kept}")
                    else:
                        name = signal.Signals(interrupt.stop_signal() or signal.SIGINT).name
                        o.stopped = ("partial", f"interrupted ({name}) while timing; {kept}")
            elif short:  # the board gave up part-way: kept, and the job moves on
                board.dropped = f"dropped out after {len(res.samples_ms)} of {res.iterations} iterations"
                queue.put(board.device, job, front=True)
                handed_back = True
        except StopRequested as e:
            with lock:
                if e.timed_out:
                    o.stopped = ("timed out", f"{e.reason} before timing started; nothing timed")
                elif o.stopped is None:
                    o.stopped = ("interrupted", f"{e.reason} before timing started (loading / warm-up)")
        except BOARD_GONE as e:
            board.dropped = str(e)
            queue.put(board.device, job, front=True)
            handed_back = True
        except EdgeDeployError as e:
            with lock:
                o.errors.append(f"{board.name}: {e}")
        except Exception as e:  # noqa: BLE001 - one broken case must not stop the others
            with lock:
                o.errors.append(f"{board.name}: {type(e).__name__}: {e}")
        board.busy = False
        if not handed_back:
            with lock:
                o.runs_done += 1
                last = o.runs_done == suite.runs
                if last:
                    if o.stopped is not None:
                        o.status, o.reason = o.stopped
                    elif len(o.complete) == suite.runs:
                        o.status, o.reason = "benchmarked", ""
                    else:
                        o.status, o.reason = "bench failed", "; ".join(o.errors) or "incomplete"
            if last:
                finish(o)
        queue.done(board.device)
        if handed_back:
            log(f"{board.name} dropped out ({board.dropped}); its remaining cases go to the other boards")
            return


def _past_deadline() -> bool:
    """True when this thread's case deadline has passed (the harness stopped for it)."""
    try:
        interrupt.check()
    except StopRequested as e:
        return e.timed_out
    return False
