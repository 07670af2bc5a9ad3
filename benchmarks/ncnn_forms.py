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
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from _threads import threads_from_argv

os.environ.setdefault("OPENBLAS_NUM_THREADS", threads_from_argv(sys.argv, "1"))

import tempfile

import numpy as np
import torch
from _common import (
    comma_choices,
    dual_interleaved,
    load_note,
    machine_description,
    machine_markdown,
    summarize_pair,
    write_results,
)
from naive_vs_edgedeploy import naive_ncnn

import edgedeploy
from edgedeploy.cards import get_card
from edgedeploy.data import real_image
from edgedeploy.nn import rewrites
from edgedeploy.nn.forms import gcc, mobilevit
from edgedeploy.nn.gcc import GCCBlock
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.runtimes.ncnn_rt import ncnn_op_census
from edgedeploy.zoo import build_model


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2·dim, H, W)`` at the recorded ``H, W`` → same shape."""
        t = torch.matmul(torch.matmul(self.m_h, x), self.m_w_t) + self.gcc_bias
        if self.pe_bias is not None:
            t = t + self.pe_bias
        x = x + t
        y = self.ffn(x)
        if self.ca is not None:
            y = self.ca(y)
        return x + y


def lower_gcc_block_circulant(module: Any, input_shape: tuple[int, ...], target: str) -> Any:
    """:func:`gcc.lower_gcc_block` with :class:`CirculantGCCBlock` for a block without ``mid_mix``."""
    baked = gcc.lower_gcc_block(module, input_shape, "baked")
    return CirculantGCCBlock(baked) if baked.mixer is None else baked


#: variant name → the table entries it sets: (module, table name, value[, key]); the key defaults to "ncnn"
VARIANTS: dict[str, list[tuple[Any, ...]]] = {
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


def export_variant(model: str, variant: str, folder: Path) -> Any:
    """``edgedeploy.export(model, "ncnn")`` with ``variant``'s table entries set; the tables are restored."""
    entries = [(mod, table, value, *(rest or ("ncnn",))) for mod, table, value, *rest in VARIANTS[variant]]
    saved = [(mod, table, getattr(mod, table).get(key), key) for mod, table, _, key in entries]
    try:
        for mod, table, value, key in entries:
            getattr(mod, table)[key] = value
        return edgedeploy.export(model, "ncnn", out=folder / variant)
    finally:
        for mod, table, value, key in saved:
            if value is None:
                getattr(mod, table).pop(key, None)
            else:
                getattr(mod, table)[key] = value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilevit_s")
    ap.add_argument("--variants", default="current", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    variants = comma_choices(args.variants, VARIANTS, "variant")
    torch.set_num_threads(args.threads)
    load_before = list(os.getloadavg())
    started = time.time()
    card = get_card(args.model)
    x = real_image(card.input_size)
    rt = get_runtime("ncnn")
    info: dict[str, Any] = {}
    fns = {}
    with tempfile.TemporaryDirectory(prefix="edgedeploy-ncnn-forms-") as tmp:
        folder = Path(tmp)
        module = build_model(card, card.input_size).eval()
        naive = naive_ncnn(module, torch.from_numpy(x), folder / f"{args.model}.naive.param")
        info["naive"] = {"ops": sum(ncnn_op_census(naive).values()), "op_census": ncnn_op_census(naive)}
        fns["naive"] = rt.load(naive, args.threads).prepare(x)
        for v in variants:
            outcome = export_variant(args.model, v, folder)
            census = outcome.manifest.op_census
            info[v] = {"parity": outcome.parity.status, "max_abs": outcome.parity.to_dict().get("max_abs_error"),
                       "ops": sum(census.values()), "op_census": census}  # fmt: skip
            print(f"   {v}: parity {info[v]['parity']} ({info[v]['max_abs']}), {info[v]['ops']} ops", flush=True)
            artifact = Path(outcome.artifact)
            if v == "gcc-merged-cat-hswish-fused":  # the post-pass must not change the artifact's outputs
                fused = folder / f"{v}.param"
                n_fused = fuse_conv_hardswish(artifact, fused)
                diff = float(
                    np.abs(np.asarray(rt.load(fused, 1).run(x)) - np.asarray(rt.load(artifact, 1).run(x))).max()
                )
                census = ncnn_op_census(fused)
                info[v].update(ops=sum(census.values()), op_census=census, fused_pairs=n_fused, vs_unfused=diff)
                info[v]["max_abs"] = f"{info[v]['max_abs']} (fused {n_fused} pairs; vs unfused {diff:.1e})"
                artifact = fused if diff <= 1e-6 else artifact
                print(f"   {v}: {n_fused} Convolution + HardSwish fused, max abs vs unfused {diff:.1e}", flush=True)
            if outcome.parity.status == "passed":
                fns[v] = rt.load(artifact, args.threads).prepare(x)
        fns["naive again"] = rt.load(naive, args.threads).prepare(x)
        cpu, wall = dual_interleaved(fns, args.blocks, args.iters)
    pairs = {k: summarize_pair(cpu["naive"], cpu[k]) for k in fns if k != "naive"}
    payload = {"model": args.model, "variants": variants, "args": vars(args), "info": info, "pairs": pairs,
               "wall_pairs": {k: summarize_pair(wall["naive"], wall[k]) for k in fns if k != "naive"},
               "samples_ms": cpu, "machine": machine_description(), "load_before": load_before,
               "load_after": list(os.getloadavg()), "wall_s": round(time.time() - started, 1)}  # fmt: skip
    m = payload["machine"]
    md = [
        f"# ncnn export forms, {args.model} @{card.input_size}\n\n",
        machine_markdown(m),
        f"{load_note(load_before[0], payload['load_after'][0], m['cores'])}. Clock: process CPU time; "
        f"{args.threads} thread(s); {args.blocks} interleaved blocks × {args.iters} runs per session.\n\n",
        "| session | median ms (CPU) | ÷ naive (paired) | slow blocks | ncnn layers | parity max abs |\n",
        "|---|---:|---:|---:|---:|---:|\n",
        f"| naive | {float(np.median(np.concatenate(cpu['naive']))):.2f} | 1 | – | {info['naive']['ops']} | – |\n",
    ]
    for k, p in pairs.items():
        i = info.get(k, info["naive"] if k == "naive again" else {})
        md.append(f"| {k} | {p['median_b_ms']:.2f} | {p['median_paired_ratio']:.3f} | {p['slow_blocks']} | "
                  f"{i.get('ops', '–')} | {i.get('max_abs', '–')} |\n")  # fmt: skip
    md += ["\n| session | " + " | ".join(CENSUS_TYPES) + " | all layers |\n",
           "|---|" + "---:|" * (len(CENSUS_TYPES) + 1) + "\n"]  # fmt: skip
    for k in ("naive", *variants):
        if k in info:
            c = info[k]["op_census"]
            md.append(f"| {k} | " + " | ".join(str(c.get(t, 0)) for t in CENSUS_TYPES) + f" | {info[k]['ops']} |\n")
    write_results(args.name or f"ncnn_forms_{args.model}", payload, "".join(md))
    print("".join(md))


if __name__ == "__main__":
    sys.exit(main())
