"""Building blocks and one file per model family; each family file registers a builder in
:mod:`edgedeploy.zoo` with ``@register_family("name")``.

Public layers for your own networks (every one has a registered export rewrite, applied by
:func:`edgedeploy.export.lowering.lower` wherever the layer sits in a model):

* :class:`GCC` — one global circular convolution (GCC-V / GCC-H) with interpolated meta-kernel and PE,
  ``(N, C, H, W)`` → ``(N, C, H, W)`` (EdgeFormer paper Sec. 3.1, hkzhang91/EdgeFormer);
* :class:`GCCBlock` — the EdgeFormer meta-former block (GCC token mixer + FFN with SE channel attention),
  ``(N, 2·dim, H, W)`` → same;
* :class:`ChannelAttention`, :func:`circular_conv` (cat-then-conv), :func:`instance_param` (bilinear resize of a
  meta-kernel / PE), :func:`unrolled_circular_kernel` (a circular kernel as a zero-padded linear one);
* export forms: :class:`BakedGCCBlock` (constants, cat-then-conv) and :class:`UnrolledGCCBlock` (onnxruntime:
  no Split, unrolled kernels, BatchNorms folded);
* :func:`circular_pad`, :func:`roll_by_slices` — circular padding and ``torch.roll`` as Slice + Concat.

Layer 3 (models): imports only the base layer (errors, registry) and its own modules; nothing in
:mod:`edgedeploy.nn` imports :mod:`edgedeploy.export` (the rewrite table is :mod:`edgedeploy.nn.rewrites`).
Imported by ``zoo``, ``export`` (the lowering), the API and user code.
"""

from edgedeploy.nn import forms  # noqa: F401 - registers the families' export forms (see there)
from edgedeploy.nn.circular import circular_pad, roll_by_slices
from edgedeploy.nn.forms.gcc import BakedGCC, BakedGCCBlock, UnrolledGCCBlock, unrolled_circular_kernel
from edgedeploy.nn.gcc import GCC, ChannelAttention, GCCBlock, circular_conv, instance_param
from edgedeploy.nn.rewrites import LOWERINGS, register_lowering

__all__ = [
    "GCC",
    "LOWERINGS",
    "BakedGCC",
    "BakedGCCBlock",
    "ChannelAttention",
    "GCCBlock",
    "UnrolledGCCBlock",
    "circular_conv",
    "circular_pad",
    "instance_param",
    "register_lowering",
    "roll_by_slices",
    "unrolled_circular_kernel",
]
