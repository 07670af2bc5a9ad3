"""Pattern lowerings for ncnn (edgedeploy/export/fx_patterns.py): exact, every tensor ≤ 4-D, untouched elsewhere.

The modules here are written the way timm writes them (a 5-D ``qkv`` reshape + permute + unbind, a 6-D window
partition, a step-2 slice on one and on two axes): ``lower(..., target="ncnn")`` must give the same outputs with
no tensor of rank > 4 computed, and the ONNX target (whose converter takes the original ops) must keep them.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from edgedeploy.export.lowering import lower


class Attention5D(nn.Module):
    """timm's ``Attention.forward``: ``qkv(x).reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)``."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (1, C, H, W)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        qkv = self.qkv(t).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
        o = (a @ v).transpose(1, 2).reshape(b, h * w, c)
        return self.proj(o).transpose(1, 2).reshape(b, c, h, w)


class WindowPartition(nn.Module):
    """Swin / TinyViT's window partition and its reverse: 6-D views with a permute between them."""

    def __init__(self, ws: int = 2) -> None:
        super().__init__()
        self.ws = ws

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (1, C, H, W)
        b, c, h, w = x.shape
        s = self.ws
        win = x.view(b, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1).reshape(-1, s * s, c)
        win = win * 2.0 + 1.0
        y = win.view(b, h // s, w // s, s, s, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        return y


class Stepped(nn.Module):
    """LeViT's subsample: ``x[:, :, ::2, ::2]`` (two axes) and a one-axis step-2 slice, between convs (pnnx infers
    the batch axis from them: a graph of slices and reshapes only gets ncnn axes off by one)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.out = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.out(x[:, :, ::2, ::2] + x[:, :, 1::2, :][:, :, :, ::2])


class UnevenChunk(nn.Module):
    """EdgeNeXt's ``SplitTransposeBlock``: ``x.chunk(3, dim=1)`` of 88 channels (pieces 30, 30, 28), a conv per
    piece, then concatenated; plus a ``split(32)`` along width (pieces 32, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(8, 88, 1)
        self.convs = nn.ModuleList(nn.Conv2d(n, n, 3, padding=1, groups=n) for n in (30, 30))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (1, 8, H, 40)
        spx = self.stem(x).chunk(3, dim=1)
        y = [self.convs[0](spx[0]), self.convs[1](spx[1] + spx[0]), spx[-1]]
        a, b = torch.cat(y, 1).split(32, dim=3)
        return torch.cat([b, a], 3)


class ExpandedContext(nn.Module):
    """MobileViT v2's ``LinearSelfAttention``: ``relu(v) * context.expand_as(v)`` (LiteRT's converter rejects the
    product: "'tfl.mul' op operands don't have broadcast-compatible shapes")."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.out = nn.Conv2d(8, 1 + 16 + 16, 1), nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (1, 8, P, N)
        q, k, v = self.qkv(x).split([1, 16, 16], dim=1)
        context = (k * q.softmax(dim=-1)).sum(dim=-1, keepdim=True)
        return self.out(torch.relu(v) * context.expand_as(v))


class LinearNorm(nn.Module):
    """LeViT's ``LinearNorm``: ``bn(linear(x).flatten(0, 1)).reshape_as(x)`` on ``(1, N, C)`` tokens."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.linear, self.bn = nn.Linear(a, b, bias=False), nn.BatchNorm1d(b)
        with torch.no_grad():  # a non-trivial normalisation (eval mode: running statistics)
            self.bn.running_mean.uniform_(-1, 1), self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return self.bn(x.flatten(0, 1)).reshape_as(x)


class TokenBatchNorm(nn.Module):
    """LeViT's token path: LinearNorms, a residual, a step-2 token subsample; without the ncnn lowering pnnx takes
    the flattened token axis for ncnn's batch and the artifact is far off (max abs 1e20, cosine -0.59)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.a, self.b, self.head = (
            nn.Conv2d(8, 16, 3, 2, 1),
            LinearNorm(16, 32),
            LinearNorm(32, 16),
            nn.Linear(16, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (1, 8, 14, 14)
        t = self.conv(x).flatten(2).transpose(1, 2)  # (1, 49, 16)
        t = t + self.b(torch.relu(self.a(t)))
        b, _, c = t.shape
        t = self.a(t.view(b, 7, 7, c)[:, ::2, ::2].reshape(b, -1, c))
        return self.head(self.b(t).mean(1))


class Plain(nn.Module):
    """Nothing for a pattern pass: ≤ 4-D reshapes and unit-step slices only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, -1, x.shape[-1])[:, 1:3].reshape(1, 2, 1, -1)


class _MaxRank(torch.overrides.TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.max_rank = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.max_rank = max(self.max_rank, t.dim())
        return out


def max_rank(module: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    mode = _MaxRank()
    with torch.no_grad(), mode:
        y = module(x)
    return mode.max_rank, y


CASES = [
    (Attention5D, (1, 32, 4, 6)),
    (WindowPartition, (1, 8, 4, 6)),
    (Stepped, (1, 3, 8, 10)),
    (UnevenChunk, (1, 8, 4, 40)),
    (TokenBatchNorm, (1, 8, 14, 14)),
]


@pytest.mark.parametrize(("cls", "shape"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_ncnn_lowering_is_exact_and_at_most_4d(cls: type[nn.Module], shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    module = cls().eval()
    x = torch.randn(shape)
    rank_before, ref = max_rank(module, x)
    assert rank_before > 4 or cls in (Stepped, UnevenChunk, TokenBatchNorm)  # the pattern is really there
    lowered, _ = lower(module, x, target="ncnn")
    rank_after, y = max_rank(lowered, x)
    assert rank_after <= 4, f"{cls.__name__}: a rank-{rank_after} tensor is still computed"
    assert torch.equal(y, ref) or torch.allclose(y, ref, atol=1e-6, rtol=0), (y - ref).abs().max()
    x2 = torch.randn(shape)  # another input of the same shape: the rewrite is not fitted to one tensor
    assert torch.allclose(lowered(x2), module(x2), atol=1e-6, rtol=0)


def test_stepped_slices_are_gone_for_ncnn() -> None:
    seen: list[Any] = []

    class Slices(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if getattr(func, "__name__", "") == "__getitem__" and len(args) > 1:
                idx = args[1] if isinstance(args[1], tuple) else (args[1],)
                seen.extend(s.step for s in idx if isinstance(s, slice) and s.step not in (None, 1))
            return func(*args, **(kwargs or {}))

    x = torch.randn(1, 3, 8, 10)
    lowered, _ = lower(Stepped().eval(), x, target="ncnn")
    with torch.no_grad(), Slices():
        lowered(x)
    assert seen == []
    with torch.no_grad(), Slices():
        Stepped()(x)
    assert seen == [2, 2, 2, 2]  # the probe itself sees them in the original


@pytest.mark.parametrize("target", ["onnx", "ncnn"])
def test_no_pattern_means_no_change(target: str) -> None:
    x = torch.randn(1, 3, 4, 6)
    lowered, _ = lower(Plain().eval(), x, target=target)
    assert torch.equal(lowered(x), Plain()(x))
    assert type(lowered) is Plain  # nothing to rewrite: the user's module itself


def test_onnx_keeps_the_original_high_rank_ops() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 32, 4, 6)
    lowered, _ = lower(Attention5D().eval(), x, target="onnx")
    assert max_rank(lowered, x)[0] == 5  # onnxruntime / MNN take 5-D permutes: no pattern pass runs for them


def test_uneven_chunks_become_slices_for_ncnn() -> None:
    """pnnx refuses a chunk / split into unequal pieces; the ncnn lowering leaves none, with torch's piece sizes."""
    x = torch.randn(1, 8, 4, 40)
    module = UnevenChunk().eval()
    lowered, _ = lower(module, x, target="ncnn")
    assert ".chunk(" not in lowered.code and ".split(" not in lowered.code, lowered.code
    assert torch.equal(lowered(x), module(x))
    assert type(lower(module, x, target="onnx")[0]) is UnevenChunk  # onnxruntime / MNN take uneven chunks


@pytest.mark.parametrize(("cls", "shape"), [(Attention5D, (1, 32, 4, 6)), (Stepped, (1, 3, 8, 10)),
                                            (UnevenChunk, (1, 8, 4, 40)), (TokenBatchNorm, (1, 8, 14, 14))],
                         ids=["Attention5D", "Stepped", "UnevenChunk", "TokenBatchNorm"])  # fmt: skip
def test_ncnn_export_of_the_pattern_passes_parity(cls: type[nn.Module], shape: tuple[int, ...], tmp_path: Any) -> None:
    """Through the public API: pnnx takes the lowered graph (it refuses the 5-D permute and the step-2 slice)."""
    pytest.importorskip("pnnx")
    pytest.importorskip("ncnn")
    import edgedeploy

    torch.manual_seed(0)
    out = edgedeploy.export(cls().eval(), "ncnn", input_shape=shape, out=tmp_path)
    assert out.parity.passed, out.parity
    patterns = ("high_rank_to_4d", "strided_slice", "uneven_split", "batch_flatten_norm")
    assert any(p["rewrites"] for p in out.manifest.lowering["passes"] if p["pass"] in patterns)


def test_tflite_drops_an_expand_before_a_broadcast_product(tmp_path: Any) -> None:
    """The tflite lowering multiplies by the un-expanded context (same broadcast); LiteRT converts it, parity passes."""
    torch.manual_seed(0)
    x = torch.randn(1, 8, 4, 16)
    module = ExpandedContext().eval()
    lowered, _ = lower(module, x, target="tflite")
    assert "expand" not in lowered.code, lowered.code
    assert torch.equal(lowered(x), module(x))
    assert type(lower(module, x, target="onnx")[0]) is ExpandedContext
    pytest.importorskip("litert_torch")
    import edgedeploy

    out = edgedeploy.export(module, "tflite", input_shape=x.shape, out=tmp_path)
    assert out.parity.passed, out.parity
