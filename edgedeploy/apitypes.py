"""Type checks of the public API's option objects: a wrong type is a :class:`~edgedeploy.errors.ConfigError`.

``edgedeploy.bench(artifact, iterations="5")`` must not end in a raw ``TypeError`` from deep inside a runtime:
:func:`check_field_types` checks every field of an options dataclass (:class:`edgedeploy.options.BenchOptions`,
:class:`~edgedeploy.options.ExportOptions`) against its annotation with pydantic in strict mode (``"5"`` is not an
``int``, ``True`` is not an ``int``, an ``int`` is a ``float``) and raises one line naming the option, the type
expected and the value given (exit code 2 on the command line).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from edgedeploy.errors import ConfigError


@functools.cache
def _adapters(cls: type) -> dict[str, Any]:
    from pydantic import TypeAdapter

    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name, Any)
        if hint is Any:
            continue
        out[f.name] = (TypeAdapter(hint), _shown(hint))
    return out


def _shown(hint: Any) -> str:
    text = str(hint).replace("typing.", "").replace("collections.abc.", "").replace("pathlib.", "")
    return text.replace("NoneType", "None").replace("<class '", "").replace("'>", "")


def check_field_types(obj: Any, what: str) -> None:
    """Raise :class:`ConfigError` for the first field of the dataclass ``obj`` whose value does not have the
    annotated type (``what``: ``"bench"`` / ``"export"``, named in the message)."""
    from pydantic import ValidationError

    for name, (adapter, shown) in _adapters(type(obj)).items():
        value = getattr(obj, name)
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError:
            raise ConfigError(f"{what}: option {name} must be {shown} (got {type(value).__name__} {value!r})") from None
