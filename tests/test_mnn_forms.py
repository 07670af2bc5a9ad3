"""MNN's export forms (issue 22): the "merged-cat" GCC block (:class:`UnrolledGCCBlock` with ``unroll=False``).

Its equality with the official :class:`GCCBlock` (and, with PEs, the roll-based written-out block) is checked by
``tests/test_gcc.py::test_unrolled_block_equals_official``, parametrized over both targets; here: which target gets
which form, and the MNN export's parity.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import edgedeploy
from edgedeploy.nn.forms.gcc import GCC_BLOCK_FORM, BakedGCCBlock, UnrolledGCCBlock, lower_gcc_block
from edgedeploy.nn.gcc import GCCBlock
from tests.test_gcc import _randomise_norms_


def test_merged_cat_is_selected_for_mnn_only() -> None:
    """MNN gets merged-cat, onnxruntime keeps the unrolled kernels, every other target the baked block."""
    assert GCC_BLOCK_FORM["mnn"] == "merged-cat" and GCC_BLOCK_FORM["onnx"] == "unrolled"
    blk = GCCBlock(dim=8, meta_kernel_size=8, use_pe=True, ffn_dim=32).eval()
    shape = (1, 16, 8, 8)
    mnn, ort = lower_gcc_block(blk, shape, "mnn"), lower_gcc_block(blk, shape, "onnx")
    assert isinstance(mnn, UnrolledGCCBlock) and not mnn.unroll
    assert isinstance(ort, UnrolledGCCBlock) and ort.unroll and ort.gcc_h.kernel_size == (15, 1)
    for target in ("tflite", "coreml", "ncnn"):
        assert type(lower_gcc_block(blk, shape, target)) is BakedGCCBlock, target


class _TwoGCCBlocks(nn.Module):
    """A stem conv and two GCC blocks (one with PEs): a small network that reaches MNN's converter."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.b1 = GCCBlock(dim=16, meta_kernel_size=16, use_pe=True, ffn_dim=48)
        self.b2 = GCCBlock(dim=16, meta_kernel_size=16, use_pe=False, ffn_dim=48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b2(self.b1(self.stem(x)))


def test_mnn_export_of_merged_cat_passes_parity(tmp_path: Path) -> None:
    """edgedeploy.export to MNN: both blocks lowered to merged-cat, converted, parity passed against PyTorch."""
    pytest.importorskip("MNN")
    torch.manual_seed(8)
    model = _randomise_norms_(_TwoGCCBlocks()).eval()
    outcome = edgedeploy.export(model, "mnn", input_shape=(1, 3, 12, 12), out=tmp_path)
    assert outcome.parity.status == "passed", outcome.parity.to_dict()
    now = {r["module"]: r["now"] for r in outcome.manifest.lowering["registered"]}
    assert now == {"b1": "UnrolledGCCBlock", "b2": "UnrolledGCCBlock"}, now
    census = outcome.manifest.op_census
    # the GCCs: 2 blocks x (GCC-V, GCC-H) depth-wise convs, each fed by a Concat of the map and its slice
    assert census.get("ConvolutionDepthwise", 0) >= 4 and census.get("Concat", 0) >= 4, census
