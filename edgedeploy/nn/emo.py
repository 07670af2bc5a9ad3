"""EMO (Zhang et al., "Rethinking Mobile Block for Efficient Attention-based Models", ICCV 2023).

Architecture follows the official implementation, ``zhangzjn/EMO`` ``model/emo.py`` and ``model/basic_modules.py``
(commit ``27d9b40fea9c2a12a2fe7acc51032184852a99d8``); module and parameter names mirror it, so official checkpoints
(``net`` / ``net_E`` dicts, see :func:`edgedeploy.zoo.load_weights`) load without renaming. Written from the paper
and the official code's structure, not copied.

Layout, all tensors float32 NCHW:

* ``stage0``: stem conv 3×3 stride 2 (+ bias) → BatchNorm (official ``MSPatchEmb`` with one dilation and no
  activation), then an :class:`iRMB` without norm, attention or skip: depth-wise 3×3 conv + BN + SiLU and a
  squeeze-excite with ratio 1 (SiLU inside, sigmoid gate);
* ``stage1``–``stage4``: ``depths[i]`` :class:`iRMB` s; the first of each stage down-samples (stride-2 depth-wise
  conv, expansion ratio doubled, no skip, no attention); the others have a skip and, in stages 3–4
  (``attn_ss = [False, False, True, True]``), EW-MHSA (paper Sec. 2.3, "Improved EW-MHSA");
* head: LayerNorm2d (the last stage's norm), global average pool, Linear → ``(N, num_classes)`` logits.

Where the official code binds norms and activations (paper Sec. 2.3 / Tab. 4, ``EMO_*M`` functions):
``norm_layers = [bn_2d, bn_2d, ln_2d, ln_2d]`` is the block-input norm of each stage (BatchNorm2d / channel
LayerNorm, both eps 1e-6); ``act_layers = [silu, silu, gelu, gelu]`` is the activation of the value projection ``v``
(and of the stem's squeeze-excite); the depth-wise ``conv_local`` is *always* conv → BatchNorm2d (eps 1e-6) → SiLU;
``qk`` and ``proj`` are bare 1×1 convs (``qk`` with bias, ``proj`` without).

EW-MHSA (:meth:`iRMB.attention`): the normed input is zero-padded on the right / bottom to a multiple of the window
size (7), then split into windows laid out as *strided grids*: with ``n1 = Hp/7`` and ``n2 = Wp/7`` windows per
axis, window ``(i, j)`` holds the pixels ``(i + n1·a, j + n2·b)`` for ``a, b ∈ [0, 7)`` (official einops pattern
``b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1``), not contiguous 7×7 tiles. Attention ``softmax(q kᵀ · d^-0.5)`` with
``q = k`` from the unexpanded input (``qk`` conv); with ``attn_pre`` (all variants) it is applied to the unexpanded
input and then expanded by ``v``; padded pixels take part as keys, then are cropped.

Parameter counts (exact, official builders run outside the repo): EMO-1M 1,361,168; 2M 2,377,472; 5M 5,108,848;
6M 6,168,496 (paper 1.3M / 2.3M / 5.1M / 6.1M, EMO paper Tab. 7).

Export lowering: :func:`lower_irmb` replaces each attention :class:`iRMB` with :class:`LoweredIRMB` for the recorded
input: static shapes, explicit matmul + softmax, and per target either 4-D window partition / merge or the 6-D
form with the windows merged before the (per-pixel) value projection.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgedeploy.cards import ModelCard
from edgedeploy.errors import ConfigError
from edgedeploy.nn.layers import vit_init
from edgedeploy.zoo import register_family

__all__ = [
    "EMO",
    "ConvNormAct",
    "LayerNorm2d",
    "MSPatchEmb",
    "SqueezeExcite",
    "build_emo",
    "iRMB",
    "window_merge",
    "window_merge_4d",
    "window_partition",
    "window_partition_4d",
]

EPS = 1e-6  # official get_norm(): every BatchNorm / LayerNorm of EMO uses eps 1e-6


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW map (official ``LayerNorm2d``, eps 1e-6): NCHW → NCHW."""

    def __init__(self, dim: int, eps: float = EPS) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def make_norm(kind: str, dim: int) -> nn.Module:
    """``'none' | 'bn_2d' | 'ln_2d'`` → module (official ``get_norm``, eps 1e-6); :class:`ConfigError` otherwise."""
    if kind == "none":
        return nn.Identity()
    if kind == "bn_2d":
        return nn.BatchNorm2d(dim, eps=EPS)
    if kind == "ln_2d":
        return LayerNorm2d(dim)
    raise ConfigError(f"EMO: unknown norm layer '{kind}' (known: none, bn_2d, ln_2d)")


def make_act(kind: str) -> nn.Module:
    """``'none' | 'relu' | 'silu' | 'gelu' | 'sigmoid'`` → module (official ``get_act``; GELU is the exact erf form)."""
    acts: dict[str, type[nn.Module]] = {
        "none": nn.Identity,
        "relu": nn.ReLU,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
        "sigmoid": nn.Sigmoid,
    }
    if kind not in acts:
        raise ConfigError(f"EMO: unknown activation '{kind}' (known: {', '.join(acts)})")
    return acts[kind]()


class ConvNormAct(nn.Module):
    """``Conv2d → norm → act`` (official ``ConvNormAct``; padding ``ceil((k - stride) / 2)``), NCHW → NCHW."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        norm: str = "bn_2d",
        act: str = "relu",
    ) -> None:
        super().__init__()
        padding = math.ceil((kernel_size - stride) / 2)
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size, stride, padding, groups=groups, bias=bias)
        self.norm = make_norm(norm, dim_out)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class MSPatchEmb(nn.Module):
    """Stem (official ``MSPatchEmb`` with ``dilations=[1]``, ``c_group=1``, no activation): conv → norm.

    ``(N, C_in, H, W) → (N, C_out, ceil(H/stride), ceil(W/stride))``; padding ``ceil((k - stride) / 2)``; the conv
    has a bias. Kept as ``convs[0] = Sequential(conv, norm, Identity)`` for the official parameter names.
    """

    def __init__(self, dim_in: int, dim_out: int, kernel_size: int, stride: int, norm: str) -> None:
        super().__init__()
        padding = math.ceil((kernel_size - stride) / 2)
        self.convs = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(dim_in, dim_out, kernel_size, stride, padding), make_norm(norm, dim_out), nn.Identity()
                )
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs[0](x)


class SqueezeExcite(nn.Module):
    """Squeeze-excite as timm's ``efficientnet_blocks.SqueezeExcite`` (used by the official stem iRMB).

    ``x * sigmoid(conv_expand(act(conv_reduce(mean_hw(x)))))``, reduced width ``round(C · rd_ratio)``.
    NCHW → NCHW.
    """

    def __init__(self, dim: int, rd_ratio: float, act: str) -> None:
        super().__init__()
        rd = round(dim * rd_ratio)
        self.conv_reduce = nn.Conv2d(dim, rd, 1)
        self.act1 = make_act(act)
        self.conv_expand = nn.Conv2d(rd, dim, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.conv_expand(self.act1(self.conv_reduce(s))))


# ---------------------------------------------------------------------------------------------------------------------
# strided-grid windows


def window_partition(x: torch.Tensor, ws_h: int, ws_w: int) -> torch.Tensor:
    """Strided-grid windows of a padded NCHW map (official ``'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1'``).

    ``x``: ``(B, C, ws_h·n1, ws_w·n2)`` → ``(B·n1·n2, C, ws_h, ws_w)``; window ``b·n1·n2 + i·n2 + j`` holds the
    pixels ``x[b, :, i::n1, j::n2]``. Uses a 6-D view (training-time form; see :func:`window_partition_4d`).
    """
    B, C, Hp, Wp = x.shape
    n1, n2 = Hp // ws_h, Wp // ws_w
    return x.view(B, C, ws_h, n1, ws_w, n2).permute(0, 3, 5, 1, 2, 4).reshape(B * n1 * n2, C, ws_h, ws_w)


def window_merge(x: torch.Tensor, n1: int, n2: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B·n1·n2, C, h, w) → (B, C, h·n1, w·n2)``."""
    b, C, h, w = x.shape
    B = b // (n1 * n2)
    return x.view(B, n1, n2, C, h, w).permute(0, 3, 4, 1, 5, 2).reshape(B, C, h * n1, w * n2)


def window_partition_4d(x: torch.Tensor, B: int, C: int, ws_h: int, ws_w: int, n1: int, n2: int) -> torch.Tensor:
    """Same result as :func:`window_partition` with every intermediate tensor at most 4-D and static shapes.

    ``(B, C, ws_h·n1, ws_w·n2) → (B·n1·n2, C, ws_h, ws_w)``: split rows into ``(h1, n1)`` and bring ``n1`` forward,
    split columns into ``(w1, n2)`` and bring ``n2`` forward, then move the ``(n1, n2)`` window index in front of
    the channels.
    """
    Wp = ws_w * n2
    a = x.reshape(B * C, ws_h, n1, Wp).permute(0, 2, 1, 3)  # (B·C, n1, h1, Wp)
    a = a.reshape(B * C * n1, ws_h, ws_w, n2).permute(0, 3, 1, 2)  # (B·C·n1, n2, h1, w1)
    a = a.reshape(B, C, n1 * n2, ws_h * ws_w).permute(0, 2, 1, 3)  # (B, n1·n2, C, h1·w1)
    return a.reshape(B * n1 * n2, C, ws_h, ws_w)


def window_merge_4d(x: torch.Tensor, B: int, C: int, ws_h: int, ws_w: int, n1: int, n2: int) -> torch.Tensor:
    """Inverse of :func:`window_partition_4d` (≤ 4-D, static).

    ``(B·n1·n2, C, ws_h, ws_w) → (B, C, ws_h·n1, ws_w·n2)``.
    """
    a = x.reshape(B, n1 * n2, C, ws_h * ws_w).permute(0, 2, 1, 3)  # (B, C, n1·n2, h1·w1)
    a = a.reshape(B * C * n1, n2, ws_h, ws_w).permute(0, 2, 3, 1)  # (B·C·n1, h1, w1, n2)
    a = a.reshape(B * C, n1, ws_h, ws_w * n2).permute(0, 2, 1, 3)  # (B·C, h1, n1, Wp)
    return a.reshape(B, C, ws_h * n1, ws_w * n2)


def window_padding(H: int, W: int, window_size: int) -> tuple[int, int, int, int, int, int]:
    """``(ws_h, ws_w, pad_b, pad_r, n1, n2)`` for an H×W map; ``window_size <= 0`` means one global window."""
    ws_h, ws_w = (H, W) if window_size <= 0 else (window_size, window_size)
    pad_b = (ws_h - H % ws_h) % ws_h
    pad_r = (ws_w - W % ws_w) % ws_w
    return ws_h, ws_w, pad_b, pad_r, (H + pad_b) // ws_h, (W + pad_r) // ws_w


class iRMB(nn.Module):  # the official class name
    """Inverted Residual Mobile Block (paper Sec. 2.3, Fig. 3; official ``iRMB``): NCHW → NCHW.

    ``x → norm → [EW-MHSA + v  |  v] → (+) DW-conv(k, stride) + BN + SiLU → [SE] → proj``, with the outer skip
    when ``dim_in == dim_out``, ``stride == 1`` and ``has_skip``; the same condition adds the inner skip around the
    depth-wise conv ("DW-Conv with a skip connection", paper Sec. 2.3). Output
    ``(N, dim_out, ceil(H/stride), ceil(W/stride))``. With ``attn_s`` the number of heads is
    ``dim_in // dim_head`` (:class:`ConfigError` when it does not divide).
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        norm_in: bool = True,
        has_skip: bool = True,
        exp_ratio: float = 1.0,
        norm_layer: str = "bn_2d",
        act_layer: str = "relu",
        v_proj: bool = True,
        dw_ks: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
        dim_head: int = 64,
        window_size: int = 7,
        attn_s: bool = True,
        qkv_bias: bool = False,
        attn_pre: bool = False,
    ) -> None:
        super().__init__()
        self.norm = make_norm(norm_layer, dim_in) if norm_in else nn.Identity()
        dim_mid = int(dim_in * exp_ratio)
        self.dim_in, self.dim_mid = dim_in, dim_mid
        self.has_skip = (dim_in == dim_out and stride == 1) and has_skip
        self.attn_s = attn_s
        if attn_s:
            if dim_in % dim_head:
                raise ConfigError(f"EMO: dim {dim_in} is not divisible by dim_head {dim_head}")
            self.dim_head = dim_head
            self.window_size = window_size
            self.num_head = dim_in // dim_head
            self.scale = dim_head**-0.5
            self.attn_pre = attn_pre
            if not attn_pre and dim_mid % self.num_head:
                raise ConfigError(f"EMO: expanded dim {dim_mid} is not divisible by {self.num_head} heads")
            self.qk = ConvNormAct(dim_in, dim_in * 2, 1, bias=qkv_bias, norm="none", act="none")
            self.v: nn.Module = ConvNormAct(dim_in, dim_mid, 1, bias=qkv_bias, norm="none", act=act_layer)
        elif v_proj:
            self.v = ConvNormAct(dim_in, dim_mid, 1, bias=qkv_bias, norm="none", act=act_layer)
        else:
            self.v = nn.Identity()
        self.conv_local = ConvNormAct(dim_mid, dim_mid, dw_ks, stride=stride, groups=dim_mid, norm="bn_2d", act="silu")
        self.se: nn.Module = SqueezeExcite(dim_mid, se_ratio, act_layer) if se_ratio > 0.0 else nn.Identity()
        self.proj = ConvNormAct(dim_mid, dim_out, 1, norm="none", act="none")

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """EW-MHSA on strided-grid windows: normed ``(B, dim_in, H, W)`` → ``(B, dim_mid, H, W)`` (``v`` included)."""
        _, C, H, W = x.shape
        ws_h, ws_w, pad_b, pad_r, n1, n2 = window_padding(H, W, self.window_size)
        x = F.pad(x, (0, pad_r, 0, pad_b))
        x = window_partition(x, ws_h, ws_w)
        b, _, h, w = x.shape
        heads, dh = self.num_head, self.dim_head
        qk = self.qk(x).reshape(b, 2, heads, dh, h * w).permute(1, 0, 2, 4, 3)  # (2, b, heads, hw, dh)
        q, k = qk[0], qk[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        if self.attn_pre:
            xs = x.reshape(b, heads, dh, h * w).transpose(-2, -1)
            out = (attn @ xs).transpose(-2, -1).reshape(b, C, h, w)
            out = self.v(out)
        else:
            v = self.v(x)
            v = v.reshape(b, heads, v.shape[1] // heads, h * w).transpose(-2, -1)
            out = (attn @ v).transpose(-2, -1).reshape(b, -1, h, w)
        out = window_merge(out, n1, n2)
        if pad_b or pad_r:
            out = out[:, :, :H, :W].contiguous()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        x = self.attention(x) if self.attn_s else self.v(x)
        x = x + self.se(self.conv_local(x)) if self.has_skip else self.se(self.conv_local(x))
        x = self.proj(x)
        return shortcut + x if self.has_skip else x


class EMO(nn.Module):
    """EMO classifier: ``(N, 3, H, W)`` float32 NCHW → ``(N, num_classes)`` logits; any H, W (windows are padded).

    Arguments mirror the official ``EMO.__init__``. Dropout and stochastic depth are training-only and omitted.
    Initialisation follows the official ``_init_weights`` (truncated normal std 0.02 for Linear weights, zero
    biases, norms 1/0). The official ``forward`` returns ``{'out': logits, 'out_kd': logits}``; this returns the
    logits tensor.
    """

    def __init__(
        self,
        depths: list[int],
        stem_dim: int,
        embed_dims: list[int],
        exp_ratios: list[float],
        norm_layers: list[str],
        act_layers: list[str],
        dw_kss: list[int],
        dim_heads: list[int],
        window_sizes: list[int],
        attn_ss: list[bool],
        se_ratios: list[float] | None = None,
        qkv_bias: bool = True,
        attn_pre: bool = False,
        num_classes: int = 1000,
        dim_in: int = 3,
    ) -> None:
        super().__init__()
        se_ratios = se_ratios or [0.0] * 4
        lists = (depths, embed_dims, exp_ratios, norm_layers, act_layers, dw_kss, dim_heads, window_sizes, attn_ss)
        if any(len(v) != 4 for v in (*lists, se_ratios)):
            raise ConfigError("EMO: every per-stage hyper-parameter needs 4 entries")
        self.stage0 = nn.ModuleList(
            [
                MSPatchEmb(dim_in, stem_dim, kernel_size=dw_kss[0], stride=2, norm=norm_layers[0]),
                iRMB(
                    stem_dim,
                    stem_dim,
                    norm_in=False,
                    has_skip=False,
                    exp_ratio=1,
                    norm_layer=norm_layers[0],
                    act_layer=act_layers[0],
                    v_proj=False,
                    dw_ks=dw_kss[0],
                    stride=1,
                    se_ratio=1,
                    attn_s=False,
                    qkv_bias=qkv_bias,
                ),
            ]
        )
        prev = stem_dim
        for i in range(4):
            layers = []
            for j in range(depths[i]):
                first = j == 0
                layers.append(
                    iRMB(
                        prev,
                        embed_dims[i],
                        norm_in=True,
                        has_skip=not first,
                        exp_ratio=exp_ratios[i] * 2 if first else exp_ratios[i],
                        norm_layer=norm_layers[i],
                        act_layer=act_layers[i],
                        v_proj=True,
                        dw_ks=dw_kss[i],
                        stride=2 if first else 1,
                        se_ratio=se_ratios[i],
                        dim_head=dim_heads[i],
                        window_size=window_sizes[i],
                        attn_s=False if first else bool(attn_ss[i]),
                        qkv_bias=qkv_bias,
                        attn_pre=attn_pre,
                    )
                )
                prev = embed_dims[i]
            setattr(self, f"stage{i + 1}", nn.ModuleList(layers))
        self.norm = make_norm(norm_layers[-1], embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.apply(partial(vit_init, norms=(nn.LayerNorm, nn.BatchNorm2d)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W) → (N, embed_dims[-1], ~H/32, ~W/32)`` before the final norm."""
        for i in range(5):
            for blk in getattr(self, f"stage{i}"):
                x = blk(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.forward_features(x))
        return self.head(x.mean((2, 3)))


# ---------------------------------------------------------------------------------------------------------------------
# zoo builder

_HYPER_KEYS = {
    "depths",
    "stem_dim",
    "embed_dims",
    "exp_ratios",
    "norm_layers",
    "act_layers",
    "dw_kss",
    "dim_heads",
    "window_sizes",
    "attn_ss",
    "se_ratios",
    "qkv_bias",
    "attn_pre",
}


@register_family("emo")
def build_emo(card: ModelCard, input_size: int) -> nn.Module:
    """Build an :class:`EMO` from ``card.hyper`` (keys as in the official ``EMO_*M`` functions).

    Any input size works (attention windows are zero-padded). Raises :class:`~edgedeploy.errors.ConfigError`
    for unknown or missing hyper-parameters.
    """
    hyper: dict[str, Any] = dict(card.hyper)
    unknown = set(hyper) - _HYPER_KEYS
    if unknown:
        raise ConfigError(f"model card {card.path}: field 'hyper': unknown keys {sorted(unknown)} for family emo")
    try:
        return EMO(num_classes=card.num_classes, **hyper)
    except TypeError as e:
        raise ConfigError(f"model card {card.path}: field 'hyper': {e}") from e
