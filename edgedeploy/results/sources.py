"""Results by name: what ``compare``, ``report`` and :func:`edgedeploy.compare` accept as a side.

:func:`load_source` reads a ``bench --json`` file (one BenchResult, a list of them, or a run record), a folder (a
store, or any folder of such files), a stored run id (or unique prefix) in the default store, or
``baseline:<branch>[@<folder>]`` (see :mod:`edgedeploy.results.baseline`). Records layer (below the harness): it
imports only the store and the baseline files.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgedeploy.errors import ArtifactError
from edgedeploy.results.baseline import load_baseline
from edgedeploy.results.result import BenchResult
from edgedeploy.results.store import StoredRun, find_run, flatten, list_runs, read_run


def load_source_runs(spec: str | Path, store: str | Path | None = None) -> list[StoredRun]:
    """The runs named by ``spec``: a JSON file, a folder, ``baseline:<branch>[@<folder>]`` or a stored run id.

    Raises :class:`ArtifactError` when ``spec`` names nothing readable or contains no results.
    """
    text = str(spec)
    path = Path(text)
    if text.startswith("baseline:") and not path.exists():
        branch, _, where = text[len("baseline:") :].partition("@")
        return [load_baseline(branch, where or None)]
    if path.is_file():
        return [read_run(path)]
    if path.is_dir():
        runs = list_runs(path)
        if not runs:
            raise ArtifactError(f"{path}: folder holds no benchmark results (*.json)")
        return runs
    if os.sep in text or text.endswith(".json"):
        raise ArtifactError(f"{text}: no such file or folder")
    return [find_run(text, store)]


def load_source(spec: str | Path, store: str | Path | None = None) -> list[BenchResult]:
    """All :class:`BenchResult` objects named by ``spec`` (see :func:`load_source_runs`), each stamped with the
    record's git commit where the result itself has none."""
    return flatten(load_source_runs(spec, store))
