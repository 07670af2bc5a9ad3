"""Global circular convolution and the EdgeFormer GCC block (edgedeploy.nn.gcc).

References computed independently of the implementation: circular convolution as a sum of ``torch.roll`` terms
and via the FFT; bilinear ``align_corners=True`` resizing via ``numpy.interp``; the whole block via roll-based
GCCs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgedeploy.errors import ConfigError, ExportError
from edgedeploy.export.lowering import LOWERINGS, lower, verify_lowering
from edgedeploy.nn.forms.gcc import BakedGCCBlock, UnrolledGCCBlock, lower_gcc_block, unrolled_circular_kernel
from edgedeploy.nn.gcc import ChannelAttention, GCCBlock, circular_conv, instance_param
from edgedeploy.nn.layers import fill_deterministic_


def roll_reference(x: torch.Tensor, k: torch.Tensor, direction: str) -> torch.Tensor:
    """y[..., i, :] = sum_t k[c, t] x[..., (i + t) mod n, :] (resp. along W), as a sum of rolled copies."""
    dim = 2 if direction == "H" else 3
    n = x.shape[dim]
    taps = k.reshape(k.shape[0], n)  # (C, n)
    y = torch.zeros_like(x)
    for t in range(n):
        shape = (1, -1, 1, 1)
        y = y + taps[:, t].reshape(shape) * torch.roll(x, shifts=-t, dims=dim)
    return y


def fft_reference(x: torch.Tensor, k: torch.Tensor, direction: str) -> torch.Tensor:
    """Circular cross-correlation through the DFT: Y = X · conj(K) along the GCC axis (float64)."""
    dim = 2 if direction == "H" else 3
    n = x.shape[dim]
    taps = k.reshape(k.shape[0], n).to(torch.float64)
    kk = taps.reshape(1, -1, n, 1) if direction == "H" else taps.reshape(1, -1, 1, n)
    xf = torch.fft.fft(x.to(torch.float64), dim=dim)
    kf = torch.fft.fft(kk, dim=dim)
    return torch.fft.ifft(xf * kf.conj(), dim=dim).real


@pytest.mark.parametrize("direction", ["H", "W"])
@pytest.mark.parametrize("hw", [(7, 7), (8, 8), (5, 9), (6, 3)])
def test_cat_then_conv_is_circular_convolution(direction: str, hw: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(1)
    h, w = hw
    x = torch.randn(2, 3, h, w, generator=g)
    n = h if direction == "H" else w
    k = torch.randn(3, 1, n, 1, generator=g) if direction == "H" else torch.randn(3, 1, 1, n, generator=g)
    y = circular_conv(x, k, direction)
    assert y.shape == x.shape
    torch.testing.assert_close(y, roll_reference(x, k, direction), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.to(torch.float64), fft_reference(x, k, direction), atol=1e-5, rtol=0)


def test_circular_conv_is_not_zero_padded_conv() -> None:
    # a kernel spanning the full length with zero padding would see zeros at the borders; GCC wraps around
    x = torch.arange(1.0, 6.0).reshape(1, 1, 1, 5)
    k = torch.zeros(1, 1, 1, 5)
    k[..., 1] = 1.0  # y_i = x_{(i+1) mod 5}
    assert circular_conv(x, k, "W").flatten().tolist() == [2.0, 3.0, 4.0, 5.0, 1.0]


def test_circular_conv_bias_and_errors() -> None:
    x = torch.randn(1, 2, 4, 4)
    k = torch.randn(2, 1, 4, 1)
    b = torch.tensor([1.0, -2.0])
    torch.testing.assert_close(circular_conv(x, k, "H", b), circular_conv(x, k, "H") + b.reshape(1, 2, 1, 1))
    with pytest.raises(ValueError, match="does not span"):
        circular_conv(x, torch.randn(2, 1, 3, 1), "H")
    with pytest.raises(ValueError, match="does not span"):
        circular_conv(x, k, "W")  # vertical kernel used horizontally
    with pytest.raises(ValueError, match="direction"):
        circular_conv(x, k, "D")  # type: ignore[arg-type]


def numpy_align_corners(meta: np.ndarray, size: int) -> np.ndarray:
    """1-D linear resize with align_corners=True: output i samples input at i * (L - 1) / (size - 1)."""
    length = meta.shape[-1]
    pos = np.arange(size) * (length - 1) / (size - 1) if size > 1 else np.zeros(1)
    flat = meta.reshape(-1, length)
    return np.stack([np.interp(pos, np.arange(length), row) for row in flat]).reshape(*meta.shape[:-1], size)


@pytest.mark.parametrize("size", [28, 40, 7, 2])
@pytest.mark.parametrize("layout", ["kernel", "pe"])
@pytest.mark.parametrize("direction", ["H", "W"])
def test_instance_param_is_bilinear_align_corners(size: int, layout: str, direction: str) -> None:
    g = torch.Generator().manual_seed(2)
    dim, length = 5, 32
    lead = (dim, 1) if layout == "kernel" else (1, dim)
    shape = (*lead, length, 1) if direction == "H" else (*lead, 1, length)
    meta = torch.randn(shape, generator=g)
    out = instance_param(meta, size, direction)
    want_shape = (*lead, size, 1) if direction == "H" else (*lead, 1, size)
    assert tuple(out.shape) == want_shape
    ref = numpy_align_corners(meta.reshape(*lead, length).double().numpy(), size).reshape(want_shape)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    # the endpoints are kept exactly (align_corners=True), unlike align_corners=False
    flat = out.reshape(*lead, size)
    torch.testing.assert_close(flat[..., 0], meta.reshape(*lead, length)[..., 0])
    if size > 1:
        torch.testing.assert_close(flat[..., -1], meta.reshape(*lead, length)[..., -1])
    wrong = F.interpolate(meta, list(want_shape[2:]), mode="bilinear", align_corners=False)
    if size not in (length,):
        assert not torch.allclose(wrong, out, atol=1e-6)


def test_instance_param_identity_at_meta_size() -> None:
    meta = torch.randn(4, 1, 1, 16)
    assert instance_param(meta, 16, "W") is meta


def test_gcc_block_parameters_mirror_official() -> None:
    blk = GCCBlock(dim=8, meta_kernel_size=16, use_pe=True, ffn_dim=32)
    shapes = {k: tuple(v.shape) for k, v in blk.state_dict().items()}
    assert shapes["meta_kernel_1_H"] == (8, 1, 16, 1)
    assert shapes["meta_kernel_1_W"] == (8, 1, 1, 16)
    assert shapes["meta_pe_2_H"] == (1, 8, 16, 1)
    assert shapes["meta_pe_2_W"] == (1, 8, 1, 16)
    assert shapes["ffn.1.weight"] == (32, 16, 1, 1) and shapes["ffn.4.bias"] == (16,)
    assert shapes["ca.fc.0.weight"] == (1, 16, 1, 1)  # 16 // 16
    assert not any("bias" in k and k.startswith("meta_") for k in shapes)  # GCC convs carry no bias
    no_pe = GCCBlock(dim=8, meta_kernel_size=16, use_pe=False, channel_attention=False)
    assert not any(k.startswith(("meta_pe", "ca.")) for k in no_pe.state_dict())
    with_bias = GCCBlock(dim=8, meta_kernel_size=16, bias=True)
    assert {"meta_1_H_bias", "meta_2_W_bias"} <= set(with_bias.state_dict())
    with pytest.raises(ConfigError, match="instance_kernel_method"):
        GCCBlock(dim=8, meta_kernel_size=16, instance_kernel_method="crop")
    with pytest.raises(RuntimeError, match="no position embeddings"):
        no_pe.instance_pes(4, 4)


def block_reference(blk: GCCBlock, x: torch.Tensor) -> torch.Tensor:
    """The official gcc_ca_mf_block computation written out with roll-based GCCs and expanded PEs."""
    h, w = x.shape[-2:]
    d = blk.dim

    def kern(meta: torch.Tensor, n: int) -> torch.Tensor:
        flat = meta.detach().reshape(meta.shape[0], -1)
        pos = torch.linspace(0, flat.shape[1] - 1, n, dtype=torch.float64)
        lo = pos.floor().long().clamp(max=flat.shape[1] - 1)
        hi = (lo + 1).clamp(max=flat.shape[1] - 1)
        frac = (pos - lo).to(flat.dtype)
        return flat[:, lo] * (1 - frac) + flat[:, hi] * frac  # (C, n)

    def pe(meta: torch.Tensor, direction: str) -> torch.Tensor:
        n = h if direction == "H" else w
        v = kern(meta.reshape(d, 1, -1), n)  # (d, n)
        return (v.reshape(1, d, n, 1) if direction == "H" else v.reshape(1, d, 1, n)).expand(1, d, h, w)

    x1, x2 = x[:, :d], x[:, d:]
    x1 = blk.pre_Norm_1(x1 + pe(blk.meta_pe_1_H, "H"))
    x2 = blk.pre_Norm_2(x2 + pe(blk.meta_pe_1_W, "W"))
    y1 = roll_reference(x1, kern(blk.meta_kernel_1_H, h), "H") + pe(blk.meta_pe_2_W, "W")
    y2 = roll_reference(x2, kern(blk.meta_kernel_1_W, w), "W") + pe(blk.meta_pe_2_H, "H")
    y1 = roll_reference(y1, kern(blk.meta_kernel_2_W, w), "W")
    y2 = roll_reference(y2, kern(blk.meta_kernel_2_H, h), "H")
    z = torch.cat((x[:, :d] + y1, x[:, d:] + y2), dim=1)
    f = blk.ffn(z)
    s = blk.ca.fc(f.mean(dim=(2, 3), keepdim=True))
    return z + f * s


@pytest.mark.parametrize("hw", [(16, 16), (12, 12), (10, 14)])
def test_gcc_block_matches_roll_reference(hw: tuple[int, int]) -> None:
    torch.manual_seed(3)
    blk = fill_deterministic_(GCCBlock(dim=16, meta_kernel_size=16, use_pe=True, ffn_dim=48)).eval()
    x = torch.randn(2, 32, *hw)
    with torch.no_grad():
        torch.testing.assert_close(blk(x), block_reference(blk, x), atol=1e-4, rtol=1e-4)


def test_channel_attention_is_squeeze_excitation() -> None:
    ca = fill_deterministic_(ChannelAttention(32)).eval()
    x = torch.randn(2, 32, 5, 5)
    with torch.no_grad():
        y = ca(x)
        fc = ca.fc
        s = F.hardsigmoid(fc[4](fc[3](F.hardswish(fc[1](fc[0](x.mean(dim=(2, 3), keepdim=True)))))))
    torch.testing.assert_close(y, x * s)
    assert fc[0].weight.shape == (2, 32, 1, 1) and fc[0].bias is None


def test_baked_block_equals_original_and_is_static() -> None:
    torch.manual_seed(4)
    blk = fill_deterministic_(GCCBlock(dim=16, meta_kernel_size=16, use_pe=True, ffn_dim=48)).eval()
    baked = lower_gcc_block(blk, (1, 32, 12, 12), "tflite")
    assert isinstance(baked, BakedGCCBlock)
    assert LOWERINGS[GCCBlock] is lower_gcc_block
    # kernels / PEs are constants (buffers), resized to 12; no meta parameter left
    assert baked.k_1_H.shape == (16, 1, 12, 1) and baked.k_2_W.shape == (16, 1, 1, 12)
    assert baked.pe_1_W.shape == (1, 16, 1, 12)
    assert not any(n.startswith(("meta_kernel", "meta_pe")) for n, _ in baked.named_parameters())
    x = torch.randn(3, 32, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(baked(x), blk(x), atol=1e-6, rtol=0)
        with pytest.raises(ValueError, match="baked for 12x12"):
            baked(torch.randn(1, 32, 16, 16))
    with pytest.raises(ExportError):
        lower_gcc_block(blk, (12, 12), "onnx")


def test_lower_replaces_every_gcc_block() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        GCCBlock(dim=8, meta_kernel_size=16, use_pe=True, ffn_dim=32),
        GCCBlock(dim=8, meta_kernel_size=16, use_pe=False, ffn_dim=32, mid_mix=True),
    )
    fill_deterministic_(model).eval()
    example = torch.randn(1, 3, 28, 28)
    lowered, names = lower(model, example, "tflite")
    assert names == ["1", "2"]
    assert all(isinstance(lowered[i], BakedGCCBlock) for i in (1, 2))
    assert isinstance(model[1], GCCBlock)  # the original is untouched
    check = verify_lowering(model, lowered, example)
    assert check.max_abs_error < 1e-5


@pytest.mark.parametrize("direction", ["H", "W"])
@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_unrolled_kernel_is_circular_convolution(direction: str, n: int) -> None:
    """One zero-padded conv with the 2n − 1-tap kernel equals the roll reference (and so cat-then-conv)."""
    torch.manual_seed(n)
    hw = (n, 5) if direction == "H" else (5, n)
    x = torch.randn(2, 6, *hw)
    k = torch.randn(6, 1, n, 1) if direction == "H" else torch.randn(6, 1, 1, n)
    u, pad = unrolled_circular_kernel(k, direction)
    assert u.shape[2 if direction == "H" else 3] == 2 * n - 1
    y = F.conv2d(x, u, padding=pad, groups=6)
    torch.testing.assert_close(y, roll_reference(x, k, direction), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="must be"):
        unrolled_circular_kernel(k.transpose(2, 3) if n > 1 else k.reshape(6, 1, 1, 1, 1), direction)


def _randomise_norms_(module: nn.Module) -> nn.Module:
    """BatchNorms far from identity, so a wrong fold of their scale or shift shows."""
    g = torch.Generator().manual_seed(11)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.6 * torch.rand(m.num_features, generator=g) - 0.3)
    return module


#: per target: the UnrolledGCCBlock variant it gets, its kernel's taps and the conv's zero padding for an
#: ``n``-long axis (onnxruntime: the circular wrap is in the 2n − 1 taps; MNN: in the cat, so no padding)
UNROLLED_FORMS = {"onnx": (True, lambda n: 2 * n - 1, lambda n: n - 1), "mnn": (False, lambda n: n, lambda n: 0)}


@pytest.mark.parametrize("target", sorted(UNROLLED_FORMS))
@pytest.mark.parametrize(
    ("use_pe", "bias", "hw"), [(True, False, (12, 12)), (False, True, (8, 14)), (True, True, (5, 9))]
)
def test_unrolled_block_equals_official(target: str, use_pe: bool, bias: bool, hw: tuple[int, int]) -> None:
    """Both no-Split forms (commuted full-channel GCCs, BatchNorms folded) compute the official block: onnxruntime's
    with unrolled 2n − 1-tap kernels, MNN's "merged-cat" with cat-then-conv n-tap kernels (issue 22)."""
    unroll, taps, pad = UNROLLED_FORMS[target]
    torch.manual_seed(6)
    blk = _randomise_norms_(GCCBlock(dim=16, meta_kernel_size=16, use_pe=use_pe, bias=bias, ffn_dim=48)).eval()
    low = lower_gcc_block(blk, (1, 32, *hw), target)
    assert isinstance(low, UnrolledGCCBlock) and low.unroll == unroll
    assert (low.pe_bias is not None) == use_pe
    assert not any(isinstance(m, nn.BatchNorm2d) for m in (low.gcc_h, low.gcc_w, *low.ffn))
    assert low.gcc_h.kernel_size == (taps(hw[0]), 1) and low.gcc_w.kernel_size == (1, taps(hw[1]))
    assert low.gcc_h.padding == (pad(hw[0]), 0) and low.gcc_w.padding == (0, pad(hw[1]))
    x = torch.randn(2, 32, *hw)
    with torch.no_grad():
        ref = block_reference(blk, x) if use_pe and not bias else blk(x)
        torch.testing.assert_close(low(x), ref, atol=2e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="lowered for"):
            low(torch.randn(1, 32, hw[0] + 1, hw[1]))


def test_unrolled_block_exports_without_split_slice_or_concat() -> None:
    onnx = pytest.importorskip("onnx")
    import io

    blk = _randomise_norms_(GCCBlock(dim=16, meta_kernel_size=16, use_pe=True, ffn_dim=48)).eval()
    low = lower_gcc_block(blk, (1, 32, 12, 12), "onnx")
    buf = io.BytesIO()
    torch.onnx.export(low, (torch.randn(1, 32, 12, 12),), buf, dynamo=False, opset_version=17)
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert not ops & {"Split", "Slice", "Concat", "BatchNormalization"}, ops
    assert "Conv" in ops


def test_unrolled_form_needs_no_mid_mix() -> None:
    """A channel shuffle between the GCC stages does not commute with them: that block stays cat-then-conv."""
    blk = GCCBlock(dim=8, meta_kernel_size=8, use_pe=False, ffn_dim=32, mid_mix=True).eval()
    low = lower_gcc_block(blk, (1, 16, 8, 8), "onnx")
    assert isinstance(low, BakedGCCBlock)
    with pytest.raises(ConfigError, match="mid_mix"):
        UnrolledGCCBlock(low)
