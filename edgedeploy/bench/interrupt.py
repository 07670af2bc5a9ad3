"""Cooperative stops for work that runs off the main thread: SIGINT / SIGTERM during a suite, and case deadlines.

Python delivers signals to the main thread only. A suite benches its cases in worker threads (one per board), and a
worker inside a runtime call (onnxruntime, MNN, an SSH read) cannot be interrupted there; a main thread that exits
while a worker is inside onnxruntime ends in ``std::terminate`` (exit 134) and loses what was measured. So, while
:func:`stop_on_signals` is active, a signal only *requests* a stop:

* the first SIGINT / SIGTERM sets the process-wide stop request (:func:`stop_requested`) and raises
  :class:`StopRequested` in the main thread (what it was doing there, e.g. an export, ends at once);
* workers call :func:`check` between inferences (the timing harness does, :mod:`edgedeploy.bench.harness`, and so
  does the SSH read loop): it raises :class:`StopRequested`, the harness keeps the samples measured (``status:
  partial``), and the worker stores them and stops taking jobs;
* a second signal raises :class:`StopRequested` with ``force=True``: the caller stops waiting for the workers.

:func:`case_deadline` sets a per-thread deadline (a suite's ``case_timeout``): :func:`check` past it raises
:class:`StopRequested` with ``timed_out=True``. Transports wait in loops that also run clean-up commands, so they
call :func:`check_interruptible`, which raises only inside :func:`interruptible` (the remote runner's run, see
:mod:`edgedeploy.devices.remote`). Nothing here prints or exits.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_stop = threading.Event()
_signals: list[int] = []
_local = threading.local()


class StopRequested(KeyboardInterrupt):
    """A stop was requested: by a signal (``signum``), or by the case deadline (``timed_out``).

    A ``KeyboardInterrupt`` so that code catching ``Exception`` does not swallow it, and the timing harness keeps
    the samples measured. ``force``: a second signal (stop waiting for the workers).
    """

    def __init__(self, reason: str, signum: int | None = None, timed_out: bool = False, force: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signum = signum
        self.timed_out = timed_out
        self.force = force


def stop_requested() -> bool:
    """True once a SIGINT / SIGTERM arrived under :func:`stop_on_signals`."""
    return _stop.is_set()


def stop_signal() -> int | None:
    """The first signal number received under :func:`stop_on_signals`, or None."""
    return _signals[0] if _signals else None


def request_stop(signum: int) -> None:
    """Request a stop as if ``signum`` had arrived (for tests and for code that caught a signal itself)."""
    _signals.append(int(signum))
    _stop.set()


def _signal_reason(signum: int) -> str:
    return f"interrupted ({signal.Signals(signum).name})"


def _handler(signum: int, _frame: Any) -> None:
    first = not _stop.is_set()
    request_stop(signum)
    raise StopRequested(_signal_reason(signum), signum, force=not first)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside: SIGINT / SIGTERM request a stop (see the module docstring); restored and cleared after.

    In a thread other than the main one this only clears the request state (signals cannot be caught there).
    """
    _stop.clear()
    _signals.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from edgedeploy.signals import handling

    with handling(_handler):
        yield


@contextmanager
def case_deadline(seconds: float | None, what: str = "the case") -> Iterator[None]:
    """While inside (this thread): :func:`check` raises a timed-out :class:`StopRequested` after ``seconds`` s."""
    prev = getattr(_local, "deadline", None)
    _local.deadline = None if seconds is None else (time.monotonic() + seconds, seconds, what)
    try:
        yield
    finally:
        _local.deadline = prev


def check() -> None:
    """Raise :class:`StopRequested` when a stop was requested or this thread's case deadline has passed."""
    if _stop.is_set():
        signum = stop_signal() or signal.SIGINT
        raise StopRequested(_signal_reason(signum), signum)
    d = getattr(_local, "deadline", None)
    if d is not None and time.monotonic() > d[0]:
        raise StopRequested(f"{d[2]} timed out after {d[1]:g} s (case timeout)", timed_out=True)


@contextmanager
def interruptible() -> Iterator[None]:
    """While inside (this thread): :func:`check_interruptible` checks like :func:`check` (a long remote run)."""
    prev = getattr(_local, "interruptible", False)
    _local.interruptible = True
    try:
        yield
    finally:
        _local.interruptible = prev


def check_interruptible() -> None:
    """:func:`check`, but only inside :func:`interruptible` (elsewhere a no-op: clean-up commands must run)."""
    if getattr(_local, "interruptible", False):
        check()
