"""The real-model corpus run in the background of a test session (tests/test_corpus.py).

The corpus (benchmarks/corpus.py, ~34 cases through four converters) takes longer than the rest of the suite on
one core, so when test_corpus is selected, :func:`start` launches it at collection time as a child process of its
own session (``nice 10``, one thread per case, output in a temporary folder, never the committed table), the
corpus tests run last (conftest moves them), and :func:`wait` waits for it with a bound. :func:`stop` (called at
session end, and on Ctrl-C / SIGTERM via pytest's unconfigure) kills its whole process group.

``EDGEDEPLOY_CORPUS_RESULT=path/to/corpus.json`` makes the tests read that result instead (no background run);
``EDGEDEPLOY_CORPUS_JOBS`` (default 1) and ``EDGEDEPLOY_CORPUS_WAIT_S`` (default 3600, counted from the start of
the run) tune the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = float(os.environ.get("EDGEDEPLOY_CORPUS_WAIT_S", "3600"))


class _Run:
    proc: subprocess.Popen | None = None
    out: Path | None = None
    started: float = 0.0
    skip_reason: str | None = None


RUN = _Run()


def corpus_available() -> str | None:
    """None when the corpus can run here, else why not (the packages it needs are missing)."""
    import importlib.util

    sys.path.insert(0, str(ROOT))
    from benchmarks.corpus import corpus_site

    site = corpus_site()
    missing = []
    for mod in ("timm", "torchvision", "rapidocr_onnxruntime"):
        found = importlib.util.find_spec(mod) is not None
        if not found and site is not None and mod != "rapidocr_onnxruntime":
            found = (site / mod).is_dir()
        if not found:
            missing.append(mod)
    if missing:
        return f"the corpus needs {', '.join(missing)} (pip install -c constraints.txt -e '.[all,dev]')"
    return None


def start() -> None:
    """Start the background corpus run (once per session)."""
    if RUN.proc is not None or RUN.skip_reason is not None or os.environ.get("EDGEDEPLOY_CORPUS_RESULT"):
        return
    RUN.skip_reason = corpus_available()
    if RUN.skip_reason is not None:
        return
    RUN.out = Path(tempfile.mkdtemp(prefix="edgedeploy-corpus-"))
    jobs = os.environ.get("EDGEDEPLOY_CORPUS_JOBS", "1")
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "corpus.py"),
        "--out",
        str(RUN.out),
        "--jobs",
        jobs,
        "--watch-pid",
        str(os.getpid()),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = (RUN.out / "run.log").open("wb")
    RUN.proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=lambda: os.nice(10)
    )
    log.close()
    RUN.started = time.monotonic()


def wait() -> Path:
    """Wait (bounded by ``WAIT_S`` from the start) for the run; the path of its corpus.json.

    Raises TimeoutError (after stopping the run) when it does not end in time, RuntimeError when it failed.
    """
    if os.environ.get("EDGEDEPLOY_CORPUS_RESULT"):
        return Path(os.environ["EDGEDEPLOY_CORPUS_RESULT"])
    assert RUN.proc is not None and RUN.out is not None
    left = max(1.0, WAIT_S - (time.monotonic() - RUN.started))
    try:
        rc = RUN.proc.wait(timeout=left)
    except subprocess.TimeoutExpired:
        stop()
        raise TimeoutError(f"the corpus run did not end within {WAIT_S:.0f} s (partial tables in {RUN.out})") from None
    if rc != 0:
        tail = (RUN.out / "run.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"benchmarks/corpus.py exited {rc}:\n{tail}")
    return RUN.out / "corpus.json"


def stop() -> None:
    """Kill the background run's process group if it is still running."""
    proc = RUN.proc
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
