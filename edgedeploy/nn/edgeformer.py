"""EdgeFormer (Zhang et al., "EdgeFormer: Improving Light-weight ConvNets by Learning from Vision Transformers").

Faithful to the official implementation hkzhang91/EdgeFormer (identical code in hkzhang91/ParC-Net):
``cvnets/models/classification/edgeformer.py`` (network, ``_make_outer_frame_v1``),
``cvnets/modules/edgeformer_block.py`` (``outer_frame_v1``, ``gcc_ca_mf_block``),
``cvnets/models/classification/config/edgeformer.py`` (``scale_xs`` / ``scale_s`` / ``scale_h``) and
``config/classification/edgeformer/edgeformer_{xs,s,h}.yaml`` (``outer_frame_v1``, ``gcc_ca``,
``interpolation_bilinear``, ``use_pe: True``; fusion ``add`` for XS, ``concat`` for S and H).

Structure (paper Sec. 3.2, "bifurcate" outer frame of MobileViT): EdgeFormer-S keeps MobileViT-S's stem,
``layer_1``, ``layer_2`` (MobileNetV2 blocks), 1×1 expansion conv and classifier, and replaces the MobileViT blocks
of ``layer_3``–``layer_5`` with :class:`OuterFrameV1`: a stride-2 :class:`InvertedResidual` followed by
grouped 3×3 conv + 1×1 conv ("dim adaptive") → ``cf_blocks`` :class:`~edgedeploy.nn.gcc.GCCBlock` on
``cf_s_channels`` channels (PE only in the first) → BN → grouped 1×1 conv back to ``out_channels`` → fusion with the
stage input (``concat``: 3×3 conv on ``[global, input]``; ``add``: 3×3 conv on ``input + global``).
EdgeFormer-H uses a 5×5, 48-channel stem.

State-dict keys equal the official ones except for the official model's ``residual.*`` entries: the official
``_make_outer_frame_v1`` stores each stage's first InvertedResidual as ``self.residual`` too, so the official
``state_dict`` repeats ``layer_5.0.*`` under ``residual.*`` (the same tensors; ``parameters()`` counts them once).
:func:`adapt_official_checkpoint` (registered as the family's checkpoint adapter) drops those aliases after
checking that they equal ``layer_5.0.*``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgedeploy.cards import ModelCard
from edgedeploy.cards import parse_hyper as parse_card_hyper
from edgedeploy.errors import ConfigError, WeightsError
from edgedeploy.nn.gcc import GCCBlock
from edgedeploy.nn.layers import (
    BifurcateNet,
    ConvLayer,
    InvertedResidual,
    MV2StageSpec,
    hybrid_stages,
    init_weights,
)
from edgedeploy.nn.rewrites import register_lowering
from edgedeploy.zoo import register_checkpoint_adapter, register_family


class GCCStageSpec(BaseModel):
    """A stage of the official ``outer_frame_v1`` type (``block_type: outer_frame_v1`` in the official config)."""

    model_config = ConfigDict(extra="forbid")
    block: Literal["gcc"] = "gcc"
    out_channels: int = Field(..., gt=0)
    mv_expand_ratio: float = Field(4, gt=0)
    stride: int = Field(2, ge=1, le=2)
    cf_s_channels: int = Field(..., gt=0, description="channels the GCC blocks run on (2 × block dim)")
    cf_ffn_channels: int = Field(..., gt=0, description="hidden width of the GCC blocks' FFN")
    cf_blocks: int = Field(..., gt=0)
    meta_kernel_size: int = Field(..., gt=1, description="meta-kernel / meta-PE length (feature side at 256 input)")


class EdgeFormerHyper(BaseModel):
    """``hyper`` of an EdgeFormer card; defaults are the official config's values."""

    model_config = ConfigDict(extra="forbid")
    stem_channels: int = 16
    stem_kernel_size: int = 3
    layers: list[Annotated[MV2StageSpec | GCCStageSpec, Field(discriminator="block")]] = Field(
        ..., min_length=5, max_length=5
    )
    kernel: str = Field("gcc_ca", pattern="^(gcc_ca|gcc)$", description="gcc_ca: with SE channel attention")
    fusion: str = Field("concat", pattern="^(concat|add)$")
    instance_kernel: str = Field("interpolation_bilinear", pattern="^interpolation_bilinear$")
    use_pe: bool = True
    mid_mix: bool = False
    bias: bool = False
    ffn_dropout: float = 0.0
    dropout: float = 0.1
    classifier_dropout: float = 0.2
    last_layer_exp_factor: int = 4


class DimAdaptive(nn.Sequential):
    """Official ``outer_frame_v1.dim_adaptive``: ``[ConvLayer(C, C_s, 3, groups=gcd(C_s, C)) (BN + SiLU),
    ConvLayer(C_s, C_s, 1) (no norm / act)]``, ``(N, C, H, W)`` → ``(N, C_s, H, W)``. A plain ``nn.Sequential``
    (same state-dict keys ``0.block.conv.weight`` …) with a type of its own, so that its export form
    (:func:`lower_dim_adaptive`) can be registered."""


class ChannelAdaptive(ConvLayer):
    """Official ``outer_frame_v1.channel_adaptive``: a grouped 1×1 :class:`ConvLayer` ``C_s → C`` (``groups =
    gcd(C_s, C)``, BN + SiLU); a type of its own for its export form (:func:`lower_channel_adaptive`)."""


class ReplicatedDepthwise(nn.Module):
    """Export form of a :class:`DimAdaptive` whose grouped conv has one input channel per group and ``m`` outputs
    (a depthwise conv with channel multiplier ``m``; EdgeFormer-S: 96 → 192, ``groups=96``).

    ``x`` ``(N, C, H, W)`` → ``cat([x] * m)`` ``(N, m·C, H, W)`` → depthwise conv (``groups = m·C``) with the BN
    folded in (bias) → SiLU → the 1×1 conv with its input channels permuted to match. Output channel ``j·C + g``
    of the depthwise conv is the original output channel ``g·m + j`` (the same kernel on the same input
    channel ``g``), and the activation is per element, so permuting the 1×1 conv's weight columns gives exactly
    the original ``(N, C_s, H, W)`` output, up to fp32 rounding of the folded BN.

    Why: onnxruntime runs a grouped conv that is not depthwise through its generic per-group path; for int8
    (QLinearConv, NHWC) that path took 3.6 ms of EdgeFormer-S's 24 ms (layer_3.1; 5.2 ms for the three frames)
    on a 2-vCPU Xeon, a true depthwise conv a tenth of that; fp32 is unchanged (0.99× paired,
    ``benchmarks/results/lowering_forms_issue13.md``).
    """

    def __init__(self, src: DimAdaptive) -> None:
        super().__init__()
        from edgedeploy.nn.folding import conv_bn_folded

        grouped, pointwise = src[0].block, src[1].block.conv
        conv = grouped.conv
        c, m = conv.in_channels, channel_multiplier(conv)
        if m < 2:
            raise ConfigError(f"ReplicatedDepthwise needs one input channel per group and m ≥ 2 outputs, got {conv}")
        perm = torch.tensor([g * m + j for j in range(m) for g in range(c)])  # new channel → original channel
        self.m = m
        self.dw = nn.Conv2d(m * c, m * c, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                            groups=m * c, bias=True)  # fmt: skip
        w, b = conv_bn_folded(conv, getattr(grouped, "norm", None))
        with torch.no_grad():
            self.dw.weight.copy_(w[perm])
            self.dw.bias.copy_(b[perm])
        self.act: nn.Module = getattr(grouped, "act", None) or nn.Identity()
        self.pw = nn.Conv2d(pointwise.in_channels, pointwise.out_channels, 1, bias=pointwise.bias is not None)
        with torch.no_grad():
            self.pw.weight.copy_(pointwise.weight[:, perm])
            if pointwise.bias is not None:
                self.pw.bias.copy_(pointwise.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, C_s, H, W)``."""
        return self.pw(self.act(self.dw(torch.cat([x] * self.m, dim=1))))


def channel_multiplier(conv: nn.Conv2d) -> int:
    """``m`` for a grouped conv with one input channel per group and ``m`` outputs each (``groups = C_in``,
    ``C_out = m·C_in``); 1 for any other conv (a plain depth-wise one included)."""
    c = conv.in_channels
    return conv.out_channels // c if conv.groups == c and conv.out_channels % c == 0 else 1


def dense_pointwise(conv: nn.Conv2d) -> nn.Conv2d:
    """A grouped 1×1 conv as the equivalent ungrouped one: the ``(C_out, C_in / groups)`` weight placed on the
    block diagonal of a zero ``(C_out, C_in)`` matrix (exact: the zeros add nothing). ``groups``× the MACs."""
    g, cin, cout = conv.groups, conv.in_channels, conv.out_channels
    dense = nn.Conv2d(cin, cout, 1, conv.stride, bias=conv.bias is not None)
    w = torch.zeros_like(dense.weight)
    ig, og = cin // g, cout // g
    with torch.no_grad():
        for k in range(g):
            w[k * og : (k + 1) * og, k * ig : (k + 1) * ig] = conv.weight[k * og : (k + 1) * og]
        dense.weight.copy_(w)
        if conv.bias is not None:
            dense.bias.copy_(conv.bias)
    return dense


#: per export target: whether the outer frame's grouped convs get their export forms (:class:`ReplicatedDepthwise`,
#: :func:`dense_pointwise`); measured on onnxruntime only (EdgeFormer-S: fp32 0.99×, int8 0.68× the int8 file
#: without them)
FRAME_CONV_FORM: dict[str, str] = {"onnx": "depthwise"}


@register_lowering(DimAdaptive)
def lower_dim_adaptive(module: nn.Module, input_shape: tuple[int, ...], target: str) -> nn.Module:
    """:class:`ReplicatedDepthwise` for the targets in :data:`FRAME_CONV_FORM` when the grouped conv has one input
    channel per group and a channel multiplier ≥ 2; otherwise the module itself."""
    if target not in FRAME_CONV_FORM or channel_multiplier(module[0].block.conv) < 2:
        return module
    return ReplicatedDepthwise(module)


@register_lowering(ChannelAdaptive)
def lower_channel_adaptive(module: nn.Module, input_shape: tuple[int, ...], target: str) -> nn.Module:
    """For the targets in :data:`FRAME_CONV_FORM`: the same layer with its grouped 1×1 conv made dense
    (:func:`dense_pointwise`; onnxruntime's int8 grouped path is slow, see :class:`ReplicatedDepthwise`), when
    each group reads at most 4 input channels (so the dense conv's MACs stay those of one small 1×1 conv);
    otherwise the module itself."""
    import copy

    conv = module.block.conv
    if target not in FRAME_CONV_FORM or conv.kernel_size != (1, 1) or conv.groups == 1:
        return module
    if conv.in_channels // conv.groups > 4:
        return module
    if conv.groups == conv.in_channels == conv.out_channels:  # depthwise: onnxruntime's fast path already
        return module
    dense = copy.deepcopy(module)
    dense.block.conv = dense_pointwise(conv)
    return dense


class OuterFrameV1(nn.Module):
    """Official ``outer_frame_v1`` (EdgeFormer paper Fig. 4c, the MobileViT-like bifurcate block).

    ``(N, C, H, W)`` → ``(N, C, H, W)`` with ``C = in_channels``:

    * ``dim_adaptive``: 3×3 conv ``C → S`` with ``groups = gcd(S, C)`` (BN + SiLU), then 1×1 conv ``S → S``
      (no norm, no act, no bias), ``S = cf_s_channels``;
    * ``spatial_global_rep``: ``n_blocks`` :class:`GCCBlock` of ``dim = S / 2`` (PE only in block 0), then BN(S);
    * ``channel_adaptive``: 1×1 conv ``S → C`` with ``groups = gcd(S, C)`` (BN + SiLU);
    * ``local_global_fusion``: 3×3 conv (BN + SiLU) on ``cat(global, input)`` (``concat``, ``2C → C``) or on
      ``input + global`` (``add``, ``C → C``).
    """

    def __init__(
        self,
        in_channels: int,
        cf_s_channels: int,
        n_blocks: int,
        meta_kernel_size: int,
        cf_ffn_channels: int,
        kernel: str = "gcc_ca",
        fusion: str = "concat",
        instance_kernel_method: str = "interpolation_bilinear",
        use_pe: bool = True,
        mid_mix: bool = False,
        bias: bool = False,
        ffn_dropout: float = 0.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if fusion not in ("concat", "add"):
            raise ConfigError(f"EdgeFormer fusion must be 'concat' or 'add', got '{fusion}'")
        if kernel not in ("gcc_ca", "gcc"):
            raise ConfigError(f"EdgeFormer kernel must be 'gcc_ca' or 'gcc', got '{kernel}'")
        if cf_s_channels % 2:
            raise ConfigError(f"cf_s_channels must be even (split in two GCC halves), got {cf_s_channels}")
        g = math.gcd(cf_s_channels, in_channels)
        self.dim_adaptive = DimAdaptive(
            ConvLayer(in_channels, cf_s_channels, 3, groups=g),
            ConvLayer(cf_s_channels, cf_s_channels, 1, use_norm=False, use_act=False),
        )
        blocks: list[nn.Module] = [
            GCCBlock(
                dim=cf_s_channels // 2,
                meta_kernel_size=meta_kernel_size,
                instance_kernel_method=instance_kernel_method,
                use_pe=use_pe and i == 0,
                mid_mix=mid_mix,
                bias=bias,
                ffn_dim=cf_ffn_channels,
                ffn_dropout=ffn_dropout,
                dropout=dropout,
                channel_attention=kernel == "gcc_ca",
            )
            for i in range(n_blocks)
        ]
        blocks.append(nn.BatchNorm2d(cf_s_channels))
        self.spatial_global_rep = nn.Sequential(*blocks)
        self.channel_adaptive = ChannelAdaptive(cf_s_channels, in_channels, 1, groups=g)
        fusion_in = 2 * in_channels if fusion == "concat" else in_channels
        self.local_global_fusion = ConvLayer(fusion_in, in_channels, 3)
        self.fusion_method = fusion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, C, H, W)``."""
        res = x
        x = self.dim_adaptive(x)
        x = self.spatial_global_rep(x)
        x = self.channel_adaptive(x)
        if self.fusion_method == "add":
            return self.local_global_fusion(res + x)
        return self.local_global_fusion(torch.cat((x, res), dim=1))


def gcc_stage(in_channels: int, spec: GCCStageSpec, hyper: EdgeFormerHyper) -> tuple[nn.Sequential, int]:
    """Official ``_make_outer_frame_v1``: stride-2 :class:`InvertedResidual` (if stride 2) + :class:`OuterFrameV1`.

    Note: in the official code the InvertedResidual's input width is the stage input, and the outer frame runs
    on ``out_channels``; a stride-1 stage would feed ``in_channels`` into a frame built for ``out_channels`` (the
    official code has the same constraint), so that case raises :class:`ConfigError` unless the widths agree.
    """
    blocks: list[nn.Module] = []
    if spec.stride == 2:
        blocks.append(InvertedResidual(in_channels, spec.out_channels, 2, spec.mv_expand_ratio))
    elif in_channels != spec.out_channels:
        raise ConfigError(f"a stride-1 GCC stage needs in_channels == out_channels, got {in_channels}")
    blocks.append(
        OuterFrameV1(
            in_channels=spec.out_channels,
            cf_s_channels=spec.cf_s_channels,
            n_blocks=spec.cf_blocks,
            meta_kernel_size=spec.meta_kernel_size,
            cf_ffn_channels=spec.cf_ffn_channels,
            kernel=hyper.kernel,
            fusion=hyper.fusion,
            instance_kernel_method=hyper.instance_kernel,
            use_pe=hyper.use_pe,
            mid_mix=hyper.mid_mix,
            bias=hyper.bias,
            ffn_dropout=hyper.ffn_dropout,
            dropout=hyper.dropout,
        )
    )
    return nn.Sequential(*blocks), spec.out_channels


class EdgeFormer(BifurcateNet):
    """The EdgeFormer classification network: ``(N, 3, H, W)`` float32 NCHW → ``(N, num_classes)`` logits.

    Any ``H, W`` that are multiples of 32 work (GCC kernels / PEs are interpolated to each stage's feature size).
    See the module docstring for the sources.
    """

    def __init__(self, hyper: EdgeFormerHyper, num_classes: int = 1000) -> None:
        conv_1 = ConvLayer(3, hyper.stem_channels, hyper.stem_kernel_size, stride=2)
        layers, c = hybrid_stages(hyper, gcc_stage)
        super().__init__(conv_1, layers, c, hyper.last_layer_exp_factor, num_classes, hyper.classifier_dropout)
        init_weights(self)


def parse_hyper(card: ModelCard) -> EdgeFormerHyper:
    """Validate ``card.hyper``; :class:`ConfigError` names the card file and the field."""
    return parse_card_hyper(card, EdgeFormerHyper)


@register_family("edgeformer")
def build_edgeformer(card: ModelCard, input_size: int) -> nn.Module:
    """Builder for ``family: edgeformer`` cards. ``input_size`` must be a multiple of 32 (checked by the zoo);
    the module itself adapts to the input size at run time."""
    if input_size % 32:
        raise ConfigError(f"{card.name}: input side must be a multiple of 32, got {input_size}")
    return EdgeFormer(parse_hyper(card), num_classes=card.num_classes)


@register_checkpoint_adapter("edgeformer")
def adapt_official_checkpoint(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """Map an official hkzhang91/EdgeFormer ``state_dict`` onto :class:`EdgeFormer`.

    Strips a DistributedDataParallel ``module.`` prefix when every key has it, and drops the ``residual.*``
    entries, which in the official model alias ``layer_5.0.*`` (``self.residual`` is re-assigned in every
    outer-frame stage, the last time for layer 5). Raises :class:`WeightsError` when a ``residual.*`` tensor
    differs from its ``layer_5.0.*`` twin (the checkpoint is then not an official EdgeFormer one).
    Returns ``state`` unchanged when it holds no such keys.
    """
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    aliases = [k for k in state if k.startswith("residual.")]
    if not aliases:
        return state
    out = {k: v for k, v in state.items() if not k.startswith("residual.")}
    for k in aliases:
        twin = "layer_5.0." + k[len("residual.") :]
        if twin in out and not (out[twin].shape == state[k].shape and torch.equal(out[twin], state[k])):
            raise WeightsError(f"checkpoint key {k} should alias {twin} (official EdgeFormer layout) but differs")
        if twin not in out:
            out[twin] = state[k]
    return out


__all__ = [
    "EdgeFormer",
    "EdgeFormerHyper",
    "GCCStageSpec",
    "OuterFrameV1",
    "adapt_official_checkpoint",
    "build_edgeformer",
    "gcc_stage",
]
