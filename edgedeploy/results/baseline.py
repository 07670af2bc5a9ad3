"""Baselines: the reference results of a branch (usually ``main``) that ``compare`` checks new runs against.

A baseline folder (default ``.edgedeploy/baselines``, or ``$EDGEDEPLOY_BASELINES``) holds one file per branch,
``<branch>.json`` (``/`` in branch names becomes ``__``), in the run-record format of
:mod:`edgedeploy.results.store` with ``label = "baseline:<branch>"``. Saving replaces the branch's baseline
atomically. Keep several runs per key in a baseline (e.g. three ``bench`` runs): ``compare`` uses the fastest of
them (see :mod:`edgedeploy.results.compare`), which the calibration shows lowers false alarms on a noisy machine.

``compare baseline:main CURRENT`` (or ``baseline:main@/path/to/folder``) reads a saved baseline.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from edgedeploy.errors import ArtifactError, ConfigError
from edgedeploy.results.result import BenchResult
from edgedeploy.results.store import StoredRun, atomic_write_text, read_run

BASELINE_ENV = "EDGEDEPLOY_BASELINES"
DEFAULT_BASELINES = Path(".edgedeploy") / "baselines"
_BRANCH_OK = re.compile(r"^[A-Za-z0-9._/-]+$")


def default_baseline_dir() -> Path:
    """``$EDGEDEPLOY_BASELINES`` if set, else ``./.edgedeploy/baselines``."""
    env = os.environ.get(BASELINE_ENV)
    return Path(env) if env else DEFAULT_BASELINES


def baseline_path(branch: str, folder: str | Path | None = None) -> Path:
    """The file holding ``branch``'s baseline. Raises :class:`ConfigError` for an invalid branch name."""
    if not branch or not _BRANCH_OK.match(branch) or ".." in branch.split("/"):
        raise ConfigError(f"invalid branch name {branch!r} (letters, digits, '.', '_', '-', '/')")
    base = Path(folder) if folder is not None else default_baseline_dir()
    return base / f"{branch.replace('/', '__')}.json"


def save_baseline(
    results: Sequence[BenchResult],
    branch: str = "main",
    folder: str | Path | None = None,
    git_commit: str | None = None,
) -> StoredRun:
    """Store ``results`` as ``branch``'s baseline (replacing any previous one, atomically) and return the record.

    Raises :class:`ArtifactError` for an empty result set, :class:`ConfigError` for a bad branch name.
    """
    if not results:
        raise ArtifactError("cannot save an empty baseline: no benchmark results given")
    path = baseline_path(branch, folder)
    commit = git_commit or next((r.git_commit for r in results if r.git_commit), None)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    run = StoredRun(f"baseline-{branch}", None, now, commit, f"baseline:{branch}", list(results))
    run.path = atomic_write_text(path, json.dumps(run.to_record(), indent=1))
    return run


def load_baseline(branch: str = "main", folder: str | Path | None = None) -> StoredRun:
    """Read ``branch``'s baseline. Raises :class:`ArtifactError` if none is saved (the message says how to save one)."""
    path = baseline_path(branch, folder)
    if not path.is_file():
        raise ArtifactError(
            f"no baseline saved for branch '{branch}' in {path.parent} "
            f"(save one with: edgedeploy baseline save RESULTS --branch {branch})"
        )
    return read_run(path)


def list_baselines(folder: str | Path | None = None) -> list[str]:
    """Branch names that have a saved baseline in ``folder``."""
    base = Path(folder) if folder is not None else default_baseline_dir()
    if not base.is_dir():
        return []
    return sorted(p.stem.replace("__", "/") for p in base.glob("*.json") if not p.name.startswith("."))
