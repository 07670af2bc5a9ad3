"""User code cannot take over the exit: its exceptions, ``SystemExit`` and ``KeyboardInterrupt`` become one error.

A user's ``file.py:callable`` (importing its module, calling it, its model's ``forward`` during an export) may raise
anything. :func:`user_code` turns what escapes into :class:`~edgedeploy.errors.UserCodeError` (exit code 2, one
line ``<what>: your callable raised SystemExit: 7``), so ``sys.exit(7)`` in a user's builder does not make
edgedeploy exit 7 with no message, and a ``raise KeyboardInterrupt`` is not reported as Ctrl-C.

A *real* SIGINT / SIGTERM still interrupts: the CLI's and the suite's signal handlers raise a ``KeyboardInterrupt``
subclass carrying ``signum`` (:class:`edgedeploy.clierrors.Interrupted`,
:class:`edgedeploy.bench.interrupt.StopRequested`), which passes through. Without such a handler (plain Python, the
API in a script) a ``KeyboardInterrupt`` cannot be told from Ctrl-C and passes through too.
:class:`~edgedeploy.errors.EdgeDeployError` raised by user code (it may call edgedeploy) passes through unchanged.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

from edgedeploy.errors import EdgeDeployError, UserCodeError

F = TypeVar("F", bound=Callable[..., Any])


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"


def _is_signal(e: BaseException) -> bool:
    """A KeyboardInterrupt that a real signal raised (or that cannot be told from one)."""
    if getattr(e, "signum", None) is not None:
        return True
    return signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _convert(e: BaseException, what: str, phase: str) -> BaseException | None:
    if isinstance(e, (EdgeDeployError, GeneratorExit)):
        return None
    if isinstance(e, KeyboardInterrupt) and _is_signal(e):
        return None
    return UserCodeError(f"{what}: your callable raised {type(e).__name__}: {_first_line(e)}{phase}")


@contextmanager
def user_code(what: str, phase: str = "", exits_only: bool = False) -> Iterator[None]:
    """While inside, what the user's code raises becomes :class:`UserCodeError` naming ``what`` (the spec).

    ``phase`` is appended to the message (``" (during the export)"``). ``exits_only``: convert only
    ``SystemExit`` and non-signal ``KeyboardInterrupt`` (around library code that calls the user's ``forward``:
    its own errors keep their types).
    """
    try:
        yield
    except BaseException as e:
        if exits_only and not isinstance(e, (SystemExit, KeyboardInterrupt)):
            raise
        err = _convert(e, what, phase)
        if err is None:
            raise
        raise err from e


def contain_exits(what: Callable[..., str]) -> Callable[[F], F]:
    """Decorator: ``SystemExit`` / non-signal ``KeyboardInterrupt`` escaping the function become
    :class:`UserCodeError`; ``what(*args, **kwargs)`` names the source in the message."""

    def deco(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (SystemExit, KeyboardInterrupt) as e:
                err = _convert(e, what(*args, **kwargs), " (in the model's code)")
                if err is None:
                    raise
                raise err from e

        return wrapper  # type: ignore[return-value]

    return deco


def model_label(model: Any, *_args: Any, **_kwargs: Any) -> str:
    """How to name ``model`` (a spec string, a resolved source, a module) in a :class:`UserCodeError`."""
    if isinstance(model, str):
        return model
    spec = getattr(model, "spec", None)
    return str(spec) if spec else f"<{type(model).__name__}>"


def check_name(name: str, what: str = "--name") -> str:
    """An artifact / model name must be one path component: not empty, not ``.`` / ``..``, no ``/``, ``\\``, NUL
    or control character, not starting with ``.`` (hidden; the staging folders' prefix), at most 200 characters.
    Raises :class:`~edgedeploy.errors.ConfigError` (exit 2)."""
    from edgedeploy.errors import ConfigError

    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{what} must not be empty")
    bad = next((c for c in name if c in "/\\" or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ConfigError(f"{what} {name!r} must be a single file name: it holds {bad!r}")
    if name in (".", "..") or name.startswith("."):
        raise ConfigError(f"{what} {name!r} must be a single file name not starting with '.'")
    if len(name) > 200:
        raise ConfigError(f"{what} is {len(name)} characters long (at most 200)")
    return name
