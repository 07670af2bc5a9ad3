"""Where model cards and device profiles are looked up.

Order (first match wins): ``./models`` or ``./devices`` in the working directory (a user's own files), the copy
shipped inside the wheel (``edgedeploy/_data/<kind>``), and the source checkout's top-level folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edgedeploy.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

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


def yaml_error_line(e: yaml.YAMLError) -> str:
    """``line 3, column 7: mapping values are not allowed here`` — one line, 1-based, from PyYAML's marks."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    what = " ".join(str(getattr(e, "problem", None) or getattr(e, "context", None) or e).split())
    if mark is None:
        return what
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}"


def read_yaml(path: Path, what: str) -> object:
    """The parsed YAML document at ``path``; :class:`ConfigError` (one line naming the file, and the line for a
    syntax error) when it cannot be read, is not UTF-8 or is not YAML. ``what`` names the file in errors."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from e
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not valid YAML: not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {yaml_error_line(e)}") from e


def load_yaml_config(path: str | Path, schema: type[M], what: str) -> M:
    """Read one YAML file and validate it with the pydantic ``schema``; ``what`` names it in errors.

    Raises :class:`~edgedeploy.errors.ConfigError` naming the file (and the field) when the file cannot be read,
    is not YAML, is not a mapping, or does not validate.
    """
    path = Path(path).expanduser()
    data = read_yaml(path, what)
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a mapping at the top level")
    try:
        obj = schema(**data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{what} {path}: field '{field}': {msg}") from e
    obj.path = path  # type: ignore[attr-defined]
    return obj
