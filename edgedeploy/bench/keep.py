"""Nothing measured is lost: write a benchmark result, and when that fails, save it somewhere and say where.

:func:`save_result` writes ``bench --out`` (a ``.json`` file, or a result folder where one run record is appended,
see :mod:`edgedeploy.results.store`) with SIGINT / SIGTERM held back for the length of the write. When the write
fails (read-only folder, full disk, a file in the way …) the result is written to a fallback file — the first of
``$EDGEDEPLOY_CACHE/unsaved-results/`` (``~/.cache/edgedeploy/unsaved-results/``) and the system temp folder
(``$TMPDIR``, else ``/tmp``) that takes it — and :class:`~edgedeploy.errors.OutputError` (exit code 2) is raised naming
both the failed path and the fallback file. Only when no fallback can be written either does the message say so,
and the caller prints the result (``bench`` prints it as JSON on stdout before any write, with ``--json``).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from edgedeploy.errors import EdgeDeployError, OutputError

FALLBACK_SUBDIR = "unsaved-results"


def fallback_dirs() -> list[Path]:
    """Where a result that could not be written goes, in order of preference."""
    from edgedeploy.export.pipeline import cache_dir

    tmp = os.environ.get("TMPDIR") or "/tmp"  # not tempfile.gettempdir(): it silently skips a full $TMPDIR
    return [cache_dir() / FALLBACK_SUBDIR, Path(tmp) / "edgedeploy-unsaved-results"]


def write_fallback(text: str, stem: str = "bench") -> Path | None:
    """Write ``text`` to a new file in the first :func:`fallback_dirs` folder that takes it; None if none does."""
    from edgedeploy._util import atomic_write_text

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    for folder in fallback_dirs():
        path = folder / f"{stamp}-{os.getpid()}-{stem}.json"
        try:
            return atomic_write_text(path, text)
        except OSError:
            continue
    return None


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return str(e)


def write_result(result: Any, out: Path) -> Path:
    """Write ``result`` to ``out`` (a ``.json`` file, else a result folder); returns the file written.

    Raises ``OSError`` / :class:`EdgeDeployError` on failure (nothing half-written is left: atomic writes).
    """
    from edgedeploy._util import atomic_write_text
    from edgedeploy.signals import signals_deferred

    with signals_deferred():
        if out.suffix == ".json" and not out.is_dir():
            return atomic_write_text(out, result.to_json() + "\n")
        from edgedeploy.results.store import append_result

        return append_result(out, result)


def save_result(result: Any, out: str | Path) -> Path:
    """Write ``result`` to ``out``; on failure keep it in a fallback file and raise :class:`OutputError` saying
    where (see the module docstring; the error's ``saved`` attribute is the fallback path or None). Returns the
    path written on success."""
    out = Path(out)
    try:
        return write_result(result, out)
    except (OSError, EdgeDeployError) as e:
        n = len(getattr(result, "samples_ms", []) or [])
        saved = write_fallback(result.to_json() + "\n", stem=str(getattr(result, "model", "bench")))
        where = f"the {n} samples were saved to {saved}" if saved else "no fallback file could be written either"
        err = OutputError(f"cannot write the result to {out}: {_reason(e)}; {where}")
        err.saved = saved  # type: ignore[attr-defined]
        raise err from e
