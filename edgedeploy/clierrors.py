"""The one error path of every ``edgedeploy`` command: one line on stderr and a documented exit code.

* :class:`~edgedeploy.errors.EdgeDeployError` → ``error: <message>`` and its ``exit_code`` (1–5, see
  :mod:`edgedeploy.errors`);
* Ctrl-C (SIGINT) and SIGTERM → ``interrupted (SIGINT)`` and 128 + the signal number (130, 143); a benchmark that
  was timing keeps and prints / stores the samples measured so far first;
* anything else (a bug, or a library failing in a way the toolkit did not foresee) → ``internal error: <type>:
  <message> (run with --debug for the traceback)`` and :data:`~edgedeploy.errors.INTERNAL_ERROR_EXIT` (70).

``--debug`` on the top-level command (or ``EDGEDEPLOY_DEBUG=1``) prints the traceback before the line, for every
command and sub-command group (devices, results, baseline …). Click's own usage errors (an unknown option, a
value of the wrong type, a path that must be a file) are one line too: ``error: <message> (see <command> --help)``,
exit 2.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from edgedeploy.errors import INTERNAL_ERROR_EXIT, EdgeDeployError
from edgedeploy.signals import Interrupted, received_signal, signals_as_interrupts, signals_deferred

__all__ = [
    "ErrorHandlingGroup",
    "Interrupted",
    "err_console",
    "exit_for",
    "guarded",
    "one_line",
    "received_signal",
    "signals_as_interrupts",
    "signals_deferred",
]

# The commands' stderr console (status spinners, progress bars, warnings); stdout carries the results.
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def one_line(text: object) -> str:
    """``text`` with its lines joined by spaces (a message from a library may span several)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def debug_enabled() -> bool:
    """``--debug`` on the root command, or ``EDGEDEPLOY_DEBUG`` set to something other than 0 / empty."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        obj = ctx.find_root().obj
        if isinstance(obj, dict) and obj.get("debug"):
            return True
    return os.environ.get("EDGEDEPLOY_DEBUG", "") not in ("", "0")


def _echo(prefix: str, color: str, message: str) -> None:
    click.echo(click.style(prefix, fg=color, bold=True) + " " + message, err=True)


def exit_for(exc: BaseException) -> NoReturn:
    """Print ``exc`` as one line (after the traceback with ``--debug``) and exit with its code."""
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, EdgeDeployError):
        _echo("error:", "red", one_line(exc))
        sys.exit(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        _echo("interrupted", "red", f"({signal.Signals(signum).name})")
        sys.exit(128 + int(signum))
    what = one_line(exc) or "(no message)"
    _echo("internal error:", "red", f"{type(exc).__name__}: {what} (run with --debug for the traceback)")
    sys.exit(INTERNAL_ERROR_EXIT)


_CLICK_PASSTHROUGH = (click.exceptions.Exit, click.exceptions.Abort)


def _usage_error(e: click.ClickException) -> NoReturn:
    ctx = getattr(e, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    _echo("error:", "red", one_line(e.format_message()) + hint)
    sys.exit(e.exit_code)


class ErrorHandlingGroup(click.Group):
    """A click group whose sub-commands all go through :func:`exit_for` (see the module docstring)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _CLICK_PASSTHROUGH:
            raise
        except click.ClickException as e:  # a usage error of this group's own options (``edgedeploy --bogus``)
            _usage_error(e)

    def invoke(self, ctx: click.Context) -> Any:
        with signals_as_interrupts():
            try:
                return super().invoke(ctx)
            except _CLICK_PASSTHROUGH:
                raise
            except click.ClickException as e:
                _usage_error(e)
            except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the last-resort handler, by design
                exit_for(e)


def guarded(fn: F) -> F:
    """Decorator for a command that may also run outside the main group (tests invoke commands directly):
    the same one-line handling as :class:`ErrorHandlingGroup`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (*_CLICK_PASSTHROUGH, click.ClickException):
            raise
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the last-resort handler, by design
            exit_for(e)

    return wrapper  # type: ignore[return-value]
