"""Shared building blocks of the MobileViT-style ("bifurcate") networks: EdgeFormer and MobileViT.

Every module here mirrors a module of the official CVNets code base (apple/ml-cvnets, which hkzhang91/EdgeFormer
forks), including its sub-module names, so that the official ``state_dict`` keys load without renaming:

* :class:`ConvLayer` — ``cvnets/layers/conv_layer.py`` ``ConvLayer``: ``block.conv`` / ``block.norm`` / ``block.act``
  (conv without bias when followed by BatchNorm, "same" padding ``(k - 1) // 2 * dilation``);
* :class:`InvertedResidual` — ``cvnets/modules/mobilenetv2.py`` ``InvertedResidual`` (MobileNetV2, Sandler et al.
  2018): ``block.exp_1x1`` (skipped when ``expand_ratio == 1``), ``block.conv_3x3`` (depthwise),
  ``block.red_1x1`` (linear bottleneck); residual only when ``stride == 1`` and ``in == out``;
* :class:`MobileNetStage` — ``_make_mobilenet_layer`` / ``_make_mb_layer`` of the classification models;
* :class:`Classifier` — ``classifier`` of both models: ``global_pool`` (mean over H, W), ``dropout``, ``fc``;
* :func:`init_weights` — ``cvnets/misc/init_utils.py`` with the configs' ``conv_init: kaiming_normal``,
  ``linear_init: trunc_normal``, ``linear_init_std_dev: 0.02``.

All tensors are float32 NCHW unless stated otherwise. The activation of every config used here is ``swish``
(``nn.SiLU``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

ActFactory = Callable[[], nn.Module]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (never below 90 % of ``v``).

    Source: ``utils/math_utils.py`` ``make_divisible`` of CVNets (from the TensorFlow MobileNet code); used for the
    hidden width of :class:`InvertedResidual`.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvLayer(nn.Module):
    """Conv2d → BatchNorm2d (optional) → activation (optional), as CVNets ``ConvLayer``.

    Maps ``(N, in_channels, H, W)`` to ``(N, out_channels, ceil(H / stride), ceil(W / stride))`` for odd kernels.
    Padding is ``(k - 1) // 2 * dilation`` per axis; the conv has a bias only when ``bias=True`` (never together
    with normalisation, as in CVNets). Parameters live under ``block.conv``, ``block.norm``; the activation is
    ``block.act``.

    Raises ``ValueError`` when ``bias`` and ``use_norm`` are both set or the channels do not divide by ``groups``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        use_norm: bool = True,
        use_act: bool = True,
        act: ActFactory = nn.SiLU,
    ) -> None:
        super().__init__()
        if use_norm and bias:
            raise ValueError("ConvLayer: no conv bias together with a normalisation layer (as in CVNets)")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"ConvLayer: channels {in_channels}->{out_channels} not divisible by groups={groups}")
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        padding = ((ks[0] - 1) // 2 * dilation, (ks[1] - 1) // 2 * dilation)
        block = nn.Sequential()
        block.add_module(
            "conv",
            nn.Conv2d(
                in_channels,
                out_channels,
                ks,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=bias,
            ),
        )
        if use_norm:
            block.add_module("norm", nn.BatchNorm2d(out_channels, momentum=0.1))
        if use_act:
            block.add_module("act", act())
        self.block = block
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` → ``(N, C_out, H', W')``."""
        return self.block(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual block (CVNets ``cvnets/modules/mobilenetv2.py`` ``InvertedResidual``).

    1×1 expansion to ``make_divisible(round(in * expand_ratio), 8)`` channels (BN + act; omitted when
    ``expand_ratio == 1``), 3×3 depthwise conv with ``stride`` / ``dilation`` (BN + act), 1×1 projection (BN, no
    act). Adds the input when ``stride == 1`` and ``in_channels == out_channels``.
    ``(N, in, H, W)`` → ``(N, out, H / stride, W / stride)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: float,
        dilation: int = 1,
        act: ActFactory = nn.SiLU,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        hidden = make_divisible(round(in_channels * expand_ratio), 8)
        block = nn.Sequential()
        if expand_ratio != 1:
            block.add_module("exp_1x1", ConvLayer(in_channels, hidden, 1, act=act))
        block.add_module(
            "conv_3x3", ConvLayer(hidden, hidden, 3, stride=stride, groups=hidden, dilation=dilation, act=act)
        )
        block.add_module("red_1x1", ConvLayer(hidden, out_channels, 1, use_act=False, act=act))
        self.block = block
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in, H, W)`` → ``(N, out, H / stride, W / stride)``."""
        y = self.block(x)
        return x + y if self.use_res_connect else y


class MV2StageSpec(BaseModel):
    """A stage of MobileNetV2 blocks (``block_type: mv2`` in the CVNets configs)."""

    model_config = ConfigDict(extra="forbid")
    block: Literal["mv2"] = "mv2"
    out_channels: int = Field(..., gt=0)
    expand_ratio: float = Field(4, gt=0)
    num_blocks: int = Field(2, gt=0)
    stride: int = Field(1, ge=1, le=2)


def mobilenet_stage(in_channels: int, spec: MV2StageSpec, act: ActFactory = nn.SiLU) -> tuple[nn.Sequential, int]:
    """``num_blocks`` :class:`InvertedResidual` blocks, the first with ``spec.stride``.

    Source: CVNets ``_make_mobilenet_layer`` (MobileViT) / ``_make_mb_layer`` (EdgeFormer).

    Returns ``(stage, out_channels)``; stage keys are ``0.block...``, ``1.block...``.
    """
    blocks = []
    c = in_channels
    for i in range(spec.num_blocks):
        blocks.append(InvertedResidual(c, spec.out_channels, spec.stride if i == 0 else 1, spec.expand_ratio, act=act))
        c = spec.out_channels
    return nn.Sequential(*blocks), c


class GlobalPool(nn.Module):
    """Mean over the spatial axes: ``(N, C, H, W)`` → ``(N, C)`` (CVNets ``GlobalPool(pool_type="mean")``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, C)``."""
        return torch.mean(x, dim=[-2, -1], keepdim=False)


class Classifier(nn.Sequential):
    """``global_pool`` → ``dropout`` (only when ``0 < p < 1``, as CVNets) → ``fc``.

    ``(N, C, H, W)`` → ``(N, num_classes)``.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.add_module("global_pool", GlobalPool())
        if 0.0 < dropout < 1.0:
            self.add_module("dropout", nn.Dropout(p=dropout))
        self.add_module("fc", nn.Linear(in_features, num_classes, bias=True))


def init_weights(module: nn.Module, linear_std: float = 0.02) -> None:
    """CVNets initialisation (``cvnets/misc/init_utils.py``, configs' ``conv_init: kaiming_normal``,
    ``linear_init: trunc_normal``, ``linear_init_std_dev: 0.02``).

    Conv2d: Kaiming normal (``mode="fan_out"``), bias 0; BatchNorm / LayerNorm: weight 1, bias 0; Linear:
    truncated normal (std ``linear_std``), bias 0. Bare ``nn.Parameter`` attributes (GCC meta-kernels, position
    embeddings) keep the initialisation their module gave them, as in the official code.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def vit_init(m: nn.Module, norms: tuple[type[nn.Module], ...] = (nn.LayerNorm,)) -> None:
    """The timm-style ``_init_weights`` of EdgeViT and EMO, for ``module.apply``: Linear truncated normal (std
    0.02), bias 0; the ``norms`` types weight 1, bias 0."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, norms):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def hybrid_stages(hyper: Any, stage: Callable[[int, Any, Any], tuple[nn.Module, int]]) -> tuple[list[nn.Module], int]:
    """The stages of a MobileNetV2 / attention hybrid (EdgeFormer, MobileViT) from ``hyper.layers``: an
    :class:`MV2StageSpec` is a :func:`mobilenet_stage`, anything else ``stage(in_channels, spec, hyper)``; returns
    the stages and the last one's output channels."""
    layers: list[nn.Module] = []
    c = hyper.stem_channels
    for spec in hyper.layers:
        if isinstance(spec, MV2StageSpec):
            layer, c = mobilenet_stage(c, spec)
        else:
            layer, c = stage(c, spec, hyper)
        layers.append(layer)
    return layers, c


class BifurcateNet(nn.Module):
    """The MobileViT outer frame shared by MobileViT and EdgeFormer (Mehta & Rastegari 2022, Fig. 1b / Table 4;
    CVNets ``cvnets/models/classification/mobilevit.py``; EdgeFormer paper Sec. 3.2 "bifurcate structure").

    ``conv_1`` (stride-2 stem) → ``layer_1`` … ``layer_5`` (output strides 2, 4, 8, 16, 32) → ``conv_1x1_exp``
    (1×1, ``min(exp_factor * C5, 960)`` channels, BN + act) → ``classifier``.
    Maps float32 NCHW ``(N, 3, H, W)`` to logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        conv_1: nn.Module,
        layers: list[nn.Module],
        last_channels: int,
        last_layer_exp_factor: int,
        num_classes: int,
        classifier_dropout: float,
        act: ActFactory = nn.SiLU,
    ) -> None:
        super().__init__()
        if len(layers) != 5:
            raise ValueError(f"BifurcateNet needs 5 stages, got {len(layers)}")
        self.conv_1 = conv_1
        self.layer_1, self.layer_2, self.layer_3, self.layer_4, self.layer_5 = layers
        exp_channels = min(last_layer_exp_factor * last_channels, 960)
        self.conv_1x1_exp = ConvLayer(last_channels, exp_channels, 1, act=act)
        self.classifier = Classifier(exp_channels, num_classes, classifier_dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, C_exp, H / 32, W / 32)``."""
        x = self.conv_1(x)
        x = self.layer_1(x)
        x = self.layer_2(x)
        x = self.layer_3(x)
        x = self.layer_4(x)
        x = self.layer_5(x)
        return self.conv_1x1_exp(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` float32 NCHW → ``(N, num_classes)`` logits."""
        return self.classifier(self.forward_features(x))


def hash_uniform(n: int, seed: int) -> torch.Tensor:
    """``n`` reproducible uniform values in ``[-1, 1)`` (float64) from an integer hash: exact on every platform."""
    h = (torch.arange(n, dtype=torch.int64) + seed * 0x9E3779B1) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & 0xFFFFFFFF
    h = h ^ (h >> 15)
    h = (h * 0x68E31DA5) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return h.to(torch.float64) / 2.0**31 - 1.0


def fill_deterministic_(module: nn.Module) -> nn.Module:
    """Overwrite every parameter and float buffer with reproducible pseudo-random values; returns ``module``.

    Independent of torch's random-number generators and exact on every platform (an integer hash of the element
    index, seeded by a CRC-32 of the ``state_dict`` key), so the same key layout gets the same values in any
    process and in the official implementations — which is how the reference outputs under
    ``tests/fixtures/official_keys`` were recorded. Unlike a fresh initialisation (BatchNorm at identity,
    classifier std 0.02), the logits then depend clearly on the input. With ``u`` uniform in ``[-1, 1)``:
    ``running_var`` ``0.75 + 0.25 u``; ``running_mean`` ``0.1 u``; 1-D ``weight`` ``1 + 0.2 u``; other 1-D
    tensors ``0.1 u``; position embeddings (``meta_pe*``) ``0.5 u``; tensors with ≥ 2 dims ``u · sqrt(3 / fan_in)``
    with ``fan_in = numel / shape[0]``. Integer buffers (``num_batches_tracked``) are left alone.
    """
    import zlib

    with torch.no_grad():
        for key, t in module.state_dict(keep_vars=True).items():
            if not torch.is_floating_point(t) or t.numel() == 0:
                continue
            u = hash_uniform(t.numel(), zlib.crc32(key.encode())).reshape(t.shape)
            leaf = key.rsplit(".", 1)[-1]
            if leaf == "running_var":
                val = 0.75 + 0.25 * u
            elif leaf == "running_mean":
                val = 0.1 * u
            elif leaf.startswith("meta_pe"):
                val = 0.5 * u
            elif t.dim() == 1:
                val = 1.0 + 0.2 * u if leaf == "weight" else 0.1 * u
            else:
                val = u * (3.0 / (t.numel() / t.shape[0])) ** 0.5
            t.copy_(val.to(t.dtype))
    return module
