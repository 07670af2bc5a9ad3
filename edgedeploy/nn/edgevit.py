"""EdgeViT (Pan et al., "EdgeViTs: Competing Light-weight CNNs on Mobile Devices with Vision Transformers", ECCV 2022).

Architecture follows the official implementation, ``saic-fi/edgevit`` ``src/edgevit.py`` (commit
``f3d070addc3dc761173429426eab5edeb0d6343``); module and parameter names mirror it, so official checkpoints load
with :func:`edgedeploy.zoo.load_weights` without renaming. The code here is written from the paper and the official
code's structure, not copied.

Layout, all tensors float32 NCHW unless stated:

* four stages, each a :class:`PatchEmbed` (conv, kernel = stride = 4 / 2 / 2 / 2, then LayerNorm over channels)
  followed by ``depth[i]`` :class:`LGLBlock` s (Local-Global-Local bottleneck, paper Sec. 3.2, Fig. 2);
* an LGL block is :class:`LocalAgg` (depth-wise 5×5 "local aggregation" between two 1×1 convs, plus a conv MLP;
  omitted where the sample rate is 1, as in the official ``LGLBlock``) then :class:`SelfAttn` (a 3×3 depth-wise
  conditional position encoding, :class:`GlobalSparseAttn`, and a token MLP);
* :class:`GlobalSparseAttn` attends among *delegate* tokens: one pixel per r×r cell, the top-left one (the
  official ``nn.AvgPool2d(1, sr_ratio)``, i.e. stride-r picking, *not* averaging; supplementary Sec. B, Algorithm
  1 "sampler", Table 4b "Center"), then propagates the result back to full resolution with a depth-wise
  ``ConvTranspose2d`` (kernel = stride = r, "LocalProp") and a LayerNorm. Sample rates are (4, 2, 2, 1)
  (supplementary Sec. A);
* head: BatchNorm2d, global average pool, Linear → ``(N, num_classes)`` logits.

Input side: the stage maps are H/4, H/8, H/16, H/32 and the sample rates 4, 2, 2 must divide the first three, so H
and W must be multiples of 32 (``min_input_multiple: 32`` in the cards). Other sizes raise
:class:`~edgedeploy.errors.ConfigError`.

Parameter counts (exact, official builders run outside the repo): EdgeViT-XXS 4,067,704; XS 6,770,056;
S 13,108,168. The paper reports 4.1M / 6.7M / 11.1M: the official ``edgevit_s`` (depth [1, 2, 5, 3], dims
[48, 96, 240, 384]) does not build the paper's 11.1M; its MACs (1.92G fvcore) match the paper's 1.9G.

Export lowering: :func:`lower_self_attn` (registered with :func:`edgedeploy.nn.rewrites.register_lowering`)
replaces each :class:`SelfAttn` with :class:`LoweredSelfAttn`, which uses tensors of at most 4 dimensions, static
shapes for the recorded input, and explicit matmul + softmax.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from edgedeploy.cards import ModelCard
from edgedeploy.errors import ConfigError
from edgedeploy.nn.layers import vit_init
from edgedeploy.zoo import register_family

__all__ = [
    "ConvMlp",
    "EdgeViT",
    "GlobalSparseAttn",
    "LGLBlock",
    "LocalAgg",
    "Mlp",
    "PatchEmbed",
    "SelfAttn",
    "build_edgevit",
]


class Mlp(nn.Module):
    """Token MLP ``Linear(C, hC) → GELU → Linear(hC, C)`` on ``(N, L, C)`` tokens (official ``Mlp``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvMlp(nn.Module):
    """Pixel MLP ``Conv1×1(C, hC) → GELU → Conv1×1(hC, C)`` on NCHW maps (official ``CMlp``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GlobalSparseAttn(nn.Module):
    """Sparse global self-attention among delegate tokens (paper Sec. 3.2; official ``GlobalSparseAttn``).

    ``forward(x, H, W)`` takes tokens ``(N, H*W, C)`` (row-major over the H×W map) and returns ``(N, H*W, C)``.
    With sample rate ``r > 1``: the delegates are the pixels ``map[:, :, ::r, ::r]`` (one per r×r cell, its top-left
    pixel, exactly what the official ``nn.AvgPool2d(kernel_size=1, stride=r)`` computes); multi-head attention runs
    over the ``ceil(H/r)·ceil(W/r)`` delegates; a depth-wise ``ConvTranspose2d(kernel=stride=r)`` ("LocalProp")
    spreads each delegate's output over its r×r cell, followed by LayerNorm (eps 1e-5, the official
    ``nn.LayerNorm(dim)``) and the output projection. With ``r == 1`` it is plain multi-head self-attention.

    ``H`` and ``W`` must be multiples of ``r`` (else the propagated map does not cover the input:
    :class:`~edgedeploy.errors.ConfigError`). Scale is ``head_dim ** -0.5`` applied after ``q @ kᵀ`` as in the
    official code.
    """

    def __init__(self, dim: int, num_heads: int, sample_rate: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"EdgeViT: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.sr = int(sample_rate)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if self.sr > 1:
            self.LocalProp = nn.ConvTranspose2d(dim, dim, self.sr, stride=self.sr, groups=dim)
            self.norm = nn.LayerNorm(dim)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        """Delegate pixels of an NCHW map: ``(N, C, H, W) → (N, C, ceil(H/r), ceil(W/r))``, top-left of each cell."""
        return x[:, :, :: self.sr, :: self.sr] if self.sr > 1 else x

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, _, C = x.shape
        if self.sr > 1:
            if H % self.sr or W % self.sr:
                raise ConfigError(f"EdgeViT: a {H}x{W} map is not divisible by the sample rate {self.sr}")
            x = self.sample(x.transpose(1, 2).reshape(B, C, H, W)).flatten(2).transpose(1, 2)
        qkv = self.qkv(x).reshape(B, -1, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, -1, C)
        if self.sr > 1:
            x = x.transpose(1, 2).reshape(B, C, H // self.sr, W // self.sr)
            x = self.LocalProp(x).flatten(2).transpose(1, 2)
            x = self.norm(x)
        return self.proj(x)


class LocalAgg(nn.Module):
    """Local aggregation (paper Sec. 3.2 "local aggregation"; official ``LocalAgg``): NCHW → NCHW, same shape.

    ``x += dwconv3×3(x)`` (position encoding); ``x += conv1×1(dwconv5×5(conv1×1(BN(x))))``;
    ``x += ConvMlp(BN(x))``. Note the official code uses a 5×5 depth-wise conv here (supplementary Algorithm 1
    shows 3×3); we follow the code.
    """

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.conv2(self.attn(self.conv1(self.norm1(x))))
        return x + self.mlp(self.norm2(x))


class SelfAttn(nn.Module):
    """Global half of the LGL block (official ``SelfAttn``): NCHW ``(N, C, H, W)`` → same shape.

    ``x += dwconv3×3(x)``; then on tokens ``(N, H*W, C)``: ``t += GlobalSparseAttn(LN(t))``, ``t += Mlp(LN(t))``
    (LayerNorm eps 1e-6, the official ``norm_layer``).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sample_rate: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = GlobalSparseAttn(dim, num_heads, sample_rate, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        B, C, H, W = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.attn(self.norm1(t), H, W)
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(B, C, H, W)


class LGLBlock(nn.Module):
    """Local-Global-Local bottleneck (paper Sec. 3.2, Fig. 2b): ``SelfAttn(LocalAgg(x))``, NCHW → same shape.

    ``LocalAgg`` is present only where the sample rate is > 1 (official ``LGLBlock``).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sample_rate: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.LocalAgg: nn.Module = LocalAgg(dim, mlp_ratio) if sample_rate > 1 else nn.Identity()
        self.SelfAttn = SelfAttn(dim, num_heads, mlp_ratio, sample_rate, qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SelfAttn(self.LocalAgg(x))


class PatchEmbed(nn.Module):
    """Down-sampling layer (official ``PatchEmbed``): ``Conv(k=s=patch)`` then LayerNorm (eps 1e-5) over channels.

    ``(N, C_in, H, W) → (N, C_out, H/patch, W/patch)`` (floor division, as ``nn.Conv2d``).
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)  # registered before proj, as officially (same state_dict order)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


class EdgeViT(nn.Module):
    """EdgeViT classifier: ``(N, 3, H, W)`` float32 NCHW → ``(N, num_classes)`` logits; H, W multiples of 32.

    Arguments mirror the official ``EdgeVit.__init__`` (``depth``, ``embed_dim``, ``head_dim``, ``mlp_ratio``,
    ``qkv_bias``, ``sr_ratios``); ``num_heads[i] = embed_dim[i] // head_dim``. Dropout and stochastic depth are
    training-only and omitted (rates 0 at inference). Initialisation follows the official ``_init_weights``
    (truncated normal std 0.02 for Linear weights, zero biases, LayerNorm 1/0).
    """

    PATCH_SIZES = (4, 2, 2, 2)

    def __init__(
        self,
        depth: list[int],
        embed_dim: list[int],
        head_dim: int,
        mlp_ratio: list[float],
        qkv_bias: bool = True,
        sr_ratios: tuple[int, ...] | list[int] = (4, 2, 2, 1),
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if not (len(depth) == len(embed_dim) == len(mlp_ratio) == len(sr_ratios) == 4):
            raise ConfigError("EdgeViT: depth, embed_dim, mlp_ratio and sr_ratios need 4 entries each")
        self.sr_ratios = tuple(int(r) for r in sr_ratios)
        dims_in = [in_chans, *embed_dim[:3]]
        for i in range(4):  # all patch embeddings first, then the blocks: the official registration order
            setattr(self, f"patch_embed{i + 1}", PatchEmbed(self.PATCH_SIZES[i], dims_in[i], embed_dim[i]))
        for i in range(4):
            heads = embed_dim[i] // head_dim
            blocks = nn.ModuleList(
                LGLBlock(embed_dim[i], heads, mlp_ratio[i], self.sr_ratios[i], qkv_bias) for _ in range(depth[i])
            )
            setattr(self, f"blocks{i + 1}", blocks)
        self.norm = nn.BatchNorm2d(embed_dim[-1])
        self.head = nn.Linear(embed_dim[-1], num_classes)
        self.apply(vit_init)

    def min_input_multiple(self) -> int:
        """Smallest side multiple that every stage's sample rate divides (32 for rates 4/2/2/1)."""
        m = 1
        stride = 1
        for p, r in zip(self.PATCH_SIZES, self.sr_ratios, strict=True):
            stride *= p
            m = math.lcm(m, stride * r)
        return m

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W) → (N, embed_dim[-1], H/32, W/32)`` after the final BatchNorm."""
        for i in range(1, 5):
            x = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"blocks{i}"):
                x = blk(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.head(x.flatten(2).mean(-1))


# ---------------------------------------------------------------------------------------------------------------------
# zoo builder

_HYPER_KEYS = {"depth", "embed_dim", "head_dim", "mlp_ratio", "qkv_bias", "sr_ratios"}


@register_family("edgevit")
def build_edgevit(card: ModelCard, input_size: int) -> nn.Module:
    """Build an :class:`EdgeViT` from ``card.hyper`` (keys as in the official ``edgevit_*`` functions).

    Raises :class:`~edgedeploy.errors.ConfigError` for unknown or missing hyper-parameters, or an input side that
    the sample rates do not divide.
    """
    hyper: dict[str, Any] = dict(card.hyper)
    unknown = set(hyper) - _HYPER_KEYS
    if unknown:
        raise ConfigError(f"model card {card.path}: field 'hyper': unknown keys {sorted(unknown)} for family edgevit")
    try:
        model = EdgeViT(num_classes=card.num_classes, **hyper)
    except TypeError as e:
        raise ConfigError(f"model card {card.path}: field 'hyper': {e}") from e
    mult = model.min_input_multiple()
    if input_size % mult:
        raise ConfigError(f"{card.name} needs an input side that is a multiple of {mult}; got {input_size}")
    return model
