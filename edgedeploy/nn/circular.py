"""Circular padding and rolls written as slices and one concatenation — the form every exporter lowers.

``F.pad(x, pad, mode="circular")`` is exported by torch's dynamo exporter as ``Pad(mode="wrap")``, which MNN
3.6's converter refuses ("MNN only support ['constant', 'reflect'] Pad mode"); CoreML cannot lower circular pad
(pytorch/executorch#11703) and TFLite converters lack it (alibaba/TinyNeuralNetwork#317); ``torch.roll`` has a
history of failing exports (TOOLCHAIN_NOTES). The functions here compute the same values with basic slicing and
``torch.cat`` only, so the exported graph holds ``Slice`` and ``Concat`` (no ``Pad``, no ``Roll``, no shape
arithmetic: every index is a Python int). :mod:`edgedeploy.export.generic` rewrites a user's own circular pads,
``padding_mode="circular"`` convolutions and static rolls into calls of these functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _slice(x: torch.Tensor, dim: int, start: int | None, stop: int | None) -> torch.Tensor:
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, stop)
    return x[tuple(index)]


def circular_pad(x: torch.Tensor, pad: Sequence[int]) -> torch.Tensor:
    """``F.pad(x, pad, mode="circular")`` as slices + concat (same values, bit for bit).

    ``x``: any ``(N, C, *spatial)`` tensor; ``pad``: ``(left_last, right_last, left_second_last, …)`` as in
    ``F.pad`` (pairs from the last dimension backwards), each ``0 ≤ p ≤`` the size of its dimension. Along a
    dimension of size ``n`` padded by ``(l, r)`` the result is ``cat([x[-l:], x, x[:r]])``: length ``n + l + r``.
    Raises ``ValueError`` for an odd-length ``pad``, a negative pad or one larger than its dimension.
    """
    if len(pad) % 2:
        raise ValueError(f"circular_pad needs pairs of pads, got {tuple(pad)}")
    for i in range(len(pad) // 2):
        dim = x.dim() - 1 - i
        left, right = int(pad[2 * i]), int(pad[2 * i + 1])
        n = x.shape[dim]
        if left < 0 or right < 0 or left > n or right > n:
            raise ValueError(f"circular pad ({left}, {right}) of a dimension of size {n} is not supported")
        parts = ([_slice(x, dim, -left, None)] if left else []) + [x] + ([_slice(x, dim, None, right)] if right else [])
        if len(parts) > 1:
            x = torch.cat(parts, dim=dim)
    return x


def roll_by_slices(x: torch.Tensor, shifts: Sequence[int], dims: Sequence[int]) -> torch.Tensor:
    """``torch.roll(x, shifts, dims)`` as slices + concat, for static shifts along given dims.

    ``shifts`` and ``dims`` have equal lengths; a shift ``s`` along a dimension of size ``n`` gives
    ``cat([x[-s:], x[:-s]])`` with ``s`` taken mod ``n`` (a zero shift is the identity, no op at all).
    Same shape as ``x``. Raises ``ValueError`` when the lengths differ.
    """
    if len(shifts) != len(dims):
        raise ValueError(f"roll needs one shift per dim, got shifts={tuple(shifts)} dims={tuple(dims)}")
    for s, d in zip(shifts, dims, strict=True):
        d, s = int(d) % x.dim(), int(s)
        n = x.shape[d]
        if not 0 <= s < n:  # only compared with n: the slices below use the literal shift, no shape arithmetic
            s = s % n if n else 0
        if s:
            x = torch.cat((_slice(x, d, -s, None), _slice(x, d, None, -s)), dim=d)
    return x
