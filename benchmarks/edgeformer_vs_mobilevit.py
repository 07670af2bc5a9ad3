"""EdgeFormer-S vs MobileViT-S on onnxruntime, MNN and PyTorch eager: same threads, interleaved, 100 iterations each.

The EdgeFormer paper (Table 2 / §4) reports 353 ms vs 457 ms on an RK3288 board (ONNX → MNN, batch 1, 100
iterations): a ratio of 0.77. This suite measures the same ratio on this machine per runtime. Both models are
exported by edgedeploy (lowered, parity-checked) and timed in one process, interleaved A B / B A in blocks of
``--per-block`` iterations, so a slow phase of the host hits both. Usage::

    python benchmarks/edgeformer_vs_mobilevit.py [--threads 2] [--blocks 10] [--per-block 10]
"""

from __future__ import annotations

from _common import machine_description, machine_markdown, pair_parser, publish, time_pair

A, B = "mobilevit_s", "edgeformer_s"
PAPER_RATIO = 353 / 457


def main() -> None:
    args = pair_parser(__doc__, blocks=10, runtimes="onnxruntime,mnn,torch").parse_args()
    machine = machine_description()
    rows = {}
    for runtime in args.runtimes.split(","):
        r = rows[runtime] = time_pair(A, B, runtime, args)
        print(
            f"{runtime:12s} MobileViT-S {r['median_a_ms']:7.2f} ms  EdgeFormer-S {r['median_b_ms']:7.2f} ms  "
            f"ratio {r['ratio_of_medians']:.3f} (paired {r['median_paired_ratio']:.3f}; paper 0.772)  "
            f"slow blocks {r['slow_blocks']}/{r['blocks']}",
            flush=True,
        )
    md = [
        "# EdgeFormer-S vs MobileViT-S (batch 1, 256×256, fp32)\n",
        machine_markdown(machine),
        f"\n{args.threads} threads; {args.blocks} blocks × {args.per_block} iterations per model and runtime, "
        "interleaved A B / B A; medians over all samples; paired ratio = median over blocks of the block-median "
        "ratio; a block is slow when either model's block median exceeds 1.3× its fastest block.\n",
        "\n| runtime | MobileViT-S p50 (ms) | EdgeFormer-S p50 (ms) | EdgeFormer/MobileViT | paired ratio | "
        "quiet-block ratio | paper (RK3288, MNN) | slow blocks |\n|---|---|---|---|---|---|---|---|\n",
    ]
    for runtime, r in rows.items():
        quiet = f"{r['median_paired_ratio_quiet']:.3f}" if r["median_paired_ratio_quiet"] else "–"
        md.append(
            f"| {runtime} | {r['median_a_ms']:.2f} | {r['median_b_ms']:.2f} | {r['ratio_of_medians']:.3f} | "
            f"{r['median_paired_ratio']:.3f} | {quiet} | {PAPER_RATIO:.3f} (353 / 457 ms) | "
            f"{r['slow_blocks']}/{r['blocks']} |\n"
        )
    publish("edgeformer_vs_mobilevit", machine, args, rows, md)


if __name__ == "__main__":
    main()
