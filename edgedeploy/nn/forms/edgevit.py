"""The export forms of EdgeViT's blocks: :class:`LoweredSelfAttn` / :class:`ChannelsLastSelfAttn`
(:data:`SELF_ATTN_FORM`) and :class:`FoldedLocalAgg`.

Registered when :mod:`edgedeploy.nn.forms` is imported (see there); imports :mod:`edgedeploy.nn.edgevit`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgedeploy.errors import ConfigError
from edgedeploy.nn.edgevit import (
    ConvMlp,
    LocalAgg,
    SelfAttn,
)
from edgedeploy.nn.folding import fold_bn_into_next_conv, fold_residual_into_dwconv
from edgedeploy.nn.rewrites import register_lowering

# ---------------------------------------------------------------------------------------------------------------------
# export lowering


class _StaticSelfAttn(nn.Module):
    """The parts both export forms of :class:`SelfAttn` share: the original's submodules under their names (with
    the given ``pos_embed`` and LocalProp modules), the recorded ``(B, C, H, W)`` and the attention constants.

    Raises :class:`ConfigError` when the map is not divisible by the sample rate.
    """

    def __init__(
        self, src: SelfAttn, input_shape: tuple[int, ...], pos_embed: nn.Module, local_prop: nn.Module | None
    ) -> None:
        super().__init__()
        B, C, H, W = (int(s) for s in input_shape)
        a = src.attn
        r = a.sr
        if r > 1 and (H % r or W % r):
            raise ConfigError(f"EdgeViT: a {H}x{W} map is not divisible by the sample rate {r}")
        self.pos_embed = pos_embed
        self.norm1 = src.norm1
        self.attn = nn.Module()
        self.attn.qkv = a.qkv
        self.attn.proj = a.proj
        if r > 1:
            self.attn.LocalProp = local_prop
            self.attn.norm = a.norm
        self.norm2 = src.norm2
        self.mlp = src.mlp
        self.B, self.C, self.H, self.W, self.r = B, C, H, W, r
        self.h, self.w = H // r, W // r
        self.heads, self.head_dim, self.scale = a.num_heads, a.head_dim, a.scale


class LoweredSelfAttn(_StaticSelfAttn):
    """:class:`SelfAttn` for one fixed input shape ``(B, C, H, W)``: tensors ≤ 4-D, static shapes, explicit attention.

    Shares the original's submodules (same parameter names). Differences from the training-time module: the
    5-D ``qkv`` reshape/permute becomes a 4-D ``(B, 3·heads, L, head_dim)`` tensor sliced into q, k, v; tokens
    are a 2-D ``(B·L, C)`` matrix for the Linear / LayerNorm layers (every Linear exports as one ONNX Gemm); every
    reshape uses constants computed from the recorded shape; the delegate sampling is a strided slice. Only valid
    for the recorded shape.
    """

    def __init__(
        self, src: SelfAttn, input_shape: tuple[int, ...], upsample_local_prop: bool = False, pool_sampler: bool = False
    ) -> None:
        super().__init__(src, input_shape, src.pos_embed, src.attn.LocalProp if src.attn.sr > 1 else None)
        self.upsample_local_prop = upsample_local_prop and self.r > 1
        self.pool_sampler = pool_sampler and self.r > 1

    def sample(self, s: torch.Tensor) -> torch.Tensor:
        """Delegate pixels ``(B, C, H, W) → (B, C, H/r, W/r)``: a strided slice, or the official ``AvgPool2d(1, r)``.

        A 1×1 average pool with stride r divides one value by 1: bitwise the strided slice. ncnn has no strided
        slice (pnnx 20261020: "slice with step 2 is not supported", the op is left unconverted) but runs the pool.
        """
        if self.pool_sampler:
            return F.avg_pool2d(s, kernel_size=1, stride=self.r)
        return s[:, :, :: self.r, :: self.r]

    def local_prop(self, o: torch.Tensor) -> torch.Tensor:
        """LocalProp ``(B, C, h, w) → (B, C, H, W)``; as ``Resize(nearest) · tiled kernel + bias`` when asked.

        With kernel = stride = r the transposed conv writes ``o[c, i, j] · K[c, a, b] + bias[c]`` to pixel
        ``(r·i + a, r·j + b)``: one product per output, no overlap, so nearest up-sampling times the kernel tiled
        over the map plus the bias gives bitwise the same values.
        """
        lp = self.attn.LocalProp
        if not self.upsample_local_prop:
            return lp(o)
        pattern = lp.weight.reshape(1, self.C, self.r, self.r).repeat(1, 1, self.h, self.w)
        up = F.interpolate(o, scale_factor=float(self.r), mode="nearest")
        return up * pattern + lp.bias.reshape(1, self.C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W, r, h, w = self.B, self.C, self.H, self.W, self.r, self.h, self.w
        heads, L, n = self.heads, H * W, h * w
        x = x + self.pos_embed(x)
        # tokens as a 2-D (B·L, C) matrix: each Linear exports as one Gemm
        t = x.reshape(B, C, L).transpose(1, 2).reshape(B * L, C)
        s = self.norm1(t)
        if r > 1:
            s = self.sample(s.reshape(B, L, C).transpose(1, 2).reshape(B, C, H, W))
            s = s.reshape(B, C, n).transpose(1, 2).reshape(B * n, C)
        qkv = self.attn.qkv(s).reshape(B, n, 3 * heads, self.head_dim).permute(0, 2, 1, 3)  # (B, 3h, l, d)
        q = qkv[:, :heads]
        k = qkv[:, heads : 2 * heads]
        v = qkv[:, 2 * heads :]
        attn = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * self.scale, dim=-1)
        o = torch.matmul(attn, v).permute(0, 2, 1, 3).reshape(B * n, C)
        if r > 1:
            o = self.local_prop(o.reshape(B, n, C).transpose(1, 2).reshape(B, C, h, w))
            o = self.attn.norm(o.reshape(B, C, L).transpose(1, 2).reshape(B * L, C))
        t = t + self.attn.proj(o)
        t = t + self.mlp(self.norm2(t))
        return t.reshape(B, L, C).transpose(1, 2).reshape(B, C, H, W)


class LocalPropChannelsLast(nn.Module):
    """LocalProp (depth-wise ``ConvTranspose2d``, kernel = stride = r) on channels-last delegates.

    ``(B, h, w, C)`` → ``(B, h·r, w·r, C)``: with kernel = stride the transposed conv writes
    ``o[b, i, j, c] · K[c, a, b'] + bias[c]`` to pixel ``(r·i + a, r·j + b')`` with no overlap, so it is one
    broadcast product of ``(B, h, 1, w, 1, C)`` with the kernel as ``(1, 1, r, 1, r, C)``, reshaped, plus the bias
    (bitwise the conv's values: one product and one sum per output). Holds the conv's own ``weight`` ``(C, 1, r,
    r)`` and ``bias`` parameters (same names in the state dict).
    """

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.r = int(conv.stride[0])
        self.channels = int(conv.weight.shape[0])

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        """``(B, h, w, C)`` → ``(B, h·r, w·r, C)``."""
        B, h, w, C = o.shape
        r = self.r
        k = self.weight.reshape(C, r, r).permute(1, 2, 0).reshape(1, 1, r, 1, r, C)
        up = (o.reshape(B, h, 1, w, 1, C) * k).reshape(B, h * r, w * r, C)
        return up if self.bias is None else up + self.bias


class ChannelsLastSelfAttn(_StaticSelfAttn):
    """:class:`SelfAttn` for one fixed input shape ``(B, C, H, W)`` NCHW → NCHW, with tokens kept channels-last.

    ``x + pos_embed(x)`` is one conv (:func:`fold_residual_into_dwconv`). The map then goes channels-last once,
    ``(B, H, W, C)`` (one permute; onnxruntime folds it into the conv's NCHWc ``ReorderOutput``, and the permute
    back into the next conv's ``ReorderInput``), and every token step stays there: LayerNorm / Linear on the last
    axis; the delegates are a strided slice of the ``(B, H, W, C)`` map (bitwise the official ``AvgPool2d(1,
    r)``); LocalProp is :class:`LocalPropChannelsLast` (a broadcast product, no transposed conv); the heads are
    split by a 4-D ``(B, n, 3·heads, head_dim)`` permute. The official module moves between ``(B, C, H, W)`` and
    ``(B, H·W, C)`` with transposes around the sampling and LocalProp. Tensors reach rank 6 (LocalProp), so this
    form is for ONNX / MNN (:func:`lower_self_attn`). Shares the original's submodules and parameter names
    (``pos_embed`` holds the folded kernel). Only valid for the recorded shape.
    """

    def __init__(self, src: SelfAttn, input_shape: tuple[int, ...]) -> None:
        prop = LocalPropChannelsLast(src.attn.LocalProp) if src.attn.sr > 1 else None
        super().__init__(src, input_shape, fold_residual_into_dwconv(src.pos_embed), prop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, r, h, w = self.B, self.C, self.r, self.h, self.w
        heads, n = self.heads, h * w
        t = self.pos_embed(x).permute(0, 2, 3, 1)  # x + pos_embed(x), channels-last (B, H, W, C)
        s = self.norm1(t)
        if r > 1:
            s = s[:, ::r, ::r, :]
        qkv = self.attn.qkv(s.reshape(B, n, C)).reshape(B, n, 3 * heads, self.head_dim).permute(0, 2, 1, 3)
        q = qkv[:, :heads]
        k = qkv[:, heads : 2 * heads]
        v = qkv[:, 2 * heads :]
        attn = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * self.scale, dim=-1)
        o = torch.matmul(attn, v).permute(0, 2, 1, 3).reshape(B, h, w, C)
        if r > 1:
            o = self.attn.norm(self.attn.LocalProp(o))
        t = t + self.attn.proj(o)
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2)


class FoldedLocalAgg(nn.Module):
    """:class:`LocalAgg` with its BatchNorms and position-encoding residual folded into convs (NCHW → NCHW).

    ``norm1`` → ``conv1`` and ``norm2`` → ``mlp.fc1`` (:func:`fold_bn_into_next_conv`); ``x + pos_embed(x)`` →
    ``pos_embed'(x)`` (:func:`fold_residual_into_dwconv`). onnxruntime and MNN fold a BatchNorm only into a conv
    *before* it; a BatchNorm before a conv stays a separate op, and on onnxruntime it also breaks the NCHWc chain
    (a ``ReorderOutput`` / ``ReorderInput`` pair around each), as does an Add of an NCHW input. Submodule names
    are the original's, minus ``norm1`` / ``norm2``.
    """

    def __init__(self, src: LocalAgg) -> None:
        super().__init__()
        self.pos_embed = fold_residual_into_dwconv(src.pos_embed)
        self.conv1 = fold_bn_into_next_conv(src.norm1, src.conv1)
        self.attn = src.attn
        self.conv2 = src.conv2
        self.mlp = ConvMlp(src.mlp.fc1.in_channels, src.mlp.fc1.out_channels)
        self.mlp.fc1 = fold_bn_into_next_conv(src.norm2, src.mlp.fc1)
        self.mlp.act = src.mlp.act
        self.mlp.fc2 = src.mlp.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_embed(x)  # x + pos_embed(x)
        x = x + self.conv2(self.attn(self.conv1(x)))
        return x + self.mlp(x)


#: export targets whose :class:`LocalAgg` gets its BatchNorms folded (:class:`FoldedLocalAgg`)
FOLD_LOCAL_AGG_NORMS: frozenset[str] = frozenset({"onnx", "mnn"})


@register_lowering(LocalAgg)
def lower_local_agg(module: LocalAgg, input_shape: tuple[int, ...], target: str) -> nn.Module:
    """:class:`FoldedLocalAgg` for the targets in :data:`FOLD_LOCAL_AGG_NORMS`, else the module itself.

    Measured with ``benchmarks/naive_vs_edgedeploy.py`` (EdgeViT-XS, see its results file).
    """
    return FoldedLocalAgg(module) if target in FOLD_LOCAL_AGG_NORMS else module


#: per export target: the :class:`SelfAttn` export form; every other target (plug-ins included) gets ``"4d"``
SELF_ATTN_FORM: dict[str, str] = {"onnx": "channels-last", "mnn": "channels-last"}


@register_lowering(SelfAttn)
def lower_self_attn(module: SelfAttn, input_shape: tuple[int, ...], target: str) -> nn.Module:
    """Rewrite :class:`SelfAttn` for ``input_shape``, per target (:data:`SELF_ATTN_FORM`).

    * ONNX, MNN: :class:`ChannelsLastSelfAttn` (measured against the naive export in
      ``benchmarks/naive_vs_edgedeploy.py``; the profile showed the official token transposes, the NCHWc
      reorders around them and the transposed conv as 2.7 ms of onnxruntime's 17.4 ms on EdgeViT-XS).
    * every other target: :class:`LoweredSelfAttn` (ranks ≤ 4). For ``tflite`` the depth-wise LocalProp
      transposed conv is also rewritten as nearest up-sampling × tiled kernel + bias: litert-torch splits a grouped
      ``ConvTranspose2d`` into one TRANSPOSE_CONV (and SLICE) per channel (540 of each for EdgeViT-XXS at 224,
      measured with litert-torch 0.10). For ``ncnn`` the delegate sampling is the official ``AvgPool2d(1, r)``
      instead of a strided slice, which ncnn cannot run (:meth:`LoweredSelfAttn.sample`).
    """
    if SELF_ATTN_FORM.get(target) == "channels-last":
        return ChannelsLastSelfAttn(module, input_shape)
    return LoweredSelfAttn(module, input_shape, upsample_local_prop=target == "tflite", pool_sampler=target == "ncnn")
