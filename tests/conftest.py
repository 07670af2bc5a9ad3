"""Shared test set-up: a private artifact cache, a single torch thread, CLI helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_CACHE = tempfile.mkdtemp(prefix="edgedeploy-test-cache-")  # removed at the end of the session (pytest_unconfigure)
os.environ.setdefault("EDGEDEPLOY_CACHE", _CACHE)


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real ``edgedeploy`` entry point in a child process (stdout and stderr captured as text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgedeploy.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture
def private_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Device locks in a folder of this test's own (``EDGEDEPLOY_LOCK_DIR``), not the user's."""
    monkeypatch.setenv("EDGEDEPLOY_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture(scope="session")
def spine_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for artifacts exported once per test session."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.hookimpl(trylast=True)  # after -m / -k deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The corpus tests run last; when any is selected, the corpus starts now in the background (corpus_bg)."""
    corpus = [it for it in items if it.nodeid.startswith("tests/test_corpus.py")]
    if not corpus or config.option.collectonly:
        return
    items[:] = [it for it in items if it not in corpus] + corpus
    if any(it.get_closest_marker("corpus") for it in corpus):
        from tests import corpus_bg

        corpus_bg.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop a background corpus run that is still going (end of session, Ctrl-C, SIGTERM); remove the session's
    artifact cache (each session left one in the temporary folder before)."""
    mod = sys.modules.get("tests.corpus_bg")
    if mod is not None:
        mod.stop()
    shutil.rmtree(_CACHE, ignore_errors=True)
