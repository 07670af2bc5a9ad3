"""ParC plug-in variants: ParC-ResNet50, ParC-MobileNetV2 and ParC-ConvNeXt-XT ("GCC-" models of the paper).

Source: EdgeFormer paper (Zhang et al., "EdgeFormer: Improving Light-weight ConvNets by Learning from Vision
Transformers"), Section 4 and Table 3 ("We replaced convolutions in the last few blocks of typical CNNs with our
proposed GCC"), and the official code hkzhang91/ParC-Net ``ParC_ConvNets/`` (``ParC_resnet50.py``,
``ParC_mobilenetv2.py``, ``ParC_convnext.py``), which is the source of truth for every choice below:

* The ParC operator (:class:`ParCOperator`, official ``ParC_operator``) is a circular convolution along one
  axis with a kernel spanning that whole axis: ``(K, 1)`` for ``'H'``, ``(1, K)`` for ``'W'``, with a bias. It is
  computed cat-then-conv (``conv(cat([x, x[..., :-1]]))``, no padding), after adding an optional learned position
  embedding ``pe`` of shape ``(1, C, K, 1)`` / ``(1, C, 1, K)`` broadcast over the other axis. Unlike EdgeFormer's
  GCC there is **no** kernel or PE interpolation: ``K`` is the feature-map side at 224×224 input, so these
  models accept only 224×224 (cards say ``resizable: false``; other sizes raise :class:`ConfigError`).
* Each ParC block splits its hidden channels in two halves (official ``torch.chunk``; here a split with static
  sizes, same values): the first half goes through an ``'H'`` operator, the second through a ``'W'`` operator,
  and the halves are concatenated again.
* ParC-ResNet50 (``ParC_resnet50.py``: ``parc_res50``): bottlenecks from index 3 of ``layer3`` (K = 14) and from
  index 2 of ``layer4`` (K = 7) replace their 3×3 conv by the ParC pair; the operators are **dense**
  (``groups=1``, as the official file passes the ResNet's ``groups``), every ParC block has a PE.
* ParC-MobileNetV2 (``ParC_mobilenetv2.py``: ``parc_mv2``): in the 64-, 96- and 160-channel stages the blocks
  from index 2 on (K = 14, 14, 7) replace the 3×3 depthwise conv by depthwise ParC operators, followed by their
  own BN + ReLU6; only the first ParC block of a stage has a PE (``use_pe = i == gcc``).
* ParC-ConvNeXt-XT (``ParC_convnext.py``: ``parc_convnext_xt``): ConvNeXt with dims ``[48, 96, 192, 384]``;
  blocks 6–8 of stage 3 (K = 14) and block 2 of stage 4 (K = 7) replace the 7×7 depthwise conv by depthwise
  ParC operators with PE.

Attribute names mirror the official ones, so official state_dicts load without renaming (the tests compare
key-by-key against listings made from the official code). For export, :func:`lower_parc_operator` turns each
operator into :class:`ExportParCOperator` (PE as a constant buffer, no run-time shape guard); the graph is
Slice → Concat → Conv, with no Resize. The rewrite is thin because the official plug-ins compute nothing at run
time beyond broadcasting the PE; it is exact (bit-identical outputs).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from edgedeploy.cards import ModelCard
from edgedeploy.errors import ConfigError
from edgedeploy.nn.baselines import (
    Bottleneck,
    ConvBNReLU6,
    ConvNeXt,
    ConvNeXtBlock,
    ConvNeXtBlockBase,
    InvertedResidual,
    MobileNetV2,
    ResNet,
    check_hyper_keys,
    conv1x1,
    hyper_value,
)
from edgedeploy.nn.rewrites import register_lowering
from edgedeploy.zoo import check_input_size, register_family

__all__ = [
    "ExportParCOperator",
    "ParCBottleneck",
    "ParCConvNeXtBlock",
    "ParCInvertedResidual",
    "ParCOperator",
    "build_parc",
    "circular_conv",
    "lower_parc_operator",
]

Direction = Literal["H", "W"]


def circular_conv(x: Tensor, conv: nn.Conv2d, direction: Direction) -> Tensor:
    """Circular cross-correlation of ``x`` with ``conv`` along H or W, computed cat-then-conv.

    ``x``: ``(N, C, H, W)``; ``conv`` has kernel ``(H, 1)`` for ``'H'`` or ``(1, W)`` for ``'W'``, stride 1, no
    padding. ``x`` is extended by its first ``K - 1`` rows (columns) and convolved, so that
    ``y[..., i, :] = bias + Σ_k w[k] · x[..., (i + k) mod K, :]``; output ``(N, C_out, H, W)``. This is the
    official ``ParC_operator.forward`` (hkzhang91/ParC-Net ``ParC_ConvNets/``) and exports as Slice → Concat →
    Conv (never Pad(circular) or Roll, see TOOLCHAIN_NOTES).
    """
    if direction == "H":
        return conv(torch.cat((x, x[:, :, :-1, :]), dim=2))
    return conv(torch.cat((x, x[:, :, :, :-1]), dim=3))


class ParCOperator(nn.Module):
    """Position-aware circular convolution along one axis (hkzhang91/ParC-Net ``ParC_ConvNets/*.py``:
    ``ParC_operator``; EdgeFormer paper, Section 3.1, without kernel generation).

    ``gcc_conv``: ``nn.Conv2d(dim, dim, (K, 1) or (1, K), groups=groups, bias=True)``; ``pe`` (when ``use_pe``):
    a ``(1, dim, K, 1)`` (``'H'``) or ``(1, dim, 1, K)`` (``'W'``) parameter, truncated-normal std 0.02, added to
    the input before the convolution. ``groups`` defaults to ``dim`` (depthwise, as in ParC-MobileNetV2 and
    ParC-ConvNeXt); ParC-ResNet50 uses ``groups=1``.

    Input ``(N, dim, K, K)`` float32 NCHW → output ``(N, dim, K, K)``. Raises :class:`ConfigError` when the
    feature map is not ``K×K`` (the official code requires it: the PE is expanded to ``(1, dim, K, K)``; without
    PE a different size would silently change the output size).
    """

    def __init__(
        self, dim: int, direction: Direction, global_kernel_size: int, use_pe: bool = True, groups: int | None = None
    ) -> None:
        super().__init__()
        if direction not in ("H", "W"):
            raise ConfigError(f"ParC operator direction must be 'H' or 'W'; got {direction!r}")
        if global_kernel_size < 1 or dim < 1:
            raise ConfigError(f"ParC operator needs dim ≥ 1 and kernel ≥ 1; got dim={dim}, K={global_kernel_size}")
        self.direction: Direction = direction
        self.dim = dim
        self.global_kernel_size = global_kernel_size
        self.use_pe = use_pe
        self.groups = dim if groups is None else groups
        kernel = (global_kernel_size, 1) if direction == "H" else (1, global_kernel_size)
        self.gcc_conv = nn.Conv2d(dim, dim, kernel_size=kernel, groups=self.groups)
        self.pe: nn.Parameter | None
        if use_pe:
            self.pe = nn.Parameter(torch.empty(1, dim, *kernel))
            nn.init.trunc_normal_(self.pe, std=0.02)
        else:
            self.register_parameter("pe", None)

    def extra_repr(self) -> str:
        return f"direction={self.direction}, global_kernel_size={self.global_kernel_size}, use_pe={self.use_pe}"

    def _check_input(self, x: Tensor) -> None:
        k = self.global_kernel_size
        if x.dim() != 4 or x.shape[2] != k or x.shape[3] != k:
            raise ConfigError(
                f"ParC operator ({self.direction}, global kernel {k}) expects a feature map of {k}x{k}; got shape "
                f"{tuple(x.shape)}: the ParC plug-in kernels are fixed to the 224x224 training resolution"
            )

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_tracing():
            self._check_input(x)
        if self.pe is not None:
            x = x + self.pe
        return circular_conv(x, self.gcc_conv, self.direction)


class ExportParCOperator(nn.Module):
    """Export form of :class:`ParCOperator` for a fixed input shape: same computation, bit for bit.

    The PE is a buffer (a graph constant, no Expand), the size guard is gone (the shape is fixed by the export),
    and the graph is ``[Add(pe)] → Slice → Concat → Conv``. Input and output ``(N, dim, K, K)``.
    """

    def __init__(self, op: ParCOperator) -> None:
        super().__init__()
        self.direction: Direction = op.direction
        self.dim = op.dim
        self.global_kernel_size = op.global_kernel_size
        self.gcc_conv = op.gcc_conv
        self.pe: Tensor | None
        if op.pe is not None:
            self.register_buffer("pe", op.pe.detach().clone())
        else:
            self.pe = None

    def forward(self, x: Tensor) -> Tensor:
        if self.pe is not None:
            x = x + self.pe
        return circular_conv(x, self.gcc_conv, self.direction)


@register_lowering(ParCOperator)
def lower_parc_operator(module: nn.Module, input_shape: tuple[int, ...], target: str) -> nn.Module:
    """Rewrite a :class:`ParCOperator` into :class:`ExportParCOperator` for every target.

    Raises :class:`ConfigError` when ``input_shape`` (the ``(N, C, H, W)`` the operator sees at the export
    resolution) is not ``K×K``.
    """
    if not isinstance(module, ParCOperator):
        raise TypeError(f"lower_parc_operator expects a ParCOperator; got {type(module).__name__}")
    module._check_input(torch.empty(input_shape, device="meta"))
    return ExportParCOperator(module)


def _split_hw(
    x: Tensor, parc_h: ParCOperator | ExportParCOperator, parc_w: ParCOperator | ExportParCOperator
) -> Tensor:
    """Channel halves through the H and W operators, concatenated (official ``ParC_*`` blocks' forward).

    The official ``torch.chunk(x, 2, dim=1)`` is written as a split with the static sizes of the two operators
    (equal halves; the blocks require an even channel count), which exports as one Split node instead of a
    Shape/Gather/Div/Slice chain.
    """
    x_h, x_w = torch.split(x, [parc_h.dim, parc_w.dim], dim=1)
    return torch.cat((parc_h(x_h), parc_w(x_w)), dim=1)


def _check_even(width: int, where: str) -> None:
    if width % 2:
        raise ConfigError(f"{where}: the ParC pair splits {width} channels in two halves; needs an even count")


class ParCBottleneck(nn.Module):
    """ResNet bottleneck whose 3×3 conv is replaced by a dense ParC pair (hkzhang91/ParC-Net
    ``ParC_ConvNets/ParC_resnet50.py``: ``ParC_block``).

    ``conv1`` 1×1 → BN → ReLU → split: ``parc_H`` / ``parc_W`` (``width/2`` channels each, ``groups=1``, PE) →
    concat → ``bn2`` → ReLU → ``conv3`` 1×1 (×4) → ``bn3`` → + identity → ReLU. Stride 1, no downsample (the
    official code only places it after a stage's first block). Input and output ``(N, 4·planes, K, K)``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, global_kernel_size: int, use_pe: bool = True) -> None:
        super().__init__()
        width = planes
        _check_even(width, "ParCBottleneck")
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.parc_H = ParCOperator(width // 2, "H", global_kernel_size, use_pe, groups=1)
        self.parc_W = ParCOperator(width // 2, "W", global_kernel_size, use_pe, groups=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        self.stride = 1

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(_split_hw(out, self.parc_H, self.parc_W)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + x)


class ParCInvertedResidual(nn.Module):
    """MobileNetV2 block whose 3×3 depthwise conv is replaced by a depthwise ParC pair (hkzhang91/ParC-Net
    ``ParC_ConvNets/ParC_mobilenetv2.py``: ``InvertedResidual_parc``).

    ``pw_expand`` (1×1 conv, BN, ReLU6) → split: ``gcc_H`` / ``gcc_W`` (``hidden/2`` channels each, depthwise,
    PE only if ``use_pe``) → concat → ``bn`` → ``act`` (ReLU6) → ``pw_linear`` (1×1 conv, BN) → + input when
    ``inp == oup``. Stride 1. Input ``(N, inp, K, K)``, output ``(N, oup, K, K)``.
    """

    def __init__(self, inp: int, oup: int, expand_ratio: int, global_kernel_size: int, use_pe: bool) -> None:
        super().__init__()
        hidden_dim = round(inp * expand_ratio)
        _check_even(hidden_dim, "ParCInvertedResidual")
        self.stride = 1
        self.use_res_connect = inp == oup
        self.pw_expand = ConvBNReLU6(inp, hidden_dim, kernel_size=1)
        self.gcc_H = ParCOperator(hidden_dim // 2, "H", global_kernel_size, use_pe)
        self.gcc_W = ParCOperator(hidden_dim // 2, "W", global_kernel_size, use_pe)
        self.bn = nn.BatchNorm2d(hidden_dim)
        self.act = nn.ReLU6()
        self.pw_linear = nn.Sequential(nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup))
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        y = self.pw_expand(x)
        y = self.pw_linear(self.act(self.bn(_split_hw(y, self.gcc_H, self.gcc_W))))
        return x + y if self.use_res_connect else y


class ParCConvNeXtBlock(ConvNeXtBlockBase):
    """ConvNeXt block whose 7×7 depthwise conv is replaced by a depthwise ParC pair with PE (hkzhang91/ParC-Net
    ``ParC_ConvNets/ParC_convnext.py``: ``ParC_ConvNext_Block``).

    ``gcc_H`` / ``gcc_W`` on the channel halves → concat → LayerNorm → Linear 4× → GELU → Linear → ``gamma`` →
    residual. Input and output ``(N, dim, K, K)``.
    """

    def __init__(self, dim: int, global_kernel_size: int, use_pe: bool = True, layer_scale_init_value: float = 1e-6):
        super().__init__()
        _check_even(dim, "ParCConvNeXtBlock")
        self.gcc_H = ParCOperator(dim // 2, "H", global_kernel_size, use_pe)
        self.gcc_W = ParCOperator(dim // 2, "W", global_kernel_size, use_pe)
        self._init_channel_mlp(dim, layer_scale_init_value)

    def mix(self, x: Tensor) -> Tensor:
        return _split_hw(x, self.gcc_H, self.gcc_W)


# -------------------------------------------------------------------------------------------------- builder

#: output stride of each stage (for the kernel-size check): ResNet layer1-4; MobileNetV2 setting rows; ConvNeXt
_STAGE_STRIDES = {
    "resnet50": (4, 8, 16, 32),
    "mobilenetv2": (2, 4, 8, 16, 16, 32, 32),
    "convnext": (4, 8, 16, 32),
}


def _stage_lists(card: ModelCard, arch: str, input_size: int) -> tuple[list[int], list[int | None]]:
    """``parc_insert_locs`` and ``global_kernel_sizes`` from the card, checked against the feature sizes."""
    where = f"model card {card.path or card.name}"
    strides = _STAGE_STRIDES[arch]
    locs = hyper_value(card, "parc_insert_locs")
    ks = hyper_value(card, "global_kernel_sizes")
    n = len(strides)
    if not isinstance(locs, list) or len(locs) != n or not all(isinstance(v, int) and v >= 0 for v in locs):
        raise ConfigError(f"{where}: field 'hyper.parc_insert_locs' must be a list of {n} non-negative ints")
    if not isinstance(ks, list) or len(ks) != n or not all(v is None or isinstance(v, int) for v in ks):
        raise ConfigError(f"{where}: field 'hyper.global_kernel_sizes' must be a list of {n} ints (or nulls)")
    if arch != "convnext" and min(locs) < 1:
        raise ConfigError(
            f"{where}: field 'hyper.parc_insert_locs' must be ≥ 1 for {arch}: a stage's first block strides or "
            "projects the residual, which the official ParC blocks cannot (ParC_resnet50.py / ParC_mobilenetv2.py)"
        )
    for i, (k, s) in enumerate(zip(ks, strides, strict=True)):
        if k is not None and k != input_size // s:
            raise ConfigError(
                f"{where}: field 'hyper.global_kernel_sizes[{i}]' is {k} but stage {i} sees "
                f"{input_size // s}x{input_size // s} feature maps at input {input_size}"
            )
    return locs, ks


def _kernel(card: ModelCard, ks: list[int | None], stage: int) -> int:
    k = ks[stage]
    if k is None:
        raise ConfigError(
            f"model card {card.path or card.name}: field 'hyper.global_kernel_sizes[{stage}]' is null but stage "
            f"{stage} has ParC blocks (see hyper.parc_insert_locs)"
        )
    return k


@register_family("parc")
def build_parc(card: ModelCard, input_size: int) -> nn.Module:
    """Build a ParC plug-in model from its card (``hyper.arch``: ``resnet50``, ``mobilenetv2`` or ``convnext``).

    ``hyper.parc_insert_locs[s]`` is the index of the first ParC block in stage ``s`` (the official
    ``ParC_insert_locs`` / ``parc_insert_locs`` / ``gcc`` lists; at least 1 for ResNet and MobileNetV2, whose
    first block in a stage strides); ``hyper.global_kernel_sizes[s]`` is
    that stage's ParC kernel ``K``, which must equal the stage's feature side at ``input_size``. ``convnext`` also
    needs ``depths`` and ``dims``; ``mobilenetv2`` takes ``width_mult`` (default 1.0).

    Returns a module mapping ``(N, 3, 224, 224)`` float32 NCHW to ``(N, card.num_classes)``. Raises
    :class:`ConfigError` for another input size (the cards are ``resizable: false``), an unknown arch or field,
    or inconsistent stage lists.
    """
    check_input_size(card, input_size)
    arch = hyper_value(card, "arch")
    if arch not in _STAGE_STRIDES:
        raise ConfigError(
            f"model card {card.path or card.name}: field 'hyper.arch': unknown ParC arch '{arch}' "
            f"(known: {', '.join(_STAGE_STRIDES)})"
        )
    locs, ks = _stage_lists(card, str(arch), input_size)

    def is_parc(stage: int, index: int) -> bool:
        return index >= locs[stage]

    if arch == "resnet50":
        check_hyper_keys(card, {"arch", "layers", "parc_insert_locs", "global_kernel_sizes"})

        def resnet_block(
            stage: int, index: int, inplanes: int, planes: int, stride: int, downsample: nn.Module | None
        ) -> nn.Module:
            if is_parc(stage, index):
                return ParCBottleneck(inplanes, planes, _kernel(card, ks, stage), use_pe=True)
            return Bottleneck(inplanes, planes, stride, downsample)

        layers = hyper_value(card, "layers", [3, 4, 6, 3])
        if not isinstance(layers, list):
            raise ConfigError(f"model card {card.path or card.name}: field 'hyper.layers' must be a list of 4 ints")
        return ResNet(layers, num_classes=card.num_classes, make_block=resnet_block)

    if arch == "mobilenetv2":
        check_hyper_keys(card, {"arch", "width_mult", "parc_insert_locs", "global_kernel_sizes"})

        def mv2_block(stage: int, index: int, inp: int, oup: int, stride: int, t: int) -> nn.Module:
            if is_parc(stage, index):
                # PE only in the first ParC block of a stage: official ``use_pe=True if i == gcc else False``
                return ParCInvertedResidual(inp, oup, t, _kernel(card, ks, stage), use_pe=index == locs[stage])
            return InvertedResidual(inp, oup, stride, t)

        width_mult = float(hyper_value(card, "width_mult", 1.0))  # type: ignore[arg-type]
        return MobileNetV2(num_classes=card.num_classes, width_mult=width_mult, make_block=mv2_block)

    check_hyper_keys(card, {"arch", "depths", "dims", "parc_insert_locs", "global_kernel_sizes"})

    def convnext_block(stage: int, index: int, dim: int) -> nn.Module:
        if is_parc(stage, index):
            return ParCConvNeXtBlock(dim, _kernel(card, ks, stage), use_pe=True)
        return ConvNeXtBlock(dim)

    depths, dims = hyper_value(card, "depths"), hyper_value(card, "dims")
    if not (isinstance(depths, list) and isinstance(dims, list)):
        raise ConfigError(f"model card {card.path or card.name}: fields 'hyper.depths' and 'hyper.dims' must be lists")
    return ConvNeXt(depths, dims, num_classes=card.num_classes, make_block=convnext_block)
