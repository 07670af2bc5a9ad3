"""Global circular convolution (GCC) and the EdgeFormer meta-former block built on it.

Sources:

* EdgeFormer paper (Zhang et al., "EdgeFormer: Improving Light-weight ConvNets by Learning from Vision
  Transformers"), Sec. 3.1, Eq. 1–2, Fig. 2–3: GCC-V / GCC-H with instance kernels and position embeddings (PE)
  generated from learned meta-kernels / meta-PEs by bilinear interpolation, circular convolution computed as
  ``conv2d(cat(x, x), k)``; the meta-former block whose channel mixer carries squeeze-excitation channel
  attention (Fig. 1c).
* Official code, hkzhang91/EdgeFormer ``cvnets/modules/edgeformer_block.py``: ``gcc_ca_mf_block`` (with
  ``CA_layer``) and ``gcc_mf_block`` (without). Parameter names are mirrored (``meta_kernel_1_H``, ``meta_pe_1_H``,
  ``pre_Norm_1``, ``ffn``, ``ca.fc`` …) so official checkpoints load as they are.

Facts taken from the official code (not all stated in the paper):

* channels are split in halves; half 1 runs GCC-V then GCC-H, half 2 runs GCC-H then GCC-V;
* PEs (when used) are added before each half's BatchNorm (``pe_1_H`` to half 1, ``pe_1_W`` to half 2) and between
  the two GCCs (``pe_2_W`` to half 1, ``pe_2_H`` to half 2); the outer frame enables PEs only in the first block
  of each stage;
* GCC convs carry no bias in every released config (``bias`` is absent from the config → ``None``);
* instance kernels / PEs are ``F.interpolate(meta, size, mode="bilinear", align_corners=True)`` of the meta
  ones when the feature size differs from the meta size (``instance_kernel: interpolation_bilinear``);
* the cat-then-conv uses ``x[..., :-1]`` (not the whole ``x``) so that a full-length kernel gives an output of the
  input's length: ``y_i = Σ_{t=0}^{n-1} k_t x_{(i + t) mod n}``;
* channel attention (``CA_layer``): global average pool → 1×1 conv (C → C/16, no bias) → BN → Hardswish → 1×1 conv
  (C/16 → C, no bias) → BN → Hardsigmoid, multiplied onto the FFN output: ``x + ca(ffn(x))``.

The official block takes the kernel length of *both* directions from the feature height (square inputs only);
this module uses the height for vertical and the width for horizontal GCCs, which is identical on square inputs
and also works on non-square ones.

:func:`lower_gcc_block` (registered with :func:`edgedeploy.nn.rewrites.register_lowering`) bakes the
interpolated kernels and PEs for the export resolution into constants (:class:`BakedGCCBlock`), so the exported
graph holds no Resize and every GCC is a Concat feeding a depthwise Conv (TFLite, CoreML, ncnn); for onnxruntime
and MNN (:data:`GCC_BLOCK_FORM`) it goes one step further to :class:`UnrolledGCCBlock` — no Split, one full-channel
GCC-V and one GCC-H with :func:`unrolled_circular_kernel` kernels, BatchNorms folded — which measured faster there.
:func:`lower_gcc` bakes a single :class:`GCC` layer (:class:`BakedGCC`). The forms and their rewrites live in
:mod:`edgedeploy.nn.forms.gcc`.

Public layers for your own network (re-exported by :mod:`edgedeploy.nn`): :class:`GCC` (one GCC-V / GCC-H with
its PE), :class:`GCCBlock` (the EdgeFormer block), :class:`ChannelAttention`, :func:`circular_conv`,
:func:`instance_param`. Their registered rewrites apply wherever they sit in a model.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from edgedeploy.errors import ConfigError

Direction = Literal["H", "W"]
#: a block's four instance kernels or PEs, in the order ``(1_H, 1_W, 2_H, 2_W)``
GCCQuad = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def circular_conv(
    x: torch.Tensor, weight: torch.Tensor, direction: Direction, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Depthwise global circular convolution by cat-then-conv.

    ``x``: ``(N, C, H, W)``; ``weight``: ``(C, 1, H, 1)`` for ``direction="H"`` (vertical, GCC-V: each output
    sees its whole column) or ``(C, 1, 1, W)`` for ``"W"`` (horizontal, GCC-H: whole row). Computes
    ``y[..., i, j] = Σ_t k_t x[..., (i + t) mod H, j]`` (resp. along W) as
    ``conv2d(cat([x, x[..., :-1, :]], dim=2), weight, groups=C)`` — no padding, no roll, so it exports as one
    Concat (after a Slice) feeding one grouped Conv.

    Returns ``(N, C, H, W)``. Raises ``ValueError`` when the kernel length differs from the feature length.
    """
    if direction not in ("H", "W"):
        raise ValueError(f"direction must be 'H' or 'W', got {direction!r}")
    if not _tracing():  # shape checks are Python-level; under tracing they would only add warnings
        axis = 2 if direction == "H" else 3
        other = 3 if direction == "H" else 2
        if weight.shape[axis] != x.shape[axis] or weight.shape[other] != 1:
            raise ValueError(f"GCC-{direction} kernel {tuple(weight.shape)} does not span the feature {tuple(x.shape)}")
    if direction == "H":
        xc = torch.cat((x, x[:, :, :-1, :]), dim=2)
    else:
        xc = torch.cat((x, x[:, :, :, :-1]), dim=3)
    return F.conv2d(xc, weight, bias=bias, padding=0, groups=weight.shape[0])


def _check_size(x: torch.Tensor, size: tuple[int, int], what: str) -> None:
    """``ValueError`` unless ``x``'s ``(H, W)`` is the recorded ``size`` (skipped under tracing)."""
    if not _tracing() and tuple(x.shape[-2:]) != size:
        raise ValueError(f"GCC block {what} for {size[0]}x{size[1]} features, got {tuple(x.shape)}")


def _tracing() -> bool:
    """True under any tracer (TorchScript, torch.export / dynamo, torch.fx symbolic tracing)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.fx._symbolic_trace.is_fx_symbolic_tracing()


def instance_param(meta: torch.Tensor, size: int, direction: Direction) -> torch.Tensor:
    """Instance kernel / PE from a meta one: bilinear interpolation with ``align_corners=True`` to length ``size``.

    ``meta``: ``(A, B, L, 1)`` for ``"H"`` or ``(A, B, 1, L)`` for ``"W"`` (kernels ``(C, 1, ·, ·)``, PEs
    ``(1, C, ·, ·)``). Returns the same layout with ``L`` replaced by ``size``; returns ``meta`` itself when the
    sizes already agree (interpolation with ``align_corners=True`` to the same size is the identity).
    Source: official ``get_instance_kernel`` / ``get_instance_pe`` with ``interpolation_bilinear``.
    """
    shape = [size, 1] if direction == "H" else [1, size]
    if list(meta.shape[2:]) == shape:
        return meta
    return F.interpolate(meta, shape, mode="bilinear", align_corners=True)


class GCC(nn.Module):
    """One global circular convolution (GCC-V for ``direction="H"``, GCC-H for ``"W"``) with its position embedding.

    EdgeFormer paper Sec. 3.1, Eq. 1–2 and Fig. 2–3 (official code hkzhang91/EdgeFormer,
    ``cvnets/modules/edgeformer_block.py``): the instance kernel ``k`` and PE ``pe`` are generated from learned
    meta ones by bilinear interpolation (``align_corners=True``) to the feature's length along ``direction``, the
    PE is broadcast over the other axis and added, and the depthwise convolution runs along a circle:
    ``y[c, i, j] = b[c] + Σ_t k[c, t] · (x + pe)[c, (i + t) mod H, j]`` for ``"H"`` (resp. along ``W``), computed
    cat-then-conv by :func:`circular_conv`.

    Input and output ``(N, dim, H, W)`` float32 NCHW, any ``H, W ≥ 1``. Parameters: ``meta_kernel``
    ``(dim, 1, L, 1)`` (``"H"``) or ``(dim, 1, 1, L)`` (``"W"``), Kaiming-uniform ``a=√5`` (what a depthwise
    ``nn.Conv2d`` gets); ``meta_pe`` ``(1, dim, L, 1)`` / ``(1, dim, 1, L)`` standard normal when ``use_pe``;
    ``bias`` ``(dim,)`` when ``bias``. For export, :func:`lower_gcc` (registered) replaces it by
    :class:`BakedGCC` with the interpolated kernel and PE as constants — no Resize in the graph, the Conv has a
    constant kernel. Plug it into any ConvNet in place of a depthwise conv, as the paper suggests.
    Raises ``ValueError`` for a direction other than ``"H"`` / ``"W"`` or ``meta_kernel_size < 1``.
    """

    def __init__(
        self, dim: int, direction: Direction, meta_kernel_size: int, use_pe: bool = True, bias: bool = False
    ) -> None:
        super().__init__()
        if direction not in ("H", "W"):
            raise ValueError(f"GCC direction must be 'H' or 'W', got {direction!r}")
        if meta_kernel_size < 1 or dim < 1:
            raise ValueError(f"GCC needs dim >= 1 and meta_kernel_size >= 1, got {dim}, {meta_kernel_size}")
        shape = (meta_kernel_size, 1) if direction == "H" else (1, meta_kernel_size)
        self.direction: Direction = direction
        self.dim = dim
        self.meta_kernel_size = meta_kernel_size
        self.use_pe = use_pe
        self.meta_kernel = nn.Parameter(torch.empty(dim, 1, *shape))
        nn.init.kaiming_uniform_(self.meta_kernel, a=math.sqrt(5))
        self.meta_pe: nn.Parameter | None = nn.Parameter(torch.randn(1, dim, *shape)) if use_pe else None
        self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(dim)) if bias else None

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, direction={self.direction}, meta_kernel_size={self.meta_kernel_size}, "
            f"use_pe={self.use_pe}"
        )

    def instance(self, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(kernel, pe)`` for a feature of length ``size`` along ``direction``: ``(dim, 1, size, 1)`` and
        ``(1, dim, size, 1)`` for ``"H"`` (``(…, 1, size)`` for ``"W"``); ``pe`` is ``None`` without PE."""
        kernel = instance_param(self.meta_kernel, size, self.direction)
        pe = instance_param(self.meta_pe, size, self.direction) if self.meta_pe is not None else None
        return kernel, pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, dim, H, W)`` → ``(N, dim, H, W)``."""
        kernel, pe = self.instance(x.shape[2] if self.direction == "H" else x.shape[3])
        if pe is not None:
            x = x + pe
        return circular_conv(x, kernel, self.direction, self.bias)


class ChannelAttention(nn.Module):
    """Squeeze-excitation channel attention of the EdgeFormer channel mixer (official ``CA_layer``).

    ``gap`` (global average pool) → ``fc``: 1×1 conv ``C → C // reduction`` (no bias) → BN → Hardswish → 1×1 conv
    ``C // reduction → C`` (no bias) → BN → Hardsigmoid; the result ``(N, C, 1, 1)`` scales the input.
    ``(N, C, H, W)`` → ``(N, C, H, W)``. Source: EdgeFormer paper Sec. 3.1 ("following SENet"), official
    ``cvnets/modules/edgeformer_block.py`` ``CA_layer`` (reduction 16).
    """

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, kernel_size=(1, 1), bias=False),
            nn.BatchNorm2d(channel // reduction),
            nn.Hardswish(),
            nn.Conv2d(channel // reduction, channel, kernel_size=(1, 1), bias=False),
            nn.BatchNorm2d(channel),
            nn.Hardsigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, C, H, W)``."""
        return x * self.fc(self.gap(x))


def _ffn(channels: int, hidden: int, ffn_dropout: float, dropout: float) -> nn.Sequential:
    # official: BN → 1×1 conv (bias) → Hardswish → Dropout → 1×1 conv (bias) → Dropout (indices 0,1,2,3,4,5)
    return nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.Conv2d(channels, hidden, kernel_size=(1, 1), bias=True),
        nn.Hardswish(),
        nn.Dropout(p=ffn_dropout),
        nn.Conv2d(hidden, channels, kernel_size=(1, 1), bias=True),
        nn.Dropout(p=dropout),
    )


class GCCBlock(nn.Module):
    """EdgeFormer block: GCC token mixer + FFN channel mixer with optional SE channel attention.

    Mirrors the official ``gcc_ca_mf_block`` (``channel_attention=True``) / ``gcc_mf_block`` (``False``).
    Input and output: ``(N, 2 * dim, H, W)`` float32 NCHW; any ``H, W ≥ 2`` (kernels and PEs are resized from the
    ``meta_kernel_size`` meta-parameters at run time, bilinear, ``align_corners=True``).

    Parameters (names as official): ``meta_kernel_{1,2}_{H,W}`` ``(dim, 1, L, 1)`` / ``(dim, 1, 1, L)`` (default
    ``nn.Conv2d`` init, Kaiming-uniform ``a=√5``); with ``use_pe`` also ``meta_pe_{1,2}_{H,W}`` ``(1, dim, L, 1)`` /
    ``(1, dim, 1, L)`` (standard normal); with ``bias`` also ``meta_{1,2}_{H,W}_bias`` ``(dim,)``; ``pre_Norm_1``,
    ``pre_Norm_2`` (BatchNorm over each half), ``ffn`` (BN → 1×1 → Hardswish → 1×1, hidden ``ffn_dim``), ``ca``.
    ``mid_mix`` inserts a 2-group channel shuffle between the two GCC stages (off in all released configs).

    Raises :class:`ConfigError` for an unsupported ``instance_kernel_method`` (only ``interpolation_bilinear``,
    the method of every released config, is implemented).
    """

    def __init__(
        self,
        dim: int,
        meta_kernel_size: int,
        instance_kernel_method: str = "interpolation_bilinear",
        use_pe: bool = True,
        mid_mix: bool = False,
        bias: bool = False,
        ffn_dim: int = 2,
        ffn_dropout: float = 0.0,
        dropout: float = 0.1,
        channel_attention: bool = True,
    ) -> None:
        super().__init__()
        if instance_kernel_method != "interpolation_bilinear":
            raise ConfigError(
                f"GCC instance_kernel_method '{instance_kernel_method}' is not supported "
                "(only 'interpolation_bilinear', used by every released EdgeFormer config)"
            )
        self.pre_Norm_1 = nn.BatchNorm2d(dim)
        self.pre_Norm_2 = nn.BatchNorm2d(dim)
        L = meta_kernel_size
        self.meta_kernel_1_H = nn.Parameter(torch.empty(dim, 1, L, 1))
        self.meta_kernel_1_W = nn.Parameter(torch.empty(dim, 1, 1, L))
        self.meta_kernel_2_H = nn.Parameter(torch.empty(dim, 1, L, 1))
        self.meta_kernel_2_W = nn.Parameter(torch.empty(dim, 1, 1, L))
        for k in (self.meta_kernel_1_H, self.meta_kernel_1_W, self.meta_kernel_2_H, self.meta_kernel_2_W):
            nn.init.kaiming_uniform_(k, a=math.sqrt(5))  # what nn.Conv2d(dim, dim, (L, 1), groups=dim) gives
        self.meta_1_H_bias: nn.Parameter | None = None
        self.meta_1_W_bias: nn.Parameter | None = None
        self.meta_2_H_bias: nn.Parameter | None = None
        self.meta_2_W_bias: nn.Parameter | None = None
        if bias:
            self.meta_1_H_bias = nn.Parameter(torch.randn(dim))
            self.meta_1_W_bias = nn.Parameter(torch.randn(dim))
            self.meta_2_H_bias = nn.Parameter(torch.randn(dim))
            self.meta_2_W_bias = nn.Parameter(torch.randn(dim))
        if use_pe:
            self.meta_pe_1_H = nn.Parameter(torch.randn(1, dim, L, 1))
            self.meta_pe_1_W = nn.Parameter(torch.randn(1, dim, 1, L))
            self.meta_pe_2_H = nn.Parameter(torch.randn(1, dim, L, 1))
            self.meta_pe_2_W = nn.Parameter(torch.randn(1, dim, 1, L))
        self.mixer = nn.ChannelShuffle(2) if mid_mix else None
        self.ffn = _ffn(2 * dim, ffn_dim, ffn_dropout, dropout)
        self.ca = ChannelAttention(2 * dim) if channel_attention else None
        self.dim = dim
        self.use_pe = use_pe
        self.mid_mix = mid_mix
        self.meta_kernel_size = meta_kernel_size
        self.instance_kernel_method = instance_kernel_method

    def instance_kernels(self, h: int, w: int) -> GCCQuad:
        """``(K_1_H, K_1_W, K_2_H, K_2_W)`` for an ``h × w`` feature: ``(dim, 1, h, 1)`` / ``(dim, 1, 1, w)``."""
        return (
            instance_param(self.meta_kernel_1_H, h, "H"),
            instance_param(self.meta_kernel_1_W, w, "W"),
            instance_param(self.meta_kernel_2_H, h, "H"),
            instance_param(self.meta_kernel_2_W, w, "W"),
        )

    def instance_pes(self, h: int, w: int) -> GCCQuad:
        """``(pe_1_H, pe_1_W, pe_2_H, pe_2_W)``: ``(1, dim, h, 1)`` / ``(1, dim, 1, w)``, broadcast when added.

        Raises ``RuntimeError`` when the block has no PEs.
        """
        if not self.use_pe:
            raise RuntimeError("this GCC block has no position embeddings (use_pe=False)")
        return (
            instance_param(self.meta_pe_1_H, h, "H"),
            instance_param(self.meta_pe_1_W, w, "W"),
            instance_param(self.meta_pe_2_H, h, "H"),
            instance_param(self.meta_pe_2_W, w, "W"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2 * dim, H, W)`` → ``(N, 2 * dim, H, W)``."""
        h, w = x.shape[-2], x.shape[-1]
        kernels = self.instance_kernels(h, w)
        pes = self.instance_pes(h, w) if self.use_pe else None
        return gcc_block_forward(self, x, kernels, pes)


def gcc_token_mixer(block: nn.Module, x: torch.Tensor, kernels: GCCQuad, pes: GCCQuad | None) -> torch.Tensor:
    """The EdgeFormer block's token mixer without its residual (official ``gcc_ca_mf_block.forward``, up to the
    ``cat``): ``(N, 2 * dim, H, W)`` → ``(N, 2 * dim, H, W)``; the block adds it to its input.

    Half 1: ``+ pe_1_H`` → ``pre_Norm_1`` → GCC-V (``k_1_H``) → ``+ pe_2_W`` → GCC-H (``k_2_W``); half 2: ``+ pe_1_W``
    → ``pre_Norm_2`` → GCC-H (``k_1_W``) → ``+ pe_2_H`` → GCC-V (``k_2_H``). ``block`` provides ``dim``,
    ``pre_Norm_1``, ``pre_Norm_2``, ``meta_*_bias`` and ``mixer``.
    """
    k_1_h, k_1_w, k_2_h, k_2_w = kernels
    # split with a Python int (not torch.chunk on a traced shape): the exported graph gets a static Split
    x_1, x_2 = torch.split(x, block.dim, dim=1)
    if pes is not None:
        x_1, x_2 = x_1 + pes[0], x_2 + pes[1]
    x_1, x_2 = block.pre_Norm_1(x_1), block.pre_Norm_2(x_2)
    # stage 1: half 1 vertical, half 2 horizontal
    x_1_1 = circular_conv(x_1, k_1_h, "H", block.meta_1_H_bias)
    x_2_1 = circular_conv(x_2, k_1_w, "W", block.meta_1_W_bias)
    if block.mixer is not None:
        x_1_1, x_2_1 = torch.split(block.mixer(torch.cat((x_1_1, x_2_1), dim=1)), block.dim, dim=1)
    if pes is not None:
        x_1_1, x_2_1 = x_1_1 + pes[3], x_2_1 + pes[2]
    # stage 2: half 1 horizontal, half 2 vertical
    x_1_2 = circular_conv(x_1_1, k_2_w, "W", block.meta_2_W_bias)
    x_2_2 = circular_conv(x_2_1, k_2_h, "H", block.meta_2_H_bias)
    return torch.cat((x_1_2, x_2_2), dim=1)


def gcc_block_forward(block: nn.Module, x: torch.Tensor, kernels: GCCQuad, pes: GCCQuad | None) -> torch.Tensor:
    """The EdgeFormer block computation (official ``gcc_ca_mf_block.forward``) given instance kernels and PEs.

    Shared by :class:`GCCBlock` (run-time interpolation) and :class:`BakedGCCBlock` (constants), so the two cannot
    drift apart: ``x + t`` with ``t`` = :func:`gcc_token_mixer`, then ``x + ca(ffn(x))``. ``block`` provides what
    :func:`gcc_token_mixer` needs and ``ffn``, ``ca``.
    """
    x = x + gcc_token_mixer(block, x, kernels, pes)
    y = block.ffn(x)
    if block.ca is not None:
        y = block.ca(y)
    return x + y
