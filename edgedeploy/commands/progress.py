"""Export progress on a terminal: the running stage with the elapsed time, and each finished stage with its time.

Command layer only (rich). The library reports stages through the ``progress(msg)`` callback of
:class:`~edgedeploy.options.ExportOptions` (building / lowering / exporting / checking parity …); this turns
them into a spinner line ``exporting to mnn (fp32) · 12 s`` and, on a terminal, one finished line per stage
(``✓ exporting to mnn (fp32)  37.4 s``). Off a terminal (pipes, CI logs) nothing is drawn, so ``--json`` output
and logs stay clean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape


@contextmanager
def stage_progress(console: Console, title: str) -> Iterator[Callable[[str], None]]:
    """Yield a ``progress(msg)`` callback that shows ``msg`` as the running stage on ``console`` (stderr).

    Each new message closes the previous stage, printed with its duration (s) when ``console`` is a terminal.
    """
    start = time.monotonic()
    current: list[tuple[str, float]] = []
    tty = console.is_terminal

    def finish(now: float) -> None:
        if current and tty:
            msg, since = current.pop()
            console.print(f"[green]✓[/] {escape(msg)}  [dim]{now - since:.1f} s[/]", highlight=False)
        current.clear()

    with console.status(escape(title)) as status:

        def progress(msg: str) -> None:
            now = time.monotonic()
            finish(now)
            current.append((msg, now))
            status.update(f"{escape(msg)} [dim]· {now - start:.0f} s elapsed[/]")

        yield progress
        finish(time.monotonic())
