"""MobileViT export forms that were measured and dropped (issue 22, LiteRT): kept here so the trial table can be
re-run, not in the product (a lowering stays only where a benchmark shows it faster).

* :class:`HeadMajorAttention`, :class:`HeadBatchedAttention`: attention forms; :func:`register` adds them to
  :data:`edgedeploy.nn.forms.mobilevit.ATTENTION_FORMS` as ``"head-major"`` / ``"head-batched"``;
* :class:`ChannelsLast4dMobileViTBlock`: the channels-last block at rank ≤ 4; :func:`cl4d_lowering` is a lowering
  for ``rewrites.LOWERINGS[MobileViTBlock]`` that builds it (a ``_common.FormEntry`` keyed by the class).

Measured in ``benchmarks/results/lowering_forms_litert.md`` (``litert_forms.py``); the export's parity check is
what proves each exact before it is timed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from edgedeploy.nn.forms import mobilevit
from edgedeploy.nn.forms.mobilevit import ChannelsLastMobileViTBlock
from edgedeploy.nn.mobilevit import MobileViTBlock, MultiHeadAttention
from edgedeploy.nn.rewrites import nchw_input


class HeadMajorAttention(nn.Module):
    """:class:`MultiHeadAttention` with one head-split Transpose for q, k and v together and the query scale folded
    into the projection: ``(B, S, C)`` → ``(B, S, C)``.

    ``qkv_proj`` is copied with its q rows (weight and bias) multiplied by ``head_dim ** -0.5``; its output
    ``(B, S, 3C)`` is reshaped to ``(B, S, 3·h, d)``, transposed once to ``(B, 3·h, S, d)`` and split into q, k, v
    ``(B, h, S, d)``; then ``softmax(q kᵀ) v``, the heads merged by one Transpose + Reshape, and ``out_proj``
    (shared). The official attention needs three head-split Transposes and a ``MUL`` by the scale. Exact up to fp32
    rounding of the folded scale.
    """

    def __init__(self, src: MultiHeadAttention) -> None:
        super().__init__()
        c = src.embed_dim
        self.qkv_proj = nn.Linear(c, 3 * c, bias=True)
        with torch.no_grad():
            self.qkv_proj.weight.copy_(src.qkv_proj.weight)
            self.qkv_proj.bias.copy_(src.qkv_proj.bias)
            self.qkv_proj.weight[:c].mul_(src.scaling)
            self.qkv_proj.bias[:c].mul_(src.scaling)
        self.out_proj = src.out_proj
        self.embed_dim, self.num_heads, self.head_dim = c, src.num_heads, src.head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, C)`` → ``(B, S, C)``."""
        b, s, _ = x.shape
        h = self.num_heads
        qkv = self.qkv_proj(x).reshape(b, s, 3 * h, self.head_dim).transpose(1, 2)
        q, k, v = torch.split(qkv, h, dim=1)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1)
        return self.out_proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, s, self.embed_dim))


class HeadBatchedAttention(nn.Module):
    """:class:`MultiHeadAttention` with the heads split by the weights instead of by Transposes:
    ``(B, S, C)`` → ``(B, S, C)``.

    The source's ``qkv_proj`` is regrouped per head into ``w_qkv`` ``(h, C, 3·d)`` (q rows scaled by
    ``head_dim ** -0.5``) and ``b_qkv`` ``(h, 1, 3·d)``, so one batched matmul of the tokens ``(1, B·S, C)`` gives
    every head's q, k, v as ``(h, B·S, 3·d)`` → reshape ``(h·B, S, 3·d)``; the heads' outputs ``(h, B·S, d)`` go
    through ``out_proj`` regrouped as ``w_out`` ``(h, d, C)`` and are summed over the heads (+ bias). No head-split
    or head-merge Transpose is left (only ``kᵀ``). Exact up to fp32 rounding (summation order, folded scale).
    """

    def __init__(self, src: MultiHeadAttention) -> None:
        super().__init__()
        c, h, d = src.embed_dim, src.num_heads, src.head_dim
        with torch.no_grad():
            w = src.qkv_proj.weight.detach().clone().reshape(3, h, d, c)  # rows: (q|k|v, head, dim)
            b = src.qkv_proj.bias.detach().clone().reshape(3, h, d)
            w[0] *= src.scaling
            b[0] *= src.scaling
            w_qkv = w.permute(1, 3, 0, 2).reshape(h, c, 3 * d)  # (h, C, [q d | k d | v d])
            b_qkv = b.permute(1, 0, 2).reshape(h, 1, 3 * d)
            w_out = src.out_proj.weight.detach().clone().t().reshape(h, d, c)  # input rows grouped by head
        self.w_qkv = nn.Parameter(w_qkv, requires_grad=False)
        self.b_qkv = nn.Parameter(b_qkv, requires_grad=False)
        self.w_out = nn.Parameter(w_out.contiguous(), requires_grad=False)
        self.b_out = nn.Parameter(src.out_proj.bias.detach().clone(), requires_grad=False)
        self.embed_dim, self.num_heads, self.head_dim = c, h, d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, C)`` → ``(B, S, C)``."""
        b, s, c = x.shape
        h, d = self.num_heads, self.head_dim
        qkv = (torch.matmul(x.reshape(1, b * s, c), self.w_qkv) + self.b_qkv).reshape(h * b, s, 3 * d)
        q, k, v = torch.split(qkv, d, dim=-1)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1)
        out = torch.matmul(torch.matmul(attn, v).reshape(h, b * s, d), self.w_out).sum(0) + self.b_out
        return out.reshape(b, s, c)


class ChannelsLast4dMobileViTBlock(ChannelsLastMobileViTBlock):
    """:class:`ChannelsLastMobileViTBlock` with unfold / fold written with tensors of rank ≤ 4 (for TFLite).

    Both 1×1 convs run on channels-last tokens (:class:`PointwiseChannelsLast`), and patches are gathered as
    whole ``d``-vectors by two rank-4 transposes instead of one rank-6 permute:

    * unfold: ``(B, H, W, d)`` → reshape ``(B, n_h, p_h, n_w·p_w·d)`` → transpose(1, 2) → reshape
      ``(B·p_h, N, p_w, d)`` → transpose(1, 2) → ``(B·p_h, p_w, N, d)`` → reshape ``(B·P, N, d)``;
    * fold: the exact inverse.

    Same patch order as the official unfolding. ``attention``: ``"official"`` or a key of :data:`ATTENTION_FORMS`.
    Raises ``ValueError`` for an input of another shape; ``KeyError`` for an unknown ``attention``.
    """

    def __init__(
        self, block: MobileViTBlock, input_shape: tuple[int, int, int, int], attention: str = "official"
    ) -> None:
        super().__init__(block, input_shape, attention=attention)
        b, d, ph, pw, nh, nw = self._record_shape(block, input_shape)
        self.s_rows = (b, nh, ph, nw * pw * d)
        self.s_cols = (b * ph, nh * nw, pw, d)
        self.s_patches = (b * ph * pw, nh * nw, d)
        self.s_fold_cols = (b * ph, pw, nh * nw, d)
        self.s_fold_rows = (b, ph, nh, nw * pw * d)
        self.s_map = (b, nh * ph, nw * pw, d)

    def _unfold(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, d)`` → patches ``(B·P, N, d)`` by two rank-4 transposes."""
        return t.reshape(self.s_rows).transpose(1, 2).reshape(self.s_cols).transpose(1, 2).reshape(self.s_patches)

    def _fold(self, t: torch.Tensor) -> torch.Tensor:
        """Patches ``(B·P, N, d)`` → ``(B, H, W, d)``: the inverse of :meth:`_unfold`."""
        return t.reshape(self.s_fold_cols).transpose(1, 2).reshape(self.s_fold_rows).transpose(1, 2).reshape(self.s_map)


def register() -> None:
    """Make ``"head-major"`` / ``"head-batched"`` attention names of the MobileViT forms (for the trial variants)."""
    mobilevit.ATTENTION_FORMS.setdefault("head-major", HeadMajorAttention)
    mobilevit.ATTENTION_FORMS.setdefault("head-batched", HeadBatchedAttention)


def cl4d_lowering(attention: str = "official") -> Callable[[nn.Module, tuple[int, ...], str], nn.Module]:
    """A lowering of :class:`MobileViTBlock` to :class:`ChannelsLast4dMobileViTBlock` with ``attention``."""
    register()

    def lower(module: nn.Module, input_shape: tuple[int, ...], target: str) -> nn.Module:
        shape = nchw_input(module, MobileViTBlock, input_shape, "MobileViT block")
        return ChannelsLast4dMobileViTBlock(module, shape, attention=attention)  # type: ignore[arg-type]

    return lower


def cl4d_entry(attention: str = "official") -> tuple[Any, ...]:
    """The ``_common.FormEntry`` that lowers every MobileViT block to the rank-4 channels-last form."""
    from edgedeploy.nn import rewrites

    return (rewrites, "LOWERINGS", cl4d_lowering(attention), MobileViTBlock)
