"""The table of registered export-time rewrites of whole modules ("lowerings"), at the bottom of the package.

A layer file registers the export form of its module type here::

    from edgedeploy.nn.rewrites import register_lowering

    @register_lowering(MyBlock)
    def lower_my_block(module: MyBlock, input_shape: tuple[int, ...], target: str) -> nn.Module: ...

``input_shape`` is the shape of the module's first tensor argument at the export resolution, ``target`` the
export format ("onnx", "mnn", "tflite", "coreml"); a rewrite may return ``module`` itself when it has nothing to
do for that target. :func:`edgedeploy.export.lowering.lower` applies the table (exact type match) before its
generic graph passes. This module imports nothing from :mod:`edgedeploy` but its errors, so the layers
in :mod:`edgedeploy.nn` can register their rewrites without depending on :mod:`edgedeploy.export`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

Rewrite = Callable[[nn.Module, tuple[int, ...], str], nn.Module]
#: module type (exact) -> rewrite; filled by the layer modules when they are imported
LOWERINGS: dict[type[nn.Module], Rewrite] = {}


def register_lowering(module_type: type[nn.Module]) -> Callable[[Rewrite], Rewrite]:
    """Decorator registering an export-time rewrite for ``module_type`` (exact type match, last one wins)."""

    def deco(fn: Rewrite) -> Rewrite:
        LOWERINGS[module_type] = fn
        return fn

    return deco


def nchw_input(
    module: nn.Module, expected: type[nn.Module], input_shape: tuple[int, ...], what: str
) -> tuple[int, ...]:
    """The recorded ``(N, C, H, W)`` input shape a rewrite of ``what`` works from, as ints.

    Raises :class:`~edgedeploy.errors.ExportError` when ``module`` is not an ``expected`` or the recorded input is
    not 4-D (both would be an edgedeploy bug: rewrites are looked up by exact type, shapes recorded by a hook).
    """
    from edgedeploy.errors import ExportError

    if not isinstance(module, expected):
        raise ExportError(f"the {what} rewrite got a {type(module).__name__}")
    if len(input_shape) != 4:
        raise ExportError(f"{what} expects an NCHW input, recorded shape {input_shape}")
    return tuple(int(d) for d in input_shape)
