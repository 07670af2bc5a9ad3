"""MobileViT (Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision
Transformer", ICLR 2022), faithful to the official apple/ml-cvnets code:

* ``cvnets/models/classification/mobilevit.py`` (network, ``_make_mit_layer``),
* ``cvnets/modules/mobilevit_block.py`` (``MobileViTBlock``: ``unfolding`` / ``folding``),
* ``cvnets/modules/transformer.py`` (pre-norm ``TransformerEncoder``),
* ``cvnets/layers/multi_head_attention.py`` (``MultiHeadAttention``, fused ``qkv_proj``),
* ``cvnets/models/classification/config/mobilevit.py`` (modes ``xx_small`` / ``x_small`` / ``small``) and
  ``config/classification/imagenet/mobilevit.yaml`` (``number_heads: 4``, ``dropout: 0.1``, ``swish``).

Module and parameter names mirror the official ones, so official checkpoints load as they are.

MobileViT block (paper Sec. 3.1, Fig. 1b): 3×3 conv (BN + SiLU) → 1×1 conv to ``d`` channels (local
representation) → unfold into ``P = p_h · p_w`` interleaved sequences of ``N = (H / p_h)(W / p_w)`` patches →
``L`` pre-norm transformer layers + LayerNorm → fold → 1×1 conv back (BN + SiLU) → 3×3 conv on
``cat(input, out)`` (BN + SiLU). When ``H`` or ``W`` is not a multiple of the patch size the official code resizes
the feature (bilinear, ``align_corners=False``) before unfolding and back after folding; this module does the
same.

:func:`lower_mobilevit_block` (registered with :func:`edgedeploy.nn.rewrites.register_lowering`) replaces each
block with an export form chosen per target (``edgedeploy.nn.forms.mobilevit.MOBILEVIT_FORM``), with shapes fixed
at export time (no Shape / Gather arithmetic in the graph): :class:`StaticMobileViTBlock` (only ≤4-D reshapes and
transposes; CoreML, ncnn) or the channels-last block (1×1 convs on tokens, rank-6 unfold / fold; ONNX, MNN,
TFLite). The attention splits heads with 4-D tensors only (the official attention reshapes to 5-D).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgedeploy.cards import ModelCard
from edgedeploy.cards import parse_hyper as parse_card_hyper
from edgedeploy.errors import ConfigError
from edgedeploy.nn.layers import (
    BifurcateNet,
    ConvLayer,
    InvertedResidual,
    MV2StageSpec,
    hybrid_stages,
    init_weights,
)
from edgedeploy.zoo import register_family


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv_proj`` (official ``MultiHeadAttention.forward_default``).

    ``(B, S, C)`` → ``(B, S, C)``; ``qkv_proj``: ``Linear(C, 3C)``, ``out_proj``: ``Linear(C, C)``, both with bias.
    Query is scaled by ``head_dim ** -0.5`` before ``q kᵀ``; softmax over keys. Heads are split with 4-D tensors
    (``(B, S, h, d)`` → ``(B, h, S, d)``), which computes exactly what the official 5-D reshape computes.
    """

    def __init__(self, embed_dim: int, num_heads: int, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ConfigError(f"attention dim {embed_dim} is not divisible by {num_heads} heads")
        self.qkv_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=True)
        self.attn_dropout = nn.Dropout(p=attn_dropout)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=True)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, C)`` → ``(B, S, C)``."""
        b, s, _ = x.shape
        q, k, v = torch.split(self.qkv_proj(x), self.embed_dim, dim=-1)
        q = q.reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        attn = torch.matmul(q * self.scaling, k.transpose(-1, -2))
        attn = self.attn_dropout(torch.softmax(attn, dim=-1))
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, s, self.embed_dim)
        return self.out_proj(out)


class TransformerEncoder(nn.Module):
    """Pre-norm transformer layer (official ``TransformerEncoder``): ``x + MHA(LN(x))``, then ``x + FFN(LN(x))``.

    ``pre_norm_mha`` = [LayerNorm, :class:`MultiHeadAttention`, Dropout]; ``pre_norm_ffn`` = [LayerNorm,
    Linear(C, ffn_dim), SiLU, Dropout, Linear(ffn_dim, C), Dropout]. ``(B, S, C)`` → ``(B, S, C)``.
    """

    def __init__(
        self,
        embed_dim: int,
        ffn_latent_dim: int,
        num_heads: int,
        attn_dropout: float = 0.0,
        dropout: float = 0.0,
        ffn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.pre_norm_mha = nn.Sequential(
            nn.LayerNorm(embed_dim),
            MultiHeadAttention(embed_dim, num_heads, attn_dropout),
            nn.Dropout(p=dropout),
        )
        self.pre_norm_ffn = nn.Sequential(
            nn.LayerNorm(embed_dim),
            nn.Linear(embed_dim, ffn_latent_dim, bias=True),
            nn.SiLU(),
            nn.Dropout(p=ffn_dropout),
            nn.Linear(ffn_latent_dim, embed_dim, bias=True),
            nn.Dropout(p=dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, C)`` → ``(B, S, C)``."""
        x = x + self.pre_norm_mha(x)
        return x + self.pre_norm_ffn(x)


class MobileViTBlock(nn.Module):
    """The MobileViT block (official ``MobileViTBlock``, spatial path). ``(N, C, H, W)`` → ``(N, C, H, W)``.

    Submodules: ``local_rep`` (``conv_3x3``: C→C, BN + SiLU; ``conv_1x1``: C→d, no norm / act / bias),
    ``global_rep`` (``n_transformer_blocks`` :class:`TransformerEncoder` + LayerNorm(d)), ``conv_proj`` (1×1 d→C,
    BN + SiLU), ``fusion`` (3×3 2C→C, BN + SiLU; ``None`` with ``no_fusion``).
    """

    def __init__(
        self,
        in_channels: int,
        transformer_dim: int,
        ffn_dim: int,
        n_transformer_blocks: int = 2,
        head_dim: int = 32,
        attn_dropout: float = 0.0,
        dropout: float = 0.0,
        ffn_dropout: float = 0.0,
        patch_h: int = 2,
        patch_w: int = 2,
        conv_ksize: int = 3,
        no_fusion: bool = False,
    ) -> None:
        super().__init__()
        if transformer_dim % head_dim:
            raise ConfigError(f"transformer dim {transformer_dim} is not divisible by head dim {head_dim}")
        self.local_rep = nn.Sequential()
        self.local_rep.add_module("conv_3x3", ConvLayer(in_channels, in_channels, conv_ksize))
        self.local_rep.add_module("conv_1x1", ConvLayer(in_channels, transformer_dim, 1, use_norm=False, use_act=False))
        layers: list[nn.Module] = [
            TransformerEncoder(
                transformer_dim,
                ffn_dim,
                transformer_dim // head_dim,
                attn_dropout=attn_dropout,
                dropout=dropout,
                ffn_dropout=ffn_dropout,
            )
            for _ in range(n_transformer_blocks)
        ]
        layers.append(nn.LayerNorm(transformer_dim))
        self.global_rep = nn.Sequential(*layers)
        self.conv_proj = ConvLayer(transformer_dim, in_channels, 1)
        self.fusion = None if no_fusion else ConvLayer(2 * in_channels, in_channels, conv_ksize)
        self.patch_h = patch_h
        self.patch_w = patch_w
        self.patch_area = patch_h * patch_w

    def unfolding(self, fm: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``(B, C, H, W)`` → patches ``(B·P, N, C)`` and the info ``folding`` needs (official ``unfolding``).

        ``patches[b·P + (py·p_w + px), iy·n_w + ix, c] = fm[b, c, iy·p_h + py, ix·p_w + px]``.
        """
        ph, pw = self.patch_h, self.patch_w
        b, c, h, w = fm.shape
        new_h = int(math.ceil(h / ph) * ph)
        new_w = int(math.ceil(w / pw) * pw)
        interpolate = new_h != h or new_w != w
        if interpolate:
            fm = F.interpolate(fm, size=(new_h, new_w), mode="bilinear", align_corners=False)
        nh, nw = new_h // ph, new_w // pw
        x = fm.reshape(b * c * nh, ph, nw, pw).transpose(1, 2)
        x = x.reshape(b, c, nh * nw, ph * pw).transpose(1, 3)
        patches = x.reshape(b * ph * pw, nh * nw, -1)
        info = {"orig_size": (h, w), "batch_size": b, "interpolate": interpolate, "nh": nh, "nw": nw}
        return patches, info

    def folding(self, patches: torch.Tensor, info: dict) -> torch.Tensor:
        """Inverse of :meth:`unfolding`: ``(B·P, N, C)`` → ``(B, C, H, W)`` (official ``folding``)."""
        b, nh, nw = info["batch_size"], info["nh"], info["nw"]
        x = patches.contiguous().view(b, self.patch_area, nh * nw, -1)
        c = x.shape[-1]
        x = x.transpose(1, 3).reshape(b * c * nh, nw, self.patch_h, self.patch_w)
        fm = x.transpose(1, 2).reshape(b, c, nh * self.patch_h, nw * self.patch_w)
        if info["interpolate"]:
            fm = F.interpolate(fm, size=info["orig_size"], mode="bilinear", align_corners=False)
        return fm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, C, H, W)``."""
        res = x
        patches, info = self.unfolding(self.local_rep(x))
        patches = self.global_rep(patches)
        fm = self.conv_proj(self.folding(patches, info))
        if self.fusion is not None:
            fm = self.fusion(torch.cat((res, fm), dim=1))
        return fm


class MobileViTStageSpec(BaseModel):
    """A ``block_type: mobilevit`` stage of the official config."""

    model_config = ConfigDict(extra="forbid")
    block: Literal["mobilevit"] = "mobilevit"
    out_channels: int = Field(..., gt=0)
    transformer_channels: int = Field(..., gt=0)
    ffn_dim: int = Field(..., gt=0)
    transformer_blocks: int = Field(..., gt=0)
    patch_h: int = Field(2, gt=0)
    patch_w: int = Field(2, gt=0)
    stride: int = Field(2, ge=1, le=2)
    mv_expand_ratio: float = Field(4, gt=0)


class MobileViTHyper(BaseModel):
    """``hyper`` of a MobileViT card; defaults are the official ``mobilevit.yaml`` values.

    ``num_heads`` (official ``number_heads: 4``) sets ``head_dim = transformer_channels // num_heads`` per stage;
    ``head_dim`` (mutually exclusive) fixes the head width instead.
    """

    model_config = ConfigDict(extra="forbid")
    stem_channels: int = 16
    layers: list[Annotated[MV2StageSpec | MobileViTStageSpec, Field(discriminator="block")]] = Field(
        ..., min_length=5, max_length=5
    )
    num_heads: int | None = 4
    head_dim: int | None = None
    attn_dropout: float = 0.0
    ffn_dropout: float = 0.0
    dropout: float = 0.1
    conv_kernel_size: int = 3
    no_fusion: bool = False
    classifier_dropout: float = 0.1
    last_layer_exp_factor: int = 4


def mobilevit_stage(in_channels: int, spec: MobileViTStageSpec, hyper: MobileViTHyper) -> tuple[nn.Sequential, int]:
    """Official ``_make_mit_layer``: (stride-2 :class:`InvertedResidual`) + :class:`MobileViTBlock`."""
    blocks: list[nn.Module] = []
    c = in_channels
    if spec.stride == 2:
        blocks.append(InvertedResidual(c, spec.out_channels, 2, spec.mv_expand_ratio))
        c = spec.out_channels
    if hyper.head_dim is not None and hyper.num_heads is not None:
        raise ConfigError("MobileViT hyper: head_dim and num_heads are mutually exclusive")
    head_dim = hyper.head_dim or spec.transformer_channels // (hyper.num_heads or 4)
    blocks.append(
        MobileViTBlock(
            c,
            spec.transformer_channels,
            spec.ffn_dim,
            n_transformer_blocks=spec.transformer_blocks,
            head_dim=head_dim,
            attn_dropout=hyper.attn_dropout,
            dropout=hyper.dropout,
            ffn_dropout=hyper.ffn_dropout,
            patch_h=spec.patch_h,
            patch_w=spec.patch_w,
            conv_ksize=hyper.conv_kernel_size,
            no_fusion=hyper.no_fusion,
        )
    )
    return nn.Sequential(*blocks), c


class MobileViT(BifurcateNet):
    """MobileViT classification network: ``(N, 3, H, W)`` float32 NCHW → ``(N, num_classes)`` logits.

    Stem: 3×3 stride-2 conv to ``stem_channels`` (BN + SiLU); ``layer_1``, ``layer_2``: MobileNetV2 stages;
    ``layer_3``–``layer_5``: stride-2 InvertedResidual + :class:`MobileViTBlock`; 1×1 expansion to
    ``min(4 · C5, 960)``; mean pool, dropout, linear (paper Table 4, official config).
    """

    def __init__(self, hyper: MobileViTHyper, num_classes: int = 1000) -> None:
        conv_1 = ConvLayer(3, hyper.stem_channels, 3, stride=2)
        layers, c = hybrid_stages(hyper, mobilevit_stage)
        super().__init__(conv_1, layers, c, hyper.last_layer_exp_factor, num_classes, hyper.classifier_dropout)
        init_weights(self)


def parse_hyper(card: ModelCard) -> MobileViTHyper:
    """Validate ``card.hyper``; :class:`ConfigError` names the card file and the field."""
    return parse_card_hyper(card, MobileViTHyper)


@register_family("mobilevit")
def build_mobilevit(card: ModelCard, input_size: int) -> nn.Module:
    """Builder for ``family: mobilevit`` cards.

    ``input_size`` must be a multiple of ``card.min_input_multiple`` (64 for the released configs: stride 32 times
    patch 2, so that no stage needs the bilinear resize around unfolding); checked by the zoo.
    """
    return MobileViT(parse_hyper(card), num_classes=card.num_classes)


__all__ = [
    "MobileViT",
    "MobileViTBlock",
    "MobileViTHyper",
    "MultiHeadAttention",
    "TransformerEncoder",
    "build_mobilevit",
]
