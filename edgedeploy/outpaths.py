"""The one check of output paths, run by every command before any work starts (issue 24).

:func:`check_output_file` is for ``--markdown`` / ``--html`` / ``--json`` files, :func:`check_output_dir` for
``--out`` folders. Neither creates anything: they look at the path and its nearest existing ancestor. Both raise
:class:`~edgedeploy.errors.OutputError` (exit code 2) with one line starting ``cannot write <path>: …``:
a folder where a file goes (or a file where a folder goes), an ancestor that is a file, a folder without write
permission. A check can still be beaten by the disk filling up later; the writers handle that (atomic writes,
:mod:`edgedeploy.bench.keep`).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgedeploy.errors import OutputError


def _label(path: Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def _given(path: str | Path | None, option: str | None) -> tuple[Path, str] | None:
    """``(path, its label)``, or None for no path; :class:`OutputError` for a path holding a NUL byte."""
    if path is None or str(path) == "":
        return None
    p = Path(path)
    label = _label(p, option)
    if "\0" in str(p):
        raise OutputError(f"cannot write {label!r}: the path holds a NUL byte")
    return p, label


def _writable_ancestor(path: Path, label: str, folder: bool = False) -> None:
    """The nearest existing ancestor of ``path`` must be a folder this process can create entries in."""
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists():
        if parent.is_symlink():
            raise OutputError(f"cannot write {label}: {parent} is a broken symbolic link")
        nxt = parent.parent
        if nxt == parent:
            break
        parent = nxt
    if not parent.is_dir():
        if folder:
            raise OutputError(f"cannot write {label}: the output folder cannot be made, {parent} is not a folder")
        raise OutputError(f"cannot write {label}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        if folder:
            raise OutputError(f"cannot write {label}: the output folder cannot be made, {parent} is not writable")
        raise OutputError(f"cannot write {label}: folder {parent} is not writable")


def check_output_file(path: str | Path | None, option: str | None = None) -> Path | None:
    """Fail now when the file ``path`` could not be written later; returns it as a ``Path`` (None stays None).

    ``option`` (``"--markdown"``) is named in the message. Raises :class:`OutputError`.
    """
    given = _given(path, option)
    if given is None:
        return None
    p, label = given
    if p.is_dir():
        raise OutputError(f"cannot write {label}: it is a folder")
    if p.exists() and not os.access(p, os.W_OK) and not os.access(p.parent if str(p.parent) else ".", os.W_OK):
        raise OutputError(f"cannot write {label}: not writable")
    _writable_ancestor(p, label)
    return p


def check_output_dir(path: str | Path | None, option: str | None = None) -> Path | None:
    """Fail now when the folder ``path`` could not be created or written into later (nothing is created).

    Raises :class:`OutputError`.
    """
    given = _given(path, option)
    if given is None:
        return None
    p, label = given
    if p.exists():
        if not p.is_dir():
            raise OutputError(f"cannot write {label}: it is a file, not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {label}: output folder {p} is not writable")
        return p
    _writable_ancestor(p, label, folder=True)
    return p


def check_output_files(*paths: str | Path | None) -> None:
    """:func:`check_output_file` of each path given (``None`` skipped): every output is checked before any work."""
    for path in paths:
        check_output_file(path)


def write_output(path: str | Path | None, text: str) -> None:
    """Write an output file atomically (nothing when ``path`` is ``None``); :class:`OutputError` (exit 2) when it
    cannot be written (read-only folder, full disk)."""
    if path:
        from edgedeploy._util import atomic_write_text

        try:
            atomic_write_text(Path(path), text)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
