"""Torch-family packages beside the pinned CPU torch: :func:`import_torchvision`.

The registry here serves torchvision 0.28.0 as a CUDA build only. Its C++ operators do not load next to the pinned
CPU ``torch==2.13.0``, and ``import torchvision`` (so ``import timm``, which imports it) then fails with
``RuntimeError: operator torchvision::nms does not exist``: ``torchvision/_meta_registrations.py`` registers fake
(meta) kernels for ``nms`` / ``qnms`` without checking that the C++ library defined them (its other registrations
are guarded by ``_has_ops()``).

:func:`import_torchvision` imports torchvision; only when that fails with exactly this missing-operator error it
defines the two operator schemas (no kernels) in a ``torch.library.Library`` kept alive in this module, drops the
half-imported ``torchvision`` modules from ``sys.modules`` and imports again. Everything but the C++ operators then
works (``torchvision.models``, ``transforms``, and timm, which needs no C++ operator); calling
``torchvision.ops.nms`` (or another C++ operator) raises torchvision's own ``RuntimeError: Couldn't load custom C++
ops ...``, which says what is wrong. :func:`ensure_torchvision` does this before edgedeploy imports a user's
``file.py:callable`` or ``package.module:callable`` (:mod:`edgedeploy.spec`), when torchvision is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

#: the import error this module works around (``operator torchvision::nms does not exist``)
MISSING_OPERATOR = "operator torchvision::nms does not exist"

#: the schemas torchvision's meta registrations need, as its C++ library defines them
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

#: the torch.library.Library holding the schemas (kept alive: dropping it unregisters them); None until needed
_library: Any = None


def shim_active() -> bool:
    """True when :func:`import_torchvision` had to define torchvision's operator schemas in this process."""
    return _library is not None


def _drop_torchvision_modules() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def import_torchvision() -> ModuleType:
    """Import and return ``torchvision``, working around its missing C++ operators on the pinned CPU torch.

    Raises the original ``ImportError`` when torchvision is not installed, and the original ``RuntimeError`` for
    any failure other than :data:`MISSING_OPERATOR` (nothing is hidden).
    """
    global _library
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as e:
        if MISSING_OPERATOR not in str(e) or _library is not None:
            raise
        _drop_torchvision_modules()
        import torch

        lib = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            lib.define(schema)
        _library = lib
    return importlib.import_module("torchvision")


def ensure_torchvision() -> None:
    """Import torchvision through :func:`import_torchvision` if it is installed and not imported yet, so that a
    user's ``import timm`` / ``import torchvision`` afterwards works; a no-op otherwise (and for any other
    failure, which the user's own import then reports)."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        import_torchvision()
    except (ImportError, RuntimeError):
        _drop_torchvision_modules()
