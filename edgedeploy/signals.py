"""SIGINT / SIGTERM handling shared by the harness and the command layer (no UI here; any layer may import it).

:func:`signals_as_interrupts` turns both into :class:`Interrupted` (the command layer wraps every command in it;
the timing harness catches it and keeps the samples measured); :func:`signals_deferred` holds them off during a
short write that must not be cut (a result, a manifest).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_received: list[int] = []


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which (the timing harness keeps the samples measured)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def received_signal() -> int | None:
    """The last SIGINT / SIGTERM this process received while the CLI ran, or None."""
    return _received[-1] if _received else None


def _raise_interrupted(signum: int, _frame: Any) -> None:
    _received.append(signum)
    raise Interrupted(signum)


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM both raise :class:`Interrupted` (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    with handling(_raise_interrupted):
        yield


@contextmanager
def handling(handler: Any) -> Iterator[None]:
    """While inside: ``handler`` handles SIGINT and SIGTERM; the previous handlers are restored after. Main thread
    only (the caller checks: signals cannot be caught in another thread)."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Block SIGINT and SIGTERM while inside (a short write that must not be cut); they are delivered after."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
