"""Export forms for ncnn, A/B: each variant's parity-checked ncnn artifact against the naive ncnn file, interleaved.

For one zoo model: the naive ncnn pair (``torch.jit.trace`` of the un-lowered module + pnnx with only
``inputshape``, as ``naive_vs_edgedeploy.py`` makes it), then one ``edgedeploy.export(model, "ncnn")`` per variant
with the variant's form-table entries set for target ``"ncnn"`` (parity must pass, else the variant is reported and
not timed), all loaded in one process with edgedeploy's ncnn runtime (``--threads``, fp32) and timed in interleaved
blocks (order reversed every other block) on the process-CPU-time clock; a second session of the naive file
(``naive again``) is the same-file control. Ratios are medians of per-block paired ratios variant / naive.

    taskset -c 0 python benchmarks/ncnn_forms.py --model mobilevit_s --variants mobilevit-static,mobilevit-sdpa
    taskset -c 0 python benchmarks/ncnn_forms.py --model edgeformer_s --variants gcc-baked,gcc-unrolled,gcc-merged-cat

The markdown also lists, per session, the ncnn layer census of the layer types that move data rather than compute
(Crop, Concat, Split, Permute, Reshape, ...; :data:`CENSUS_TYPES`): where a form's layout round trips show.

Writes ``benchmarks/results/<name>.json`` / ``.md`` (``--name``, default ``ncnn_forms_<model>``).
The shared loop is ``_common.run_forms``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from _threads import threads_from_argv

os.environ.setdefault("OPENBLAS_NUM_THREADS", threads_from_argv(sys.argv, "1"))

import torch
from _common import FormEntry, FormsRun, forms_parser, run_forms
from naive_vs_edgedeploy import naive_ncnn

from edgedeploy.nn import rewrites
from edgedeploy.nn.forms import gcc, mobilevit
from edgedeploy.nn.gcc import GCCBlock
from edgedeploy.runtimes.ncnn_rt import ncnn_op_census


class CirculantGCCBlock(gcc.UnrolledGCCBlock):
    """Trial form (benchmark only): the merged-cat block with each GCC as a batched MatMul by a circulant matrix.

    ``(N, 2·dim, H, W)`` → same shape. A full-length circular depth-wise conv along H is, per channel ``c``, the
    product ``M_c x_c`` with ``M_c[i, j] = k_c[(j − i) mod H]`` (``(C, H, H)``), along W ``x_c M_c^T``: the same MACs
    as cat-then-conv, run by ncnn's ``MatMul`` (GEMM) instead of ``ConvolutionDepthWise`` with an ``n``-long kernel,
    and no Crop / Concat.
    """

    def __init__(self, baked: gcc.BakedGCCBlock, pooled_ca: bool = False) -> None:
        super().__init__(baked, pooled_ca=pooled_ca, unroll=False)
        h, w = self.size
        with torch.no_grad():
            k_h, k_w = self.gcc_h.weight[:, 0, :, 0], self.gcc_w.weight[:, 0, 0, :]  # (C, H), (C, W)
            i_h, i_w = torch.arange(h), torch.arange(w)
            m_h = k_h[:, (i_h[None, :] - i_h[:, None]) % h]  # (C, H, H): m_h[c, i, j] = k_h[c, (j - i) mod H]
            m_w_t = k_w[:, (i_w[:, None] - i_w[None, :]) % w]  # (C, W, W): m_w_t[c, j, i] = k_w[c, (j - i) mod W]
        self.register_buffer("m_h", m_h.contiguous())
        self.register_buffer("m_w_t", m_w_t.contiguous())
        self.register_buffer("gcc_bias", self.gcc_w.bias.detach().clone()[:, None, None])

    def circular_convs(self, x: torch.Tensor) -> torch.Tensor:
        """The two GCCs as circulant products: ``(N, 2·dim, H, W)`` → same shape (bias included)."""
        return torch.matmul(torch.matmul(self.m_h, x), self.m_w_t) + self.gcc_bias


def lower_gcc_block_circulant(module: Any, input_shape: tuple[int, ...], target: str) -> Any:
    """:func:`gcc.lower_gcc_block` with :class:`CirculantGCCBlock` for a block without ``mid_mix``."""
    baked = gcc.lower_gcc_block(module, input_shape, "baked")
    return CirculantGCCBlock(baked) if baked.mixer is None else baked


#: variant name → the form-table entries it sets (:data:`_common.FormEntry`; the key defaults to "ncnn")
VARIANTS: dict[str, list[FormEntry]] = {
    "current": [],
    "mobilevit-static": [(mobilevit, "MOBILEVIT_FORM", "static")],
    "mobilevit-sdpa": [(mobilevit, "MOBILEVIT_FORM", "static, sdpa")],
    "mobilevit-torch-mha": [(mobilevit, "MOBILEVIT_FORM", "static, torch-mha")],
    "gcc-baked": [(gcc, "GCC_BLOCK_FORM", "baked")],
    "gcc-unrolled": [(gcc, "GCC_BLOCK_FORM", "unrolled")],
    "gcc-merged-cat": [(gcc, "GCC_BLOCK_FORM", "merged-cat")],
    "gcc-circulant": [(rewrites, "LOWERINGS", lower_gcc_block_circulant, GCCBlock)],
}

VARIANTS["gcc-merged-cat-hswish-fused"] = VARIANTS["gcc-merged-cat"]


def fuse_conv_hardswish(param: Path, out: Path) -> int:
    """Trial post-pass (benchmark only): every ``Convolution → HardSwish`` pair whose conv output feeds only the
    HardSwish becomes one ``Convolution`` with ncnn's fused activation 6 (hard-swish, ``10 = [alpha, beta]``), which
    pnnx 20261020 does not fuse (it fuses ReLU, Clip, Sigmoid, Mish). Writes ``out`` (``.param``) and a copy of the
    ``.bin`` next to it; returns the number of pairs fused."""
    lines = param.read_text().splitlines()
    rows = [line.split() for line in lines[2:]]
    producer, consumers = {}, {}
    for i, r in enumerate(rows):
        n_in, n_out = int(r[2]), int(r[3])
        for b in r[4 : 4 + n_in]:
            consumers.setdefault(b, []).append(i)
        for b in r[4 + n_in : 4 + n_in + n_out]:
            producer[b] = i
    dropped = set()
    for i, r in enumerate(rows):
        if r[0] != "HardSwish" or r[4] not in producer:
            continue
        conv = rows[producer[r[4]]]
        if conv[0] != "Convolution" or len(consumers[r[4]]) != 1 or any(t.startswith("9=") for t in conv):
            continue
        params = dict(t.split("=", 1) for t in r[6:])
        conv[4 + int(conv[2])] = r[5]
        conv += ["9=6", f"-23310=2,{params.get('0', '0.2')},{params.get('1', '0.5')}"]
        dropped.add(i)
    counts = lines[1].split()
    counts[0] = str(int(counts[0]) - len(dropped))
    kept = [" ".join(r) for i, r in enumerate(rows) if i not in dropped]
    out.write_text("\n".join([lines[0], " ".join(counts), *kept]) + "\n")
    out.with_suffix(".bin").write_bytes(param.with_suffix(".bin").read_bytes())
    return len(dropped)


#: ncnn layer types listed per session in the markdown's census table (data movement and the GCCs' own layers)
CENSUS_TYPES = ("Crop", "Concat", "Split", "Slice", "Permute", "Reshape", "Padding", "BinaryOp", "BatchNorm",
                "ConvolutionDepthWise", "Convolution")  # fmt: skip


#: ncnn layer types listed per session in the markdown's census table (data movement and the GCCs' own layers)
CENSUS_TYPES = ("Crop", "Concat", "Split", "Slice", "Permute", "Reshape", "Padding", "BinaryOp", "BatchNorm",
                "ConvolutionDepthWise", "Convolution")  # fmt: skip


def hswish_post_pass(param: Path, folder: Path) -> tuple[Path, str]:
    """:func:`fuse_conv_hardswish` of the exported ``.param`` into ``folder``: (the fused file, a note)."""
    fused = folder / "gcc-merged-cat-hswish-fused.param"
    return fused, f"fused {fuse_conv_hardswish(param, fused)} Convolution + HardSwish pairs"


def make_naive(module: Any, x: Any, folder: Path) -> Path:
    """The naive ncnn pair of ``module`` in ``folder`` (the .param path; reused when present: ``--cache-dir``)."""
    return naive_ncnn(module, x, folder / f"{folder.name}.naive.param")


def main() -> None:
    args = forms_parser(__doc__, VARIANTS, "mobilevit_s").parse_args()
    post = {"gcc-merged-cat-hswish-fused": hswish_post_pass}
    spec = FormsRun("ncnn", "ncnn", "ncnn", VARIANTS, make_naive, ncnn_op_census, post, CENSUS_TYPES)
    run_forms(spec, args)


if __name__ == "__main__":
    main()
