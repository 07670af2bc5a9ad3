"""Where model cards and device profiles are looked up.

Order (first match wins): ``./models`` or ``./devices`` in the working directory (a user's own files), the copy
shipped inside the wheel (``edgedeploy/_data/<kind>``), and the source checkout's top-level folder.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def search_dirs(kind: str) -> list[Path]:
    """Folders holding ``*.yaml`` files of ``kind`` ("models" or "devices"), highest priority first."""
    candidates = [Path.cwd() / kind, PACKAGE_DIR / "_data" / kind, PACKAGE_DIR.parent / kind]
    seen: list[Path] = []
    for c in candidates:
        if c.is_dir() and c.resolve() not in [s.resolve() for s in seen]:
            seen.append(c)
    return seen


def find_yaml_files(kind: str) -> dict[str, Path]:
    """Map ``stem -> path`` over :func:`search_dirs`, earlier folders shadowing later ones."""
    found: dict[str, Path] = {}
    for d in search_dirs(kind):
        for p in sorted(d.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return found
