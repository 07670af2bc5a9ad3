"""The export forms of GCC: :class:`BakedGCC`, :class:`BakedGCCBlock` (constants, cat-then-conv) and
:class:`UnrolledGCCBlock` (no Split, unrolled kernels, BatchNorms folded; :data:`GCC_BLOCK_FORM` per target).

Registered when :mod:`edgedeploy.nn.forms` is imported (see there); imports :mod:`edgedeploy.nn.gcc`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from edgedeploy.errors import ConfigError
from edgedeploy.nn.folding import bn_affine, fold_bn_into_next_conv
from edgedeploy.nn.gcc import (
    GCC,
    ChannelAttention,
    Direction,
    GCCBlock,
    GCCQuad,
    _check_size,
    _tracing,
    circular_conv,
    gcc_block_forward,
    gcc_token_mixer,
)
from edgedeploy.nn.rewrites import nchw_input, register_lowering


class BakedGCC(nn.Module):
    """Export form of :class:`GCC` for one feature size: the instance kernel and PE are constant buffers.

    Built by :func:`lower_gcc`. Input and output ``(N, dim, H, W)`` at the recorded size (another size raises
    ``ValueError``); the graph is ``[Add(pe)] → Slice → Concat → Conv(group = dim)`` with a constant weight.
    """

    def __init__(self, gcc: GCC, size: int) -> None:
        super().__init__()
        self.direction: Direction = gcc.direction
        self.size = size
        self.bias = gcc.bias
        with torch.no_grad():
            kernel, pe = gcc.instance(size)
        self.register_buffer("kernel", kernel.detach().clone().contiguous())
        self.pe: torch.Tensor | None
        if pe is not None:
            self.register_buffer("pe", pe.detach().clone().contiguous())
        else:
            self.pe = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, dim, H, W)`` at the baked length → same shape; ``ValueError`` at another length."""
        axis = 2 if self.direction == "H" else 3
        if not _tracing() and x.shape[axis] != self.size:
            raise ValueError(f"GCC-{self.direction} baked for length {self.size}, got {tuple(x.shape)}")
        if self.pe is not None:
            x = x + self.pe
        return circular_conv(x, self.kernel, self.direction, self.bias)


class BakedGCCBlock(nn.Module):
    """Export form of :class:`GCCBlock` for one feature size: instance kernels and PEs are constant buffers.

    Built by :func:`lower_gcc_block`. Input and output ``(N, 2 * dim, H, W)`` with exactly the recorded ``H, W``
    (a different size raises ``ValueError``). The submodules (``pre_Norm_*``, ``ffn``,
    ``ca``, ``mixer``) are those of the original block; GCC biases (if any) are kept as parameters.
    Every GCC stays cat-then-conv: Slice → Concat → Conv(group = dim) with a constant weight.
    """

    def __init__(self, block: GCCBlock, h: int, w: int) -> None:
        super().__init__()
        self.pre_Norm_1 = block.pre_Norm_1
        self.pre_Norm_2 = block.pre_Norm_2
        self.meta_1_H_bias = block.meta_1_H_bias
        self.meta_1_W_bias = block.meta_1_W_bias
        self.meta_2_H_bias = block.meta_2_H_bias
        self.meta_2_W_bias = block.meta_2_W_bias
        self.mixer = block.mixer
        self.ffn = block.ffn
        self.ca = block.ca
        self.dim = block.dim
        self.size = (h, w)
        with torch.no_grad():
            kernels = [k.detach().clone().contiguous() for k in block.instance_kernels(h, w)]
            pes = [p.detach().clone().contiguous() for p in block.instance_pes(h, w)] if block.use_pe else None
        for name, t in zip(("k_1_H", "k_1_W", "k_2_H", "k_2_W"), kernels, strict=True):
            self.register_buffer(name, t)
        self.use_pe = pes is not None
        if pes is not None:
            for name, t in zip(("pe_1_H", "pe_1_W", "pe_2_H", "pe_2_W"), pes, strict=True):
                self.register_buffer(name, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2 * dim, H, W)`` at the baked ``H, W`` → same shape; ``ValueError`` at another size."""
        _check_size(x, self.size, "baked")
        return gcc_block_forward(self, x, *self.constants())

    def constants(self) -> tuple[GCCQuad, GCCQuad | None]:
        """``(kernels, pes)``: the baked buffers in :func:`gcc_token_mixer`'s order (``pes`` ``None`` without PE)."""
        kernels = (self.k_1_H, self.k_1_W, self.k_2_H, self.k_2_W)
        pes = (self.pe_1_H, self.pe_1_W, self.pe_2_H, self.pe_2_W) if self.use_pe else None
        return kernels, pes


def unrolled_circular_kernel(weight: torch.Tensor, direction: Direction) -> tuple[torch.Tensor, tuple[int, int]]:
    """A full-length circular kernel as a zero-padded linear one: ``(weight, padding)`` for ``F.conv2d``.

    ``weight`` ``(C, 1, n, 1)`` (``"H"``) or ``(C, 1, 1, n)`` (``"W"``) as in :func:`circular_conv`. Because the
    kernel spans the whole axis, ``y_i = Σ_t k_t x_{(i + t) mod n} = Σ_j u_{j − i} x_j`` over the ``n`` real
    positions with ``u_d = k_{d mod n}`` for ``d = −(n−1) … n−1``: a linear correlation with the ``2n − 1``-tap
    kernel ``u`` and ``n − 1`` zeros on both sides, exactly equal (the zero taps meet only padding). Returns
    ``(C, 1, 2n − 1, 1)`` with padding ``(n − 1, 0)`` (resp. ``(C, 1, 1, 2n − 1)``, ``(0, n − 1)``). Twice the
    MACs of cat-then-conv, but no Slice / Concat: the conv reads its input in whatever layout the runtime keeps.
    Raises ``ValueError`` for a kernel that is not 1-D along ``direction``.
    """
    axis = 2 if direction == "H" else 3
    other = 3 if direction == "H" else 2
    if direction not in ("H", "W") or weight.dim() != 4 or weight.shape[1] != 1 or weight.shape[other] != 1:
        raise ValueError(f"GCC-{direction} kernel must be (C, 1, n, 1) / (C, 1, 1, n), got {tuple(weight.shape)}")
    n = weight.shape[axis]
    index = torch.arange(-(n - 1), n, device=weight.device) % n
    padding = (n - 1, 0) if direction == "H" else (0, n - 1)
    return weight.index_select(axis, index).contiguous(), padding


class PooledChannelAttention(nn.Module):
    """:class:`ChannelAttention` for one input size, with ``gap`` an ``nn.AvgPool2d`` over the whole ``(H, W)``
    map (ONNX ``AveragePool``) instead of ``AdaptiveAvgPool2d(1)`` (which torch's exporter writes as
    ``ReduceMean``); ``fc`` is the source's. Same numbers up to fp32 summation order.

    Why: in an int8 (QDQ) onnxruntime graph the ReduceMean runs in float on the NHWC tensor (0.13 ms for
    192×32×32 on a 2-vCPU Xeon), the AveragePool as QLinearAveragePool; EdgeFormer-S int8 0.95× with this form,
    fp32 unchanged (0.995×; ``benchmarks/results/lowering_forms_issue13.md``). ``(N, C, H, W)`` → same shape.
    """

    def __init__(self, ca: ChannelAttention, size: tuple[int, int]) -> None:
        super().__init__()
        self.gap = nn.AvgPool2d(size)
        self.fc = ca.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` at the recorded size → same shape."""
        return x * self.fc(self.gap(x))


class UnrolledGCCBlock(nn.Module):
    """onnxruntime / MNN export form of :class:`GCCBlock`: no Split, two full-channel convs, every BatchNorm folded.

    Built by :func:`lower_gcc_block` (targets ``"onnx"``, ``"mnn"``: :data:`GCC_BLOCK_FORM`) from a
    :class:`BakedGCCBlock` without ``mid_mix``. Input and output ``(N, 2 * dim, H, W)`` at the recorded ``H, W``.
    With ``unroll=False`` ("merged-cat", MNN) each GCC stays cat-then-conv (``cat([x, x[:-1]])`` along its axis, then
    the ``n``-tap depth-wise conv without padding): the same block, half the GCC MACs, one Slice + Concat per GCC.
    Equal in real arithmetic to the official block because

    * the token mixer is affine: ``T(x) = L(x) + T(0)``; ``T(0)`` (``(1, 2·dim, H, W)``, from the BatchNorm shifts,
      PEs and GCC biases) is computed once by :func:`gcc_token_mixer` on zeros: its per-channel mean becomes the
      last conv's bias, the rest (non-zero only with PEs) the constant ``pe_bias``;
    * ``L`` per half is two depth-wise circular convs along different axes, which commute, so both halves run as
      one GCC-V over all channels (kernels ``[a_1·k_1_H; a_2·k_2_H]``, ``a`` the BatchNorm scales) then one GCC-H
      (``[k_2_W; k_1_W]``); each is one zero-padded conv with the :func:`unrolled_circular_kernel`;
    * the FFN's BatchNorm is folded into its first 1×1 conv (:func:`edgedeploy.nn.folding.fold_bn_into_next_conv`).

    Why: onnxruntime runs convs in its blocked NCHWc layout and leaves it for every Split, Slice and spatial Concat
    (``ReorderOutput`` / ``ReorderInput`` around each GCC of :class:`BakedGCCBlock`); this form keeps whole blocks
    in NCHWc (EdgeFormer-S: 0.87× the cat-then-conv artifact on onnxruntime; on MNN, whose Raster ops do the
    Slice / Concat, the unrolled kernel's doubled taps cost more than they save: there ``unroll=False``;
    ``benchmarks/results/lowering_forms_issue13.md``, ``lowering_forms_mnn.md``).
    Submodules: ``gcc_h``, ``gcc_w`` (depth-wise ``Conv2d``; ``2n − 1`` taps, or ``n`` without ``unroll``),
    ``ffn`` (``"1"`` folded conv, ``"2"`` Hardswish, ``"4"`` conv: the official indices), ``ca`` (the original
    :class:`ChannelAttention`, or with ``pooled_ca`` its :class:`PooledChannelAttention`).
    Raises :class:`~edgedeploy.errors.ConfigError` for a block with ``mid_mix`` (the shuffle between the GCC stages
    does not commute with them).
    """

    def __init__(self, baked: BakedGCCBlock, pooled_ca: bool = False, unroll: bool = True) -> None:
        super().__init__()
        if baked.mixer is not None:
            raise ConfigError("the unrolled GCC block needs mid_mix=False (a channel shuffle between the GCCs)")
        h, w = baked.size
        channels = 2 * baked.dim
        self.size = (h, w)
        self.unroll = unroll
        kernels, pes = baked.constants()
        k_1_h, k_1_w, k_2_h, k_2_w = kernels
        with torch.no_grad():
            a = torch.cat([bn_affine(baked.pre_Norm_1)[0], bn_affine(baked.pre_Norm_2)[0]])
            k_h, pad_h = torch.cat([k_1_h, k_2_h]) * a[:, None, None, None], (0, 0)
            k_w, pad_w = torch.cat([k_2_w, k_1_w]), (0, 0)
            if unroll:
                k_h, pad_h = unrolled_circular_kernel(k_h, "H")
                k_w, pad_w = unrolled_circular_kernel(k_w, "W")
            offset = gcc_token_mixer(baked, torch.zeros(1, channels, h, w), kernels, pes)
            bias = offset.mean(dim=(0, 2, 3))
            rest = offset - bias[None, :, None, None]
        self.gcc_h = nn.Conv2d(channels, channels, tuple(k_h.shape[2:]), padding=pad_h, groups=channels, bias=False)
        self.gcc_w = nn.Conv2d(channels, channels, tuple(k_w.shape[2:]), padding=pad_w, groups=channels, bias=True)
        with torch.no_grad():
            self.gcc_h.weight.copy_(k_h)
            self.gcc_w.weight.copy_(k_w)
            self.gcc_w.bias.copy_(bias)
        self.pe_bias: torch.Tensor | None
        if pes is not None and float(rest.abs().max()) > 0.0:
            self.register_buffer("pe_bias", rest.contiguous())
        else:
            self.pe_bias = None
        ffn = baked.ffn
        fc1 = fold_bn_into_next_conv(ffn[0], ffn[1])
        self.ffn = nn.Sequential(OrderedDict([("1", fc1), ("2", ffn[2]), ("4", ffn[4])]))
        self.ca: nn.Module | None = baked.ca
        if pooled_ca and baked.ca is not None:
            self.ca = PooledChannelAttention(baked.ca, (h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2 * dim, H, W)`` at the recorded ``H, W`` → same shape; ``ValueError`` at another size."""
        _check_size(x, self.size, "lowered")
        t = self.circular_convs(x)
        if self.pe_bias is not None:
            t = t + self.pe_bias
        x = x + t
        y = self.ffn(x)
        if self.ca is not None:
            y = self.ca(y)
        return x + y

    def circular_convs(self, x: torch.Tensor) -> torch.Tensor:
        """The two full-channel GCCs, H then W: ``(N, 2 * dim, H, W)`` → same shape (bias included, no PE)."""
        if self.unroll:
            return self.gcc_w(self.gcc_h(x))
        # cat-then-conv: x[:, :, :-1] appended along the GCC's axis, then the n-tap conv (no padding)
        t = self.gcc_h(torch.cat((x, x[:, :, :-1, :]), dim=2))
        return self.gcc_w(torch.cat((t, t[:, :, :, :-1]), dim=3))


#: export form of a GCC block per target: "unrolled" (:class:`UnrolledGCCBlock`), "merged-cat" (the same block with
#: cat-then-conv n-tap GCCs, ``unroll=False``) where a benchmark shows it faster, else cat-then-conv per half
#: (:class:`BakedGCCBlock`: TFLite, CoreML, ncnn). EdgeFormer-S @256: onnxruntime unrolled 0.87-0.88× the
#: cat-then-conv artifact (2 threads, quiet 2-vCPU Xeon; ``benchmarks/results/lowering_forms_issue13.md``); MNN
#: merged-cat 0.988× / 0.976× the naive MNN file where unrolled gave 1.010× / 1.012× (1 thread, CPU clock, AMD
#: EPYC, 16 / 20 interleaved blocks, same-file control 0.999 / 0.990; ``benchmarks/results/lowering_forms_mnn.md``):
#: MNN's depth-wise kernel pays for the unrolled kernel's doubled taps and its Rasters do the Slice / Concat cheaply.
GCC_BLOCK_FORM: dict[str, str] = {"onnx": "unrolled", "mnn": "merged-cat"}
#: targets whose unrolled GCC block pools its channel attention with an ``AveragePool``
#: (:class:`PooledChannelAttention`): measured on onnxruntime only (int8 0.95×, fp32 0.995×)
POOLED_CA_TARGETS: frozenset[str] = frozenset({"onnx"})


@register_lowering(GCCBlock)
def lower_gcc_block(module: nn.Module, input_shape: tuple[int, ...], target: str) -> nn.Module:
    """Export-time rewrite: :class:`GCCBlock` → :class:`BakedGCCBlock` (or :class:`UnrolledGCCBlock`) for the
    recorded ``(N, C, H, W)``.

    Baking is needed on every target (the run-time interpolation is what no exporter handles: "kernel of unknown
    shape"); where :data:`GCC_BLOCK_FORM` says ``"unrolled"`` (onnxruntime) or ``"merged-cat"`` (MNN) and the block
    has no ``mid_mix``, the baked block is further rewritten to :class:`UnrolledGCCBlock` (``unroll=False`` for
    ``"merged-cat"``). Raises :class:`ExportError` when the recorded input is not 4-D.
    """
    _, _, h, w = nchw_input(module, GCCBlock, input_shape, "GCC block")
    baked = BakedGCCBlock(module, h, w)
    form = GCC_BLOCK_FORM.get(target, "baked")
    if form in ("unrolled", "merged-cat") and baked.mixer is None:
        return UnrolledGCCBlock(baked, pooled_ca=target in POOLED_CA_TARGETS, unroll=form == "unrolled")
    return baked


@register_lowering(GCC)
def lower_gcc(module: nn.Module, input_shape: tuple[int, ...], target: str) -> nn.Module:
    """Export-time rewrite: :class:`GCC` → :class:`BakedGCC` for the recorded ``(N, C, H, W)`` (every target).

    Raises :class:`ExportError` when the recorded input is not 4-D.
    """
    _, _, h, w = nchw_input(module, GCC, input_shape, "GCC")
    return BakedGCC(module, h if module.direction == "H" else w)
