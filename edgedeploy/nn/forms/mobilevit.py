"""The export forms of the MobileViT block: :class:`StaticMobileViTBlock` and :class:`ChannelsLastMobileViTBlock`
(:data:`MOBILEVIT_FORM`), with the attention forms :class:`FusedAttention` (SDPA) and
:class:`TorchMultiheadAttention` (``nn.MultiheadAttention``; :data:`ATTENTION_FORMS`). The block and its attention
are the MobileViT paper's (Mehta & Rastegari, ICLR 2022; apple/ml-cvnets ``MobileViTBlock`` /
``MultiHeadAttention``), rewritten only in layout.

Registered when :mod:`edgedeploy.nn.forms` is imported (see there); imports :mod:`edgedeploy.nn.mobilevit`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgedeploy.nn.layers import (
    ConvLayer,
)
from edgedeploy.nn.mobilevit import (
    MobileViTBlock,
    MultiHeadAttention,
    TransformerEncoder,
)
from edgedeploy.nn.rewrites import nchw_input, register_lowering


class _RecordedShapeBlock(nn.Module):
    """What both export forms of :class:`MobileViTBlock` keep of the recorded input ``(B, C, H, W)``: the shape
    (checked by :meth:`_check_shape`), the sizes of the official resize to patch multiples, and the patch grid."""

    def _record_shape(
        self, block: MobileViTBlock, input_shape: tuple[int, int, int, int]
    ) -> tuple[int, int, int, int, int, int]:
        """Set ``input_shape``, ``orig_size``, ``new_size``, ``interpolate``; return ``(B, d, p_h, p_w, n_h, n_w)``."""
        b, _, h, w = input_shape
        ph, pw = block.patch_h, block.patch_w
        new_h, new_w = int(math.ceil(h / ph) * ph), int(math.ceil(w / pw) * pw)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.orig_size = (int(h), int(w))
        self.new_size = (new_h, new_w)
        self.interpolate = (new_h, new_w) != (h, w)
        return b, block.local_rep.conv_1x1.out_channels, ph, pw, new_h // ph, new_w // pw

    def _check_shape(self, x: torch.Tensor) -> None:
        """``ValueError`` for an input of another shape than the recorded one (not checked under tracing)."""
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) and tuple(x.shape) != self.input_shape:
            raise ValueError(f"{type(self).__name__} built for {self.input_shape}, got {tuple(x.shape)}")


class StaticMobileViTBlock(_RecordedShapeBlock):
    """Export form of :class:`MobileViTBlock` for one input shape ``(B, C, H, W)``.

    Same submodules and numerics; unfold / fold are written with constant shapes and tensors of rank ≤ 4:

    * unfold: ``(B, d, H, W)`` → reshape ``(B·d·n_h, p_h, n_w, p_w)`` → transpose(1, 2) → reshape ``(B, d, N, P)``
      → transpose(1, 3) → ``(B, P, N, d)`` → reshape ``(B·P, N, d)``;
    * fold: the exact inverse.

    ``attention``: ``"official"`` (the source's :class:`MultiHeadAttention`) or a key of :data:`ATTENTION_FORMS`
    (``"sdpa"``, ``"torch-mha"``: ncnn's form). When ``H`` / ``W`` are not patch multiples, the bilinear resizes
    use constant sizes. Raises ``ValueError`` for an input of another shape; ``KeyError`` for an unknown
    ``attention``.
    """

    def __init__(
        self, block: MobileViTBlock, input_shape: tuple[int, int, int, int], attention: str = "official"
    ) -> None:
        super().__init__()
        self.local_rep = block.local_rep
        self.global_rep = _global_rep(block, attention)
        self.conv_proj = block.conv_proj
        self.fusion = block.fusion
        b, d, ph, pw, nh, nw = self._record_shape(block, input_shape)
        self.s_unfold_1 = (b * d * nh, ph, nw, pw)
        self.s_unfold_2 = (b, d, nh * nw, ph * pw)
        self.s_patches = (b * ph * pw, nh * nw, d)
        self.s_fold_1 = (b, ph * pw, nh * nw, d)
        self.s_fold_2 = (b * d * nh, nw, ph, pw)
        self.s_fm = (b, d, nh * ph, nw * pw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` at the recorded shape → same shape."""
        self._check_shape(x)
        res = x
        fm = self.local_rep(x)
        if self.interpolate:
            fm = F.interpolate(fm, size=self.new_size, mode="bilinear", align_corners=False)
        t = fm.reshape(self.s_unfold_1).transpose(1, 2)
        t = t.reshape(self.s_unfold_2).transpose(1, 3)
        patches = self.global_rep(t.reshape(self.s_patches))
        t = patches.reshape(self.s_fold_1).transpose(1, 3)
        t = t.reshape(self.s_fold_2).transpose(1, 2)
        fm = t.reshape(self.s_fm)
        if self.interpolate:
            fm = F.interpolate(fm, size=self.orig_size, mode="bilinear", align_corners=False)
        fm = self.conv_proj(fm)
        if self.fusion is not None:
            fm = self.fusion(torch.cat((res, fm), dim=1))
        return fm


class PointwiseChannelsLast(nn.Module):
    """A 1×1 :class:`ConvLayer` (conv → BatchNorm → activation, each optional) applied to channels-last tokens.

    ``(..., C_in)`` → ``(..., C_out)``: one ``Linear`` whose weight is the conv's ``(C_out, C_in)`` kernel with the
    BatchNorm folded in (eval mode: ``a = γ / √(var + ε)``, ``W' = a·W``, ``b' = a·(b − μ) + β``), then the
    layer's activation. Same numbers as the conv on an NCHW map, up to fp32 rounding of the folded product.
    Raises :class:`~edgedeploy.errors.ExportError` for a conv that is not 1×1, stride 1, ungrouped.
    """

    def __init__(self, layer: ConvLayer) -> None:
        super().__init__()
        from edgedeploy.errors import ExportError
        from edgedeploy.nn.folding import conv_bn_folded

        conv = layer.block.conv
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
            raise ExportError(f"PointwiseChannelsLast needs a 1×1 stride-1 ungrouped conv, got {conv}")
        w, b = conv_bn_folded(conv, getattr(layer.block, "norm", None))
        self.linear = nn.Linear(conv.in_channels, conv.out_channels, bias=True)
        with torch.no_grad():
            self.linear.weight.copy_(w.reshape(conv.out_channels, conv.in_channels))
            self.linear.bias.copy_(b)
        self.act: nn.Module = getattr(layer.block, "act", None) or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C_in)`` → ``(..., C_out)``."""
        return self.act(self.linear(x))


class FusedAttention(nn.Module):
    """:class:`MultiHeadAttention` through ``F.scaled_dot_product_attention``, so the ONNX export is one
    ``Attention`` op (opset 23): ``(B, S, C)`` → ``(B, S, C)``.

    Same parameters as the source (``qkv_proj``, ``out_proj`` shared): ``qkv_proj(x)`` is split into q, k, v,
    each ``(B, S, C)`` → ``(B, heads, S, head_dim)``, then ``softmax(q kᵀ · head_dim ** -0.5) v`` and the heads
    merged back before ``out_proj``. Exact up to fp32 rounding (the scale is applied to ``q kᵀ`` instead of to
    ``q``). At opset ≥ 23 torch's exporter writes the attention as one ``Attention`` node between the head-split
    / head-merge Transposes, and :func:`edgedeploy.export.onnx_passes.fold_attention_heads` hands onnxruntime the
    ``(B, S, C)`` tensors instead, so the heads are split inside its kernel: 9 Attention nodes in MobileViT-S
    instead of 9 × (FusedMatMul, Softmax, MatMul, 4 Transposes). :attr:`onnx_opset` is the opset the exporter
    picks for a module holding this one when no opset is asked for; at an explicit opset < 23 the exporter
    decomposes the attention into MatMul / Softmax, as for the official module.
    """

    #: the ONNX opset this module's export form needs (``Attention`` is opset 23)
    onnx_opset = 23

    def __init__(self, src: MultiHeadAttention) -> None:
        super().__init__()
        self.qkv_proj = src.qkv_proj
        self.out_proj = src.out_proj
        self.embed_dim, self.num_heads, self.head_dim = src.embed_dim, src.num_heads, src.head_dim
        self.scaling = src.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, C)`` → ``(B, S, C)``."""
        b, s, _ = x.shape
        q, k, v = (
            t.reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2)
            for t in torch.split(self.qkv_proj(x), self.embed_dim, dim=-1)
        )
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling)
        return self.out_proj(out.transpose(1, 2).reshape(b, s, self.embed_dim))


class TorchMultiheadAttention(nn.Module):
    """:class:`MultiHeadAttention` as one ``nn.MultiheadAttention`` (``batch_first``): ``(B, S, C)`` → ``(B, S, C)``.

    ``in_proj_weight`` / ``in_proj_bias`` are the source's fused ``qkv_proj`` (rows q, k, v, the same order as the
    source's ``split``), ``out_proj`` its output projection (copied: ``nn.MultiheadAttention`` owns a
    ``NonDynamicallyQuantizableLinear``). pnnx maps the module onto ncnn's native ``MultiHeadAttention`` layer.
    Exact up to fp32 rounding (torch scales q by ``head_dim ** -0.5`` as the source does).
    """

    def __init__(self, src: MultiHeadAttention) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(src.embed_dim, src.num_heads, bias=True, batch_first=True)
        with torch.no_grad():
            self.mha.in_proj_weight.copy_(src.qkv_proj.weight)
            self.mha.in_proj_bias.copy_(src.qkv_proj.bias)
            self.mha.out_proj.weight.copy_(src.out_proj.weight)
            self.mha.out_proj.bias.copy_(src.out_proj.bias)
        self.mha.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, C)`` → ``(B, S, C)``."""
        return self.mha(x, x, x, need_weights=False)[0]


#: attention name -> export form of :class:`MultiHeadAttention` (``"official"``: the module itself)
ATTENTION_FORMS: dict[str, type[nn.Module]] = {
    "sdpa": FusedAttention,
    "torch-mha": TorchMultiheadAttention,
}


class FusedAttentionTransformerEncoder(nn.Module):
    """A :class:`TransformerEncoder` whose attention is an export form (:data:`ATTENTION_FORMS`, default
    :class:`FusedAttention`); norms and FFN shared."""

    def __init__(self, src: TransformerEncoder, attention: str = "sdpa") -> None:
        super().__init__()
        mha = list(src.pre_norm_mha)
        self.pre_norm_mha = nn.Sequential(mha[0], ATTENTION_FORMS[attention](mha[1]), *mha[2:])
        self.pre_norm_ffn = src.pre_norm_ffn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, C)`` → ``(B, S, C)``."""
        x = x + self.pre_norm_mha(x)
        return x + self.pre_norm_ffn(x)


def _global_rep(block: MobileViTBlock, attention: str) -> nn.Module:
    """``block.global_rep`` with each :class:`TransformerEncoder`'s attention in the form ``attention``."""
    if attention == "official":
        return block.global_rep
    return nn.Sequential(
        *(
            FusedAttentionTransformerEncoder(m, attention) if isinstance(m, TransformerEncoder) else m
            for m in block.global_rep
        )
    )


class ChannelsLastMobileViTBlock(_RecordedShapeBlock):
    """Export form of :class:`MobileViTBlock` for one input shape whose unfold / fold move whole channel vectors.

    The official unfold is a transpose of single floats (each patch element of the ``d``-channel NCHW map goes
    elsewhere); here the map goes channels-last once and patches are gathered as contiguous ``d``-vectors:

    * ``local_rep.conv_3x3`` on the NCHW input → permute to ``(B, H, W, C)`` (onnxruntime folds this permute
      into the conv's NCHWc ``ReorderOutput``) → ``local_rep.conv_1x1`` as a channels-last Linear
      (:class:`PointwiseChannelsLast`) → ``(B, n_h, p_h, n_w, p_w, d)`` → permute ``(0, 2, 4, 1, 3, 5)`` →
      patches ``(B·P, N, d)``;
    * ``global_rep`` unchanged, or with ``fused_attention`` its attentions as :class:`FusedAttention` (``attention``:
      a key of :data:`ATTENTION_FORMS` instead); fold is the
      exact inverse permute → ``(B, H, W, d)`` → ``conv_proj`` as a
      channels-last Linear with its BatchNorm folded (+ SiLU) → permute to NCHW (folded into the fusion conv's
      ``ReorderInput``) → ``fusion`` on ``cat(input, ·)``. When the input is resized, ``conv_proj`` stays the NCHW
      conv after the resize back (its activation does not commute with the resize).

    Both 1×1 convs are per-pixel maps, so running them on tokens is exact (same patch order as the official
    ``unfolding``: ``patches[b·P + py·p_w + px, iy·n_w + ix] = fm[b, :, iy·p_h + py, ix·p_w + px]``). Tensors
    reach rank 6, so this form is for targets that take it (ONNX, MNN, TFLite; :func:`lower_mobilevit_block`).
    When ``H`` / ``W`` are not patch multiples the bilinear resizes run on the NCHW map with constant sizes.
    Raises ``ValueError`` for an input of another shape.
    """

    def __init__(
        self,
        block: MobileViTBlock,
        input_shape: tuple[int, int, int, int],
        fused_attention: bool = False,
        attention: str | None = None,
    ) -> None:
        super().__init__()
        self.local_rep = nn.Sequential()
        self.local_rep.add_module("conv_3x3", block.local_rep.conv_3x3)
        self.local_rep.add_module("conv_1x1", PointwiseChannelsLast(block.local_rep.conv_1x1))
        self.global_rep = _global_rep(block, attention or ("sdpa" if fused_attention else "official"))
        self.fusion = block.fusion
        b, d, ph, pw, nh, nw = self._record_shape(block, input_shape)
        # conv_proj's activation does not commute with the resize back to the input size: NCHW after the resize then
        self.conv_proj = block.conv_proj if self.interpolate else PointwiseChannelsLast(block.conv_proj)
        self.s_grid = (b, nh, ph, nw, pw, d)
        self.s_patches = (b * ph * pw, nh * nw, d)
        self.s_fold = (b, ph, pw, nh, nw, d)
        self.s_map = (b, nh * ph, nw * pw, d)

    def _project(self, t: torch.Tensor) -> torch.Tensor:
        """Folded channels-last map ``(B, H', W', d)`` → ``conv_proj`` output ``(B, C, H, W)`` at the input size."""
        if not self.interpolate:
            return self.conv_proj(t).permute(0, 3, 1, 2)
        fm = F.interpolate(t.permute(0, 3, 1, 2), size=self.orig_size, mode="bilinear", align_corners=False)
        return self.conv_proj(fm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` at the recorded shape → same shape."""
        self._check_shape(x)
        res = x
        fm = self.local_rep.conv_3x3(x)
        if self.interpolate:
            fm = F.interpolate(fm, size=self.new_size, mode="bilinear", align_corners=False)
        t = self.global_rep(self._unfold(self.local_rep.conv_1x1(fm.permute(0, 2, 3, 1))))
        fm = self._project(self._fold(t))
        if self.fusion is not None:
            fm = self.fusion(torch.cat((res, fm), dim=1))
        return fm

    def _unfold(self, t: torch.Tensor) -> torch.Tensor:
        """Channels-last map ``(B, H', W', d)`` → patches ``(B·P, N, d)`` (one rank-6 permute)."""
        return t.reshape(self.s_grid).permute(0, 2, 4, 1, 3, 5).reshape(self.s_patches)

    def _fold(self, t: torch.Tensor) -> torch.Tensor:
        """Patches ``(B·P, N, d)`` → channels-last map ``(B, H', W', d)``: the inverse of :meth:`_unfold`."""
        return t.reshape(self.s_fold).permute(0, 3, 1, 4, 2, 5).reshape(self.s_map)


#: per export target: the MobileViT block's export form; every other target (plug-ins included) gets ``"static"``.
#: MNN keeps the official attention and its ONNX the opset-20 export: MNN 3.6.1's converter refuses opset 23's
#: ``Attention`` ("These Op Not Support: ONNX::Attention"); channels-last 0.987× the naive MNN file, static 1.002×
#: (1 thread, CPU clock, AMD EPYC; ``benchmarks/results/lowering_forms_mnn.md``).
#: ncnn: the static (rank ≤ 4) block with each attention as one ``nn.MultiheadAttention``
#: (:class:`TorchMultiheadAttention`), which pnnx 20261020 maps onto ncnn's native ``MultiHeadAttention`` layer
#: (MobileViT-S: 325 → 199 ncnn layers, 36 head-split Permutes and 36 Reshapes gone). edgedeploy ÷ the naive pnnx
#: file 0.948 / 0.924 / 0.940 for MobileViT-S / XXS / XS @256 (the static form 0.990 / 0.996 / 1.007, the SDPA form
#: 0.962 / 0.907 / 0.943; 1 thread, CPU clock, AMD EPYC; ``benchmarks/results/lowering_forms_ncnn.md``).
#: TFLite (LiteRT, XNNPACK): the channels-last block with the official attention. litert_torch 0.10 converts its
#: rank-6 unfold / fold permutes as one TRANSPOSE each (MobileViT-S: 56 → 44 TRANSPOSE, 28 → 22 CONV_2D, 37 → 43
#: FULLY_CONNECTED); 0.963 / 0.978 / 0.977 × the naive ``litert_torch.convert`` file in three runs (same-file
#: controls 0.999 / 1.013 / 1.013), where the static form measured 0.996. Tried and dropped (not faster than the
#: control): the SDPA attention (litert_torch decomposes it into BATCH_MATMUL + SOFTMAX: 1.002),
#: ``nn.MultiheadAttention`` (1.010), a head-major attention (1.014), a head-batched attention (1.019), a rank-4
#: channels-last block (1.001; with head-major / SDPA / head-batched attention 0.987) and channels-last +
#: head-batched (0.987) (1 thread, CPU clock, AMD EPYC; ``benchmarks/results/lowering_forms_litert.md``; the
#: dropped forms live in ``benchmarks/mobilevit_trial_forms.py``, not here).
#: ``"static, <attention>"`` / ``"channels-last, <attention>"`` name a block with an :data:`ATTENTION_FORMS`
#: attention (``"channels-last, fused-attention"``: :class:`FusedAttention`).
MOBILEVIT_FORM: dict[str, str] = {
    "onnx": "channels-last, fused-attention",
    "mnn": "channels-last",
    "ncnn": "static, torch-mha",
    "tflite": "channels-last",
}


@register_lowering(MobileViTBlock)
def lower_mobilevit_block(module: nn.Module, input_shape: tuple[int, ...], target: str) -> nn.Module:
    """Export-time rewrite of :class:`MobileViTBlock` for the recorded input, per target (:data:`MOBILEVIT_FORM`).

    * ONNX, MNN: :class:`ChannelsLastMobileViTBlock` (ONNX also with :class:`FusedAttention`). MobileViT-S
      @256 against the naive export (torch 2.13's default ``torch.onnx.export`` + onnxsim, 2 threads, 12
      interleaved blocks, quiet 2-vCPU Xeon, plain onnxruntime sessions): channels-last 0.94×; with the
      attention as one opset-23 ``Attention`` on ``(B, S, C)`` tensors 0.89× (against the earlier head-major
      form with per-head projection MatMuls, 0.96×; ``benchmarks/results/lowering_forms_issue13.md``). The
      profile (``edgedeploy profile mobilevit_s --runtime onnxruntime``) showed the official unfold / fold and
      head-split Transposes as 3.0 ms of onnxruntime's 26.5 ms.
    * ncnn: :class:`StaticMobileViTBlock` with :class:`TorchMultiheadAttention` (ncnn's ``MultiHeadAttention``
      layer; measured faster than the static block with the official attention and than the SDPA form, which
      pnnx maps onto ncnn's ``SDPA`` layer: ``benchmarks/results/lowering_forms_ncnn.md``).
    * TFLite: :class:`ChannelsLastMobileViTBlock` with the official attention (LiteRT / XNNPACK runs the rank-6
      TRANSPOSE; 0.963–0.978× the naive file against the static form's 0.996×:
      ``benchmarks/results/lowering_forms_litert.md``).
    * every other target: :class:`StaticMobileViTBlock` (ranks ≤ 4: CoreML).

    Raises :class:`ExportError` when the recorded input is not 4-D.
    """
    n, c, h, w = nchw_input(module, MobileViTBlock, input_shape, "MobileViT block")
    form = MOBILEVIT_FORM.get(target, "static")
    attention = form.split(", ", 1)[1] if ", " in form else "official"
    if form.startswith("channels-last"):
        if attention == "fused-attention":
            return ChannelsLastMobileViTBlock(module, (n, c, h, w), fused_attention=True)
        return ChannelsLastMobileViTBlock(module, (n, c, h, w), attention=attention)
    return StaticMobileViTBlock(module, (n, c, h, w), attention=attention)
