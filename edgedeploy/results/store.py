"""The result store: one JSON record per benchmark run in a folder, written atomically; loading results back.

A store is a plain folder (default ``.edgedeploy/results``, or ``$EDGEDEPLOY_RESULTS``). Each run is one file
``<UTC time>-<run id>.json`` holding a record::

    {"record": "edgedeploy.run", "schema_version": 1, "run_id": "3f2a9c0d1b7e", "created": "2026-11-21T06:00:00+00:00",
     "git_commit": "a1d7789", "label": "", "results": [<BenchResult>, ...]}

Writes go to a temporary file in the same folder, are flushed and ``fsync``-ed, then renamed over the final name
with ``os.replace`` (atomic on POSIX and Windows within one file system), and the folder is ``fsync``-ed; a writer
killed at any point leaves either no file or a complete one, plus at most a hidden ``.*.tmp`` file that readers
ignore.

:func:`edgedeploy.results.sources.load_source` reads results back by any name ``compare`` and ``report`` accept.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgedeploy._util import atomic_write_text
from edgedeploy.errors import ArtifactError
from edgedeploy.results.result import BenchResult

RECORD_KIND = "edgedeploy.run"
RECORD_SCHEMA_VERSION = 1
STORE_ENV = "EDGEDEPLOY_RESULTS"
DEFAULT_STORE = Path(".edgedeploy") / "results"


def default_store() -> Path:
    """``$EDGEDEPLOY_RESULTS`` if set, else ``./.edgedeploy/results``."""
    env = os.environ.get(STORE_ENV)
    return Path(env) if env else DEFAULT_STORE


@dataclass
class StoredRun:
    """One stored run: its id, file, creation time (ISO 8601, UTC), git commit, label and results."""

    run_id: str
    path: Path | None
    created: str
    git_commit: str | None
    label: str = ""
    results: list[BenchResult] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        return {
            "record": RECORD_KIND,
            "schema_version": RECORD_SCHEMA_VERSION,
            "run_id": self.run_id,
            "created": self.created,
            "git_commit": self.git_commit,
            "label": self.label,
            "results": [json.loads(r.model_dump_json()) for r in self.results],
        }


def append_run(
    results: BenchResult | Sequence[BenchResult],
    store: str | Path | None = None,
    label: str = "",
    run_id: str | None = None,
) -> StoredRun:
    """Append one run (one or several results) to the store folder as a new record file, atomically.

    ``git_commit`` of the record is taken from the results (the first one that has it). Returns the
    :class:`StoredRun` with its file path. Raises :class:`ArtifactError` for an empty run, ``OSError`` on I/O errors.
    """
    items = [results] if isinstance(results, BenchResult) else list(results)
    if not items:
        raise ArtifactError("nothing to store: the run has no results")
    now = _dt.datetime.now(_dt.timezone.utc)
    rid = run_id or uuid.uuid4().hex[:12]
    commit = next((r.git_commit for r in items if r.git_commit), None)
    run = StoredRun(rid, None, now.isoformat(timespec="seconds"), commit, label, items)
    folder = Path(store) if store is not None else default_store()
    path = folder / f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{rid}.json"
    run.path = atomic_write_text(path, json.dumps(run.to_record(), indent=1))
    return run


class RunWriter:
    """One run record that grows while a suite runs: created on the first :meth:`add`, rewritten atomically (same
    file, same run id) after every result, so a crash or Ctrl-C keeps everything measured so far.

    ``extra`` holds more top-level keys of the record (a suite's name and per-case statuses); readers ignore them.
    Thread-safe. Raises ``OSError`` on I/O errors.
    """

    def __init__(self, store: str | Path | None = None, label: str = "", run_id: str | None = None) -> None:
        import threading

        now = _dt.datetime.now(_dt.timezone.utc)
        self.run = StoredRun(run_id or uuid.uuid4().hex[:12], None, now.isoformat(timespec="seconds"), None, label)
        folder = Path(store) if store is not None else default_store()
        self.target = folder / f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{self.run.run_id}.json"
        self.extra: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def path(self) -> Path | None:
        """The record's file once something was written, else ``None``."""
        return self.run.path

    def add(self, result: BenchResult) -> Path:
        with self._lock:
            self.run.results.append(result)
            if self.run.git_commit is None and result.git_commit:
                self.run.git_commit = result.git_commit
            return self._write()

    def update(self, **extra: Any) -> Path | None:
        """Set extra record keys; rewrites the file if it exists already."""
        with self._lock:
            self.extra.update(extra)
            return self._write() if self.run.path is not None else None

    def _write(self) -> Path:
        record = {**self.run.to_record(), **self.extra}
        self.run.path = atomic_write_text(self.target, json.dumps(record, indent=1))
        return self.run.path


def append_result(folder: str | Path, result: BenchResult) -> Path:
    """Append one result as a new run record in ``folder`` (what ``bench --out DIR`` does); returns the file path.

    Same atomicity and errors as :func:`append_run`.
    """
    run = append_run(result, folder)
    assert run.path is not None
    return run.path


def check_samples(items: Sequence[BenchResult], origin: str) -> None:
    """Raise :class:`ArtifactError` for a result whose ``samples_ms`` is empty or holds a value that is not a
    finite number ≥ 0 (ms): every statistic is derived from the samples, so such a file says nothing."""
    for i, r in enumerate(items):
        where = f"{origin}: result {i} ({r.model})"
        if not r.samples_ms:
            raise ArtifactError(f"{where} has no samples (samples_ms is empty)")
        bad = next((v for v in r.samples_ms if not (math.isfinite(v) and v >= 0)), None)
        if bad is not None:
            raise ArtifactError(f"{where}: samples_ms holds {bad!r}; latencies are finite numbers ≥ 0 ms")


def parse_document(data: Any, origin: str) -> StoredRun:
    """Turn a parsed JSON document into a :class:`StoredRun`.

    Accepts a run record (``{"record": "edgedeploy.run", ...}``), ``{"results": [...]}``, a list of BenchResult
    objects or a single BenchResult object. Raises :class:`ArtifactError` naming ``origin`` otherwise.
    """
    try:
        if isinstance(data, dict) and "results" in data:
            version = data.get("schema_version", 1)
            if not isinstance(version, int) or isinstance(version, bool):
                raise ArtifactError(f"{origin}: record schema_version must be a whole number (got {version!r})")
            if version > RECORD_SCHEMA_VERSION:
                raise ArtifactError(f"{origin}: record schema_version {data['schema_version']} is newer than supported")
            if not isinstance(data["results"], list):
                raise ArtifactError(f"{origin}: 'results' must be a list of benchmark results")
            items = [BenchResult.model_validate(r) for r in data["results"]]
            check_samples(items, origin)
            return StoredRun(
                str(data.get("run_id") or Path(origin).stem),
                None,
                str(data.get("created") or ""),
                data.get("git_commit"),
                str(data.get("label") or ""),
                items,
            )
        if isinstance(data, list):
            items = [BenchResult.model_validate(r) for r in data]
        elif isinstance(data, dict):
            items = [BenchResult.model_validate(data)]
        else:
            raise ArtifactError(f"{origin}: not a benchmark result, list of results or run record")
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(f"{origin}: not a valid benchmark result ({where}: {first['msg']})") from None
    check_samples(items, origin)
    created = min((r.timestamp for r in items), default="")
    commit = next((r.git_commit for r in items if r.git_commit), None)
    return StoredRun(Path(origin).stem, None, created, commit, "", items)


def read_run(path: str | Path) -> StoredRun:
    """Read one JSON file (run record or ``bench --json`` output). Raises :class:`ArtifactError` if it is missing,
    unreadable, not JSON or not a benchmark result."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ArtifactError(f"{path}: not valid JSON (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except (ValueError, RecursionError) as e:  # over-long integers, absurd nesting
        raise ArtifactError(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:80]})") from None
    run = parse_document(data, str(path))
    run.path = path
    return run


def _is_visible_json(p: Path) -> bool:
    return p.is_file() and p.suffix == ".json" and not p.name.startswith(".")


def list_runs(store: str | Path | None = None) -> list[StoredRun]:
    """All runs in a folder, oldest first (by creation time, then file name). Hidden temp files are ignored.

    A missing folder gives an empty list. Raises :class:`ArtifactError` for a corrupt or foreign JSON file.
    """
    folder = Path(store) if store is not None else default_store()
    if not folder.is_dir():
        return []
    runs = [read_run(p) for p in sorted(folder.iterdir()) if _is_visible_json(p)]
    return sorted(runs, key=lambda r: (r.created, str(r.path)))


def find_run(run_id: str, store: str | Path | None = None) -> StoredRun:
    """The stored run whose id is ``run_id`` or starts with it. Raises :class:`ArtifactError` if none or several."""
    runs = list_runs(store)
    hits = [r for r in runs if r.run_id == run_id] or [r for r in runs if r.run_id.startswith(run_id)]
    if len(hits) == 1:
        return hits[0]
    folder = Path(store) if store is not None else default_store()
    if not hits:
        raise ArtifactError(f"'{run_id}' is not a file, a folder or a run id stored in {folder}")
    raise ArtifactError(f"run id prefix '{run_id}' is ambiguous in {folder}: {', '.join(r.run_id for r in hits)}")


def flatten(runs: Iterable[StoredRun]) -> list[BenchResult]:
    out: list[BenchResult] = []
    for run in runs:
        for r in run.results:
            if r.git_commit is None and run.git_commit:
                r = r.model_copy(update={"git_commit": run.git_commit})
            out.append(r)
    return out
