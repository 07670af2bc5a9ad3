"""Run one step of a suite case (an export, which runs the user's code) in a child process that can be stopped.

User code (a ``file.py:callable`` that builds the model, its ``forward``) runs inside the export. In this process
nothing can stop a callable that never returns; in a child process it can be killed. :func:`run_isolated` starts a
``spawn`` child (a fresh interpreter: no forked runtime thread pools), runs ``fn(*args)`` there and returns its
result, or raises:

* :class:`~edgedeploy.bench.interrupt.StopRequested` (``timed_out=True``) when ``timeout`` s pass: the child gets
  SIGTERM (it unwinds, so an export's staging folder is removed), then SIGKILL after :data:`KILL_AFTER_S`;
* the child's :class:`~edgedeploy.errors.EdgeDeployError` (same class and message), or :class:`ExportError`
  naming the exception type of any other failure, or saying how the child died.

SIGINT / SIGTERM to this process while waiting stop the child the same way and propagate. The child ignores
SIGINT (a Ctrl-C at the terminal reaches the whole process group; the parent decides). Costs a fresh interpreter
per call (importing torch: a few seconds, measured about 4 s on the 2-vCPU test VM; not counted in the timeout:
the clock starts once the child has imported its ``preload`` modules).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import signal
import time
from collections.abc import Callable
from typing import Any

from edgedeploy.bench.interrupt import StopRequested
from edgedeploy.errors import EdgeDeployError, ExportError

#: seconds between SIGTERM and SIGKILL for a child that does not end
KILL_AFTER_S = 5.0
#: seconds a child may take to start and import its ``preload`` modules (not counted in the timeout)
START_LIMIT_S = 300.0


def _child_main(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...], preload: tuple[str, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _term(_signum: int, _frame: Any) -> None:  # once: unwind (staging folders go); a second one kills
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt("terminated by the suite")

    signal.signal(signal.SIGTERM, _term)
    try:
        for name in preload:  # before the clock starts: the timeout is the step's, not the interpreter's start
            importlib.import_module(name)
        conn.send(("started", None))
        conn.send(("ok", fn(*args)))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as data
        cls = type(e)
        with contextlib.suppress(OSError, ValueError):
            conn.send(("err", (cls.__module__, cls.__qualname__, str(e), isinstance(e, EdgeDeployError))))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        conn.close()


def _rebuild(module: str, qualname: str, message: str, is_ours: bool) -> BaseException:
    """The child's error in this process: the same EdgeDeployError subclass and message, else an ExportError."""
    if is_ours:
        try:
            cls = getattr(importlib.import_module(module), qualname)
            err = cls.__new__(cls)
            Exception.__init__(err, message)
            return err
        except (ImportError, AttributeError, TypeError):
            pass
    return ExportError(f"{qualname}: {message}" if message else qualname)


def _stop(proc: Any) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(KILL_AFTER_S)
    if proc.is_alive():
        proc.kill()
        proc.join(KILL_AFTER_S)


def run_isolated(
    fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None, what: str, preload: tuple[str, ...] = ()
) -> Any:
    """``fn(*args)`` in a child process, at most ``timeout`` s (None: no limit); see the module docstring.

    ``fn`` must be a module-level function and ``args`` / its result picklable. ``what`` names the step in the
    timeout message (``"the export of net.py:build to onnx (fp32) timed out after 5 s (case timeout)"``). The
    modules in ``preload`` are imported in the child before the clock starts (at most :data:`START_LIMIT_S`).
    """
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn, args, preload), daemon=True, name="edgedeploy-case")
    proc.start()
    send.close()
    deadline = time.monotonic() + START_LIMIT_S + (timeout or 0)  # until the child says it started
    try:
        while True:
            if recv.poll(0.2):
                try:
                    kind, payload = recv.recv()
                except EOFError:
                    proc.join(KILL_AFTER_S)
                    raise ExportError(
                        f"{what}: the child process ended without an answer (exit {proc.exitcode})"
                    ) from None
                if kind == "started":
                    deadline = None if timeout is None else time.monotonic() + timeout
                    continue
                break
            if not proc.is_alive() and not recv.poll(0):
                raise ExportError(f"{what}: the child process died (exit code {proc.exitcode})")
            if deadline is not None and time.monotonic() > deadline:
                raise StopRequested(f"{what} timed out after {timeout:g} s (case timeout)", timed_out=True)
    finally:
        _stop(proc)
        recv.close()
    if kind == "ok":
        return payload
    raise _rebuild(*payload)
