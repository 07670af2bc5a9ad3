"""The export form of EMO's iRMB block: :class:`LoweredIRMB` (static windows, 4-D or merge-first; :data:`IRMB_FORM` per
target).

Registered when :mod:`edgedeploy.nn.forms` is imported (see there); imports :mod:`edgedeploy.nn.emo`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgedeploy.errors import ConfigError
from edgedeploy.nn.emo import (
    iRMB,
    window_merge,
    window_merge_4d,
    window_padding,
    window_partition,
    window_partition_4d,
)
from edgedeploy.nn.rewrites import register_lowering

# ---------------------------------------------------------------------------------------------------------------------
# export lowering


class LoweredIRMB(nn.Module):
    """An attention :class:`iRMB` for one fixed input shape ``(B, C, H, W)``: static shapes, explicit attention.

    Shares the original's submodules (same parameter names). q and k are slices of the ``(b, 2·heads, head_dim,
    hw)`` view of the ``qk`` conv output; attention is ``softmax((qᵀ k) · scale)`` by ``torch.matmul``; with
    ``attn_pre`` the windowed input in its channel-major ``(b, heads, head_dim, hw)`` view is multiplied by
    ``attnᵀ``, so no token-major transpose of the values is needed. Only valid for the recorded shape.

    ``form`` (chosen per target by :func:`lower_irmb`):

    * ``"4d"``: window partition / merge by :func:`window_partition_4d` / :func:`window_merge_4d` (every tensor at
      most 4-D; CoreML, ncnn, TFLite); the value projection ``v`` runs on the windows, as in the official code;
    * ``"merge-first"``: the training-time 6-D partition / merge (:func:`window_partition` / :func:`window_merge`),
      and with ``attn_pre`` the windows are merged (and the padding cropped) *before* ``v``. ``v`` is a 1×1 conv →
      (no norm) → activation, a per-pixel map, so it commutes with any permutation or crop of the pixels: the
      result is the same numbers, but the merge moves ``dim_in`` channels instead of ``dim_mid = exp_ratio·dim_in``
      (4× fewer for EMO-5M's stage 3) and ``v`` skips the padded pixels.

    A single unpadded window (``n1 = n2 = 1``) skips partition and merge in both forms.
    """

    def __init__(self, src: iRMB, input_shape: tuple[int, ...], form: str = "4d") -> None:
        super().__init__()
        if form not in IRMB_FORMS:
            raise ConfigError(f"unknown iRMB lowering form {form!r} (known: {', '.join(IRMB_FORMS)})")
        self.form = form
        B, C, H, W = (int(s) for s in input_shape)
        self.norm, self.qk, self.v = src.norm, src.qk, src.v
        self.conv_local, self.se, self.proj = src.conv_local, src.se, src.proj
        self.has_skip, self.attn_pre = src.has_skip, src.attn_pre
        self.heads, self.dim_head, self.scale = src.num_head, src.dim_head, src.scale
        self.B, self.C, self.H, self.W, self.dim_mid = B, C, H, W, src.dim_mid
        self.ws_h, self.ws_w, self.pad_b, self.pad_r, self.n1, self.n2 = window_padding(H, W, src.window_size)
        self.windowed = self.n1 * self.n2 > 1

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        B, C = self.B, self.C
        ws_h, ws_w, n1, n2 = self.ws_h, self.ws_w, self.n1, self.n2
        heads, dh, hw = self.heads, self.dim_head, ws_h * ws_w
        b = B * n1 * n2
        if self.pad_b or self.pad_r:
            x = F.pad(x, (0, self.pad_r, 0, self.pad_b))
        six_d = self.form == "merge-first"
        if self.windowed:
            x = window_partition(x, ws_h, ws_w) if six_d else window_partition_4d(x, B, C, ws_h, ws_w, n1, n2)
        qk = self.qk(x).reshape(b, 2 * heads, dh, hw)
        q = qk[:, :heads]
        k = qk[:, heads:]
        attn = torch.softmax(torch.matmul(q.transpose(2, 3), k) * self.scale, dim=-1)  # (b, heads, hw, hw)
        if self.attn_pre:
            out = torch.matmul(x.reshape(b, heads, dh, hw), attn.transpose(2, 3)).reshape(b, C, ws_h, ws_w)
            if six_d:  # v is per-pixel: merge and crop the dim_in-channel map first, then expand
                return self.v(self._merge(out, C))
            out = self.v(out)
        else:
            v = self.v(x).reshape(b, heads, self.dim_mid // heads, hw)
            out = torch.matmul(v, attn.transpose(2, 3)).reshape(b, self.dim_mid, ws_h, ws_w)
        return self._merge(out, self.dim_mid)

    def _merge(self, out: torch.Tensor, channels: int) -> torch.Tensor:
        """Windows ``(B·n1·n2, channels, ws_h, ws_w)`` back to the ``(B, channels, H, W)`` map (padding cropped)."""
        if self.windowed:
            if self.form == "merge-first":
                out = window_merge(out, self.n1, self.n2)
            else:
                out = window_merge_4d(out, self.B, channels, self.ws_h, self.ws_w, self.n1, self.n2)
        if self.pad_b or self.pad_r:
            out = out[:, :, : self.H, : self.W]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.attention(self.norm(x))
        x = x + self.se(self.conv_local(x)) if self.has_skip else self.se(self.conv_local(x))
        x = self.proj(x)
        return shortcut + x if self.has_skip else x


#: the :class:`LoweredIRMB` forms
IRMB_FORMS = ("4d", "merge-first")
#: per export target: the :class:`LoweredIRMB` form; every other target (plug-ins included) gets ``"4d"``
IRMB_FORM: dict[str, str] = {"onnx": "merge-first", "mnn": "merge-first"}


@register_lowering(iRMB)
def lower_irmb(module: iRMB, input_shape: tuple[int, ...], target: str) -> nn.Module:
    """Rewrite an attention :class:`iRMB` into a :class:`LoweredIRMB` of the target's form (:data:`IRMB_FORM`).

    Measured, per target:

    * ONNX and MNN: ``"merge-first"``. EMO-5M @224 against the naive export of the same module (torch 2.13's
      default ``torch.onnx.export`` + onnxsim; 2 threads, 10 interleaved blocks × 10 runs, quiet 2-vCPU Xeon,
      ``benchmarks/naive_vs_edgedeploy.py``): onnxruntime 0.76×, MNN 0.94× of the naive latency. The profile
      (``edgedeploy profile emo_5m --runtime onnxruntime``) showed why: the official form's window merge is a
      6-D Transpose of the ``dim_mid``-channel map, 0.59 ms of each stage-3 block's 1.2 ms on onnxruntime.
      Against the 4-D form, onnxruntime ran the 6-D partition 1.47× faster and MNN 1.08× faster (EMO-1M,
      ``benchmarks/results/lowering_ablation.md``), so merge-first keeps the 6-D partition.
    * CoreML (tensors of rank ≤ 5), ncnn (≤ 4-D: pnnx 20261020 leaves the 6-D ``Tensor.reshape`` and
      ``torch.unbind`` unconverted) and TFLite (indifferent, ratio 1.00): ``"4d"``.

    Blocks without attention are never rewritten.
    """
    if not module.attn_s:
        return module
    return LoweredIRMB(module, input_shape, IRMB_FORM.get(target, "4d"))
