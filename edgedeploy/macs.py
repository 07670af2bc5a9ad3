"""MACs in the convention of the EMO and EdgeViT papers: fvcore's ``FlopCountAnalysis`` total.

The EMO paper (Tab. 7, 11) and the EdgeViT paper report "FLOPs" counted with fvcore, as the official repositories
do (``zhangzjn/EMO`` ``model/emo.py`` ``__main__``: ``FlopCountAnalysis(fn, x).total()``). fvcore counts one
multiply-accumulate as one "flop", so its total is a MAC count. Its default per-op rules (fvcore 0.1.5,
``fvcore/nn/jit_handles.py``), applied to a ``torch.jit.trace`` of a batch-1 forward pass in eval mode:

==========================  ==================================================================================
op                          MACs
==========================  ==================================================================================
convolution                 ``N · prod(weight.shape) · prod(out.shape[2:])`` (bias ignored); transposed conv
                            uses the *input* spatial size instead of the output's
linear                      ``prod(input.shape) · out_features`` (bias ignored)
matmul / mm / bmm / addmm   ``prod(a.shape) · b.shape[-1]``; einsum by its contraction
batch_norm (eval)           ``2 · numel(input)`` with affine, ``1 ·`` without
layer_norm / group_norm     ``5 · numel(input)`` with affine, ``4 ·`` without; instance_norm the same
adaptive_avg_pool2d         ``numel(input)``
upsample nearest / bilinear ``1 · / 4 · numel(output)``
everything else             0: activations, softmax, additions, ``mean``, ``avg_pool2d``, slicing, reshapes
==========================  ==================================================================================

So the paper figure is the ``conv + linear + matmul`` count of :func:`edgedeploy.zoo.count_macs` plus the norms
(and adaptive pooling / upsampling where present); global average pooling written as ``x.mean(...)`` (EMO,
EdgeViT) counts 0. With these rules the official EdgeViT-XXS / XS / S and EMO-1M / 2M / 5M / 6M count
557,457,984 / 1,136,470,560 / 1,923,271,008 and 260,843,664 / 439,363,064 / 902,583,776 / 960,752,512 at 224×224,
the papers' 557M / 1136M / 1.9G and 261M / 439M / 903M / 961M.

fvcore (PyPI ``fvcore``, pure Python, depends neither on torchvision nor on a particular torch) is an optional
package; without it :class:`~edgedeploy.errors.MissingExtraError` names the extra to install.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from edgedeploy.errors import MissingExtraError

__all__ = ["FVCORE_EXTRA", "count_macs_paper_convention", "macs_by_operator_paper_convention"]

#: the pip extra that provides fvcore
FVCORE_EXTRA = "macs"


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes.items():
            m.train(training)


def _analysis(module: nn.Module, input_size: int):  # -> fvcore.nn.FlopCountAnalysis (optional import)
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError as e:
        raise MissingExtraError("fvcore", FVCORE_EXTRA, "MAC counts in the EMO / EdgeViT papers' convention") from e
    x = torch.zeros(1, 3, input_size, input_size)
    analysis = FlopCountAnalysis(module, (x,))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def macs_by_operator_paper_convention(module: nn.Module, input_size: int) -> dict[str, int]:
    """fvcore's per-operator MACs (``conv``, ``linear``, ``matmul``, ``batch_norm``, ``layer_norm``, …) of one
    batch-1 forward pass on a ``(1, 3, input_size, input_size)`` NCHW input, in eval mode.

    ``module`` is put in eval mode for the count and restored afterwards. Raises
    :class:`~edgedeploy.errors.MissingExtraError` without fvcore.
    """
    with _eval_mode(module), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger = logging.getLogger("fvcore")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            analysis = _analysis(module, input_size)
            return {op: int(n) for op, n in analysis.by_operator().items()}
        finally:
            logger.setLevel(level)


def count_macs_paper_convention(module: nn.Module, input_size: int) -> int:
    """Total MACs of a batch-1 forward pass at ``input_size``×``input_size`` in the EMO / EdgeViT papers' convention.

    fvcore's ``FlopCountAnalysis(...).total()`` with its default op rules (see the module docstring): convs,
    linears and matmuls plus norms and adaptive pooling; activations, softmax, element-wise ops and ``mean``
    count 0. A count (FLOPs = 2 × MACs), not millions. Raises :class:`~edgedeploy.errors.MissingExtraError`
    without fvcore.
    """
    return sum(macs_by_operator_paper_convention(module, input_size).values())
