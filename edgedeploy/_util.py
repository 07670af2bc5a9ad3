"""Small process-level helpers shared by the export and runtime modules."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def captured_fd_output(into: list[str] | None = None) -> Iterator[None]:
    """Redirect the process's file descriptors 1 and 2 (C-level stdout/stderr) to a temp file.

    Native engines (MNN's converter and runtime) print to fd 1, which would corrupt ``--json`` output. What they
    printed is appended to ``into`` (one string) when given.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if into is not None:
                tmp.seek(0)
                into.append(tmp.read().decode("utf-8", "replace"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (or of every file under a directory, in sorted path order, e.g. ``.mlpackage``)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def path_size(path: str | Path) -> int:
    """Size in bytes of a file, or the total of the files under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def current_umask() -> int:
    """This process's umask, read from ``/proc/self/status`` where possible (setting it to read it is not
    thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``, folder fsync.

    Readers never see a half-written file, and a writer killed at any moment leaves either the old or the new
    content. The file's mode is ``0666 & ~umask``, as for ``open()`` (0644 under umask 022). Creates the parent
    folder; returns ``path``. Raises :class:`OSError` on I/O failure (the temp file is
    removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a file we write honours the umask like open()
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # folder fsync: not supported everywhere
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def si_format(n: float | None, unit: str = "") -> str:
    """A count with an SI suffix for tables: ``1.66G``, ``5.04M``, ``"–"`` for None (3 significant digits)."""
    if n is None:
        return "–"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


def cpuinfo_model_name() -> str | None:
    """The first ``model name`` of /proc/cpuinfo (x86 hosts), or None where there is none or it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
