"""Exact export-time folds of one layer into its neighbour (eval mode), shared by the family rewrites.

Runtimes fold a BatchNorm into the conv *before* it (onnxruntime's ConvBNFusion, MNN's converter) but not into the
conv *after* it, and never fold a residual Add of the conv's own input; these do it in PyTorch, where it is exact
in real arithmetic (fp32 rounding differs in the last bits). Each raises :class:`~edgedeploy.errors.ConfigError` for
a layer it would change.
"""

from __future__ import annotations

import torch
from torch import nn

from edgedeploy.errors import ConfigError


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm as ``a·x + b`` per channel: ``(a, b)``, each ``(C,)`` (``a = γ / √(var + ε)``,
    ``b = β − μ·a``)."""
    with torch.no_grad():
        a = (
            bn.weight / torch.sqrt(bn.running_var + bn.eps)
            if bn.weight is not None
            else 1 / torch.sqrt(bn.running_var + bn.eps)
        )
        b = (bn.bias if bn.bias is not None else torch.zeros_like(a)) - bn.running_mean * a
    return a.detach(), b.detach()


def conv_bn_folded(conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm(conv(x))`` as one conv's ``(weight, bias)``: the weight (``conv.weight``'s shape) scaled by the
    BatchNorm's ``a`` per output channel, the bias ``a·b + shift`` (``b`` the conv's bias or 0); with ``norm``
    None the conv's own (detached copies). Exact in real arithmetic, for any conv (eval-mode BatchNorm)."""
    with torch.no_grad():
        w = conv.weight.detach().clone()
        b = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        if norm is not None:
            a, shift = bn_affine(norm)
            w, b = w * a.reshape(-1, *([1] * (w.dim() - 1))), a * b + shift
    return w, b


def fold_bn_into_next_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """``conv(bn(x))`` as one conv, for a 1×1 ungrouped ``conv`` (eval-mode BatchNorm, exact in real arithmetic).

    ``bn(x) = a·x + b`` per input channel (``a = γ / √(var + ε)``, ``b = β − μ·a``), so ``W (a x + b) + c =
    (W·diag a) x + (W b + c)``. Raises :class:`ConfigError` for any other conv (a padded k×k conv would see the
    BatchNorm's ``b`` in its zero padding).
    """
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.stride != (1, 1):
        raise ConfigError(f"fold_bn_into_next_conv needs a 1×1 stride-1 ungrouped conv, got {conv}")
    a, b = bn_affine(bn)
    with torch.no_grad():
        w = conv.weight.reshape(conv.out_channels, conv.in_channels)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True)
        fused.weight.copy_((w * a[None, :]).reshape_as(conv.weight))
        c = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        fused.bias.copy_(c + w @ b)
    return fused


def fold_residual_into_dwconv(conv: nn.Conv2d) -> nn.Conv2d:
    """``x + conv(x)`` as one conv, for a depth-wise, stride-1, "same"-padded ``conv`` with an odd kernel.

    The identity is the kernel with a 1 at its centre tap, so the sum is the conv with ``w[c, 0, k//2, k//2] + 1``
    (exact in real arithmetic; in fp32 the centre product rounds once instead of the sum). Removes the residual
    Add, and on onnxruntime the NCHW ``ReorderOutput`` / ``ReorderInput`` pair the Add forced around the conv.
    Raises :class:`ConfigError` for any other conv.
    """
    k = conv.kernel_size
    if (
        conv.groups != conv.in_channels
        or conv.out_channels != conv.in_channels
        or conv.stride != (1, 1)
        or k[0] != k[1]
        or k[0] % 2 == 0
        or conv.padding != (k[0] // 2, k[1] // 2)
        or conv.dilation != (1, 1)
    ):
        raise ConfigError(f"fold_residual_into_dwconv needs a same-padded stride-1 depth-wise conv, got {conv}")
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, k, padding=conv.padding, groups=conv.groups,
                      bias=conv.bias is not None)  # fmt: skip
    with torch.no_grad():
        fused.weight.copy_(conv.weight)
        fused.weight[:, 0, k[0] // 2, k[1] // 2] += 1.0
        if conv.bias is not None:
            fused.bias.copy_(conv.bias)
    return fused
