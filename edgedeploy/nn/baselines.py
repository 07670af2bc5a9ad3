"""Plain baselines of the ParC plug-in experiments: ResNet50, MobileNetV2 and ConvNeXt-XT.

These are the "before" models of the EdgeFormer paper, Table 3 (rows 5, 7, 9) and the EdgeFormer README's
"Applying EdgeFormer designs on various lightweight backbones" table. Each class follows its official
definition, with the official attribute names so that official checkpoints load without renaming:

* ResNet50 — torchvision ``torchvision/models/resnet.py`` (``resnet50``: Bottleneck, layers ``[3, 4, 6, 3]``,
  stride on the 3×3 conv of the bottleneck, i.e. "ResNet v1.5"); He et al., CVPR 2016.
* MobileNetV2 — torchvision ``torchvision/models/mobilenetv2.py`` (``mobilenet_v2``, width 1.0, ReLU6,
  last channel 1280, dropout 0.2 before the classifier); Sandler et al., CVPR 2018.
* ConvNeXt-XT — facebookresearch/ConvNeXt ``models/convnext.py`` with ``depths=[3, 3, 9, 3]`` and
  ``dims=[48, 96, 192, 384]``, the configuration hkzhang91/ParC-Net ``ParC_ConvNets/ParC_convnext.py``
  (``parc_convnext_xt``) builds; the paper calls it "ConvNext-T (0.5×W)".

The ParC variants (:mod:`edgedeploy.nn.parc`) subclass nothing here but reuse these classes through their
``make_block`` hooks, exactly as the official ParC files replace the last blocks of chosen stages.

All models map a float32 NCHW batch ``(N, 3, H, W)`` to logits ``(N, num_classes)``; they take any input side
that is a multiple of 32 (global average pooling before the classifier). Stochastic depth and dropout are
training-time only: dropout is kept as an ``nn.Dropout`` (identity in eval) to keep the official key indices;
drop-path (rate 0 in the official ConvNeXt-XT configuration) is omitted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgedeploy.cards import ModelCard
from edgedeploy.errors import ConfigError
from edgedeploy.zoo import check_input_size, register_family

__all__ = [
    "Bottleneck",
    "ConvBNReLU6",
    "ConvNeXt",
    "ConvNeXtBlock",
    "ConvNeXtBlockBase",
    "InvertedResidual",
    "LayerNorm",
    "MobileNetV2",
    "ResNet",
    "build_baseline",
    "make_divisible",
]


# --------------------------------------------------------------------------------------------------- ResNet


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution without bias (torchvision ``resnet.py``: ``conv1x1``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, without bias (torchvision ``resnet.py``: ``conv3x3``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    """ResNet bottleneck ``1×1 → 3×3 (stride) → 1×1 (×4)`` with BN + ReLU and a residual (torchvision ``resnet.py``).

    Input ``(N, inplanes, H, W)``; output ``(N, 4·planes, H/stride, W/stride)``. ``downsample`` (1×1 conv with
    ``stride`` + BN) projects the identity when the shape changes.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: ``make_block(stage, index, inplanes, planes, stride, downsample) -> module``; stage counts from 0 (layer1)
ResNetBlockFactory = Callable[[int, int, int, int, int, nn.Module | None], nn.Module]


def _plain_bottleneck(
    stage: int, index: int, inplanes: int, planes: int, stride: int, downsample: nn.Module | None
) -> nn.Module:
    return Bottleneck(inplanes, planes, stride, downsample)


class ResNet(nn.Module):
    """ResNet with bottleneck blocks (torchvision ``resnet.py``: ``ResNet``).

    Stem: 7×7/2 conv, BN, ReLU, 3×3/2 max-pool; stages ``layer1..layer4`` with 64, 128, 256, 512 planes
    (outputs ×4) at strides 4, 8, 16, 32; global average pool; ``fc``. Input ``(N, 3, H, W)``, H and W
    multiples of 32; output ``(N, num_classes)``.

    ``make_block`` builds each block of each stage (default: :class:`Bottleneck`); the ParC variant replaces the
    last blocks of stages 3 and 4 through it (hkzhang91/ParC-Net ``ParC_resnet50.py``: ``_make_mix_layer``).
    Initialisation as torchvision: Kaiming-normal (fan-out, ReLU) convs, BN weight 1 and bias 0.
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        make_block: ResNetBlockFactory = _plain_bottleneck,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ConfigError(f"ResNet needs 4 positive stage depths; got {list(layers)}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(0, 64, layers[0], 1, make_block)
        self.layer2 = self._make_layer(1, 128, layers[1], 2, make_block)
        self.layer3 = self._make_layer(2, 256, layers[2], 2, make_block)
        self.layer4 = self._make_layer(3, 512, layers[3], 2, make_block)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self, stage: int, planes: int, blocks: int, stride: int, make_block: ResNetBlockFactory
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [make_block(stage, 0, self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [make_block(stage, i, self.inplanes, planes, 1, None) for i in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` → ``(N, num_classes)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------------------------------------- MobileNetV2


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10 % down (torchvision ``_utils.py``)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """``Conv2d (no bias, 'same' padding) → BatchNorm2d → ReLU6`` as a Sequential (keys ``0``, ``1``).

    torchvision ``ops/misc.py``: ``ConvNormActivation`` as MobileNetV2 uses it. Input ``(N, C_in, H, W)``,
    output ``(N, C_out, H/stride, W/stride)``.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_planes


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand (if ``expand_ratio`` ≠ 1) → 3×3 depthwise (stride) → 1×1 linear, residual
    when ``stride == 1`` and ``inp == oup`` (torchvision ``mobilenetv2.py``: ``InvertedResidual``; keys ``conv.*``).

    Input ``(N, inp, H, W)``; output ``(N, oup, H/stride, W/stride)``.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"InvertedResidual stride must be 1 or 2; got {stride}")
        self.stride = stride
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden_dim, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


#: ``make_block(stage, index, inp, oup, stride, expand_ratio) -> module``; stage indexes the setting rows
MobileNetV2BlockFactory = Callable[[int, int, int, int, int, int], nn.Module]

#: (t, c, n, s): expansion, output channels, repeats, first stride — MobileNetV2 paper, Table 2
MOBILENETV2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _plain_inverted_residual(stage: int, index: int, inp: int, oup: int, stride: int, t: int) -> nn.Module:
    return InvertedResidual(inp, oup, stride, t)


class MobileNetV2(nn.Module):
    """MobileNetV2 (torchvision ``mobilenetv2.py``: ``MobileNetV2``; Sandler et al., CVPR 2018, Table 2).

    ``features``: 3×3/2 stem (32 ch), 17 inverted residual blocks, 1×1 conv to 1280; global average pool;
    ``classifier`` = Dropout(0.2), Linear. Input ``(N, 3, H, W)``, H and W multiples of 32; output
    ``(N, num_classes)``. ``make_block`` builds each block (default :class:`InvertedResidual`); the ParC variant
    substitutes blocks through it. Initialisation as torchvision.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        make_block: MobileNetV2BlockFactory = _plain_inverted_residual,
        round_nearest: int = 8,
    ) -> None:
        super().__init__()
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNReLU6(3, input_channel, stride=2)]
        for stage, (t, c, n, s) in enumerate(MOBILENETV2_SETTING):
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(make_block(stage, i, input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(ConvBNReLU6(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` → ``(N, num_classes)``."""
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.classifier(x)


# ------------------------------------------------------------------------------------------------- ConvNeXt


class LayerNorm(nn.Module):
    """LayerNorm over channels for ``channels_last`` ``(N, H, W, C)`` or ``channels_first`` ``(N, C, H, W)``.

    facebookresearch/ConvNeXt ``models/convnext.py``: ``LayerNorm`` — channels-first is computed explicitly
    (biased variance, ``eps`` inside the square root), which exports without a LayerNormalization op.
    Raises :class:`ConfigError` for another ``data_format``.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-6, data_format: str = "channels_last") -> None:
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ConfigError(f"LayerNorm data_format must be channels_last or channels_first; got {data_format!r}")
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: Tensor) -> Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlockBase(nn.Module):
    """Shared tail of ConvNeXt-style blocks: token mixer → LayerNorm → Linear 4× → GELU → Linear → layer scale
    ``gamma`` → residual (facebookresearch/ConvNeXt ``models/convnext.py``: ``Block.forward``).

    Subclasses register their mixer's modules, then call :meth:`_init_channel_mlp` (keeping the official
    state_dict order), and implement :meth:`mix`. Input and output ``(N, dim, H, W)``; the MLP runs
    channels-last ``(N, H, W, dim)``.
    """

    def _init_channel_mlp(self, dim: int, layer_scale_init_value: float) -> None:
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma: nn.Parameter | None = (
            nn.Parameter(layer_scale_init_value * torch.ones(dim)) if layer_scale_init_value > 0 else None
        )

    def mix(self, x: Tensor) -> Tensor:
        """The token mixer: ``(N, dim, H, W)`` → ``(N, dim, H, W)``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        y = self.mix(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtBlock(ConvNeXtBlockBase):
    """ConvNeXt block with a 7×7 depthwise conv (bias) as mixer (facebookresearch/ConvNeXt ``models/convnext.py``:
    ``Block``; Liu et al., CVPR 2022, Fig. 4). Input and output ``(N, dim, H, W)``.
    """

    def __init__(self, dim: int, layer_scale_init_value: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self._init_channel_mlp(dim, layer_scale_init_value)

    def mix(self, x: Tensor) -> Tensor:
        return self.dwconv(x)


#: ``make_block(stage, index, dim) -> module``
ConvNeXtBlockFactory = Callable[[int, int, int], nn.Module]


def _plain_convnext_block(stage: int, index: int, dim: int) -> nn.Module:
    return ConvNeXtBlock(dim)


class ConvNeXt(nn.Module):
    """ConvNeXt (facebookresearch/ConvNeXt ``models/convnext.py``: ``ConvNeXt``).

    ``downsample_layers[0]``: 4×4/4 patchify conv + channels-first LayerNorm; ``downsample_layers[1..3]``:
    LayerNorm + 2×2/2 conv; ``stages[i]``: ``depths[i]`` blocks of width ``dims[i]`` at strides 4, 8, 16, 32;
    global average pool, LayerNorm ``norm``, Linear ``head``. Input ``(N, 3, H, W)``, H and W multiples of 32;
    output ``(N, num_classes)``. Initialisation as the official code: truncated normal (std 0.02) for conv and
    linear weights, zero biases.
    """

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (48, 96, 192, 384),
        num_classes: int = 1000,
        make_block: ConvNeXtBlockFactory = _plain_convnext_block,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(dims) != 4:
            raise ConfigError(f"ConvNeXt needs 4 depths and 4 dims; got depths={list(depths)} dims={list(dims)}")
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm(dims[0], 1e-6, "channels_first"))]
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm(dims[i], 1e-6, "channels_first"), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)
                )
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*[make_block(i, j, dims[i]) for j in range(depths[i])]) for i in range(4)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` → ``(N, num_classes)``."""
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        return self.head(self.norm(x.mean([-2, -1])))


# -------------------------------------------------------------------------------------------------- builder


def hyper_value(card: ModelCard, key: str, default: object = ...) -> object:
    """``card.hyper[key]``; :class:`ConfigError` naming the card file and field when it is missing."""
    if key in card.hyper:
        return card.hyper[key]
    if default is ...:
        raise ConfigError(f"model card {card.path or card.name}: field 'hyper.{key}' is required")
    return default


def check_hyper_keys(card: ModelCard, allowed: set[str]) -> None:
    """Raise :class:`ConfigError` naming the card and the first unknown ``hyper`` field."""
    unknown = sorted(set(card.hyper) - allowed)
    if unknown:
        raise ConfigError(
            f"model card {card.path or card.name}: field 'hyper.{unknown[0]}' is not a parameter of "
            f"arch '{card.hyper.get('arch')}' (known: {', '.join(sorted(allowed))})"
        )


def _int_list(card: ModelCard, key: str, length: int) -> list[int]:
    value = hyper_value(card, key)
    if not isinstance(value, list) or len(value) != length or not all(isinstance(v, int) for v in value):
        raise ConfigError(f"model card {card.path or card.name}: field 'hyper.{key}' must be a list of {length} ints")
    return value


@register_family("baseline")
def build_baseline(card: ModelCard, input_size: int) -> nn.Module:
    """Build a plain baseline from its card: ``hyper.arch`` is ``resnet50``, ``mobilenetv2`` or ``convnext``.

    ``resnet50`` takes ``layers`` (default ``[3, 4, 6, 3]``); ``mobilenetv2`` takes ``width_mult`` (default 1.0);
    ``convnext`` needs ``depths`` and ``dims``. Returns an eval-ready module mapping ``(N, 3, S, S)`` float32 NCHW
    (``S = input_size``, a multiple of 32) to ``(N, card.num_classes)``.

    Raises :class:`ConfigError` for an unknown arch or hyper field, or an unsupported input size.
    """
    check_input_size(card, input_size)
    arch = hyper_value(card, "arch")
    if arch == "resnet50":
        check_hyper_keys(card, {"arch", "layers"})
        layers = _int_list(card, "layers", 4) if "layers" in card.hyper else [3, 4, 6, 3]
        return ResNet(layers, num_classes=card.num_classes)
    if arch == "mobilenetv2":
        check_hyper_keys(card, {"arch", "width_mult"})
        return MobileNetV2(num_classes=card.num_classes, width_mult=float(hyper_value(card, "width_mult", 1.0)))
    if arch == "convnext":
        check_hyper_keys(card, {"arch", "depths", "dims"})
        return ConvNeXt(_int_list(card, "depths", 4), _int_list(card, "dims", 4), num_classes=card.num_classes)
    raise ConfigError(
        f"model card {card.path or card.name}: field 'hyper.arch': unknown baseline '{arch}' "
        "(known: resnet50, mobilenetv2, convnext)"
    )
