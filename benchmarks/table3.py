"""The EdgeFormer paper's Table 3 comparison on this machine: each ParC/GCC plug-in against its plain baseline, and
EdgeFormer-S against MobileViT-S, per runtime — medians and ratios measured in one run.

Pairs (baseline, plug-in): (mobilenetv2, parc_mobilenetv2), (resnet50, parc_resnet50), (convnext_xt,
parc_convnext_xt), (mobilevit_s, edgeformer_s). Each pair is exported by edgedeploy (lowered, parity-checked),
timed interleaved A B / B A in blocks inside one process, batch 1, fp32. Usage::

    python benchmarks/table3.py [--threads 2] [--blocks 6] [--per-block 10] [--runtimes onnxruntime,mnn]
"""

from __future__ import annotations

from _common import machine_description, machine_markdown, pair_parser, publish, time_pair

from edgedeploy.cards import get_card
from edgedeploy.zoo import build_model, count_macs, count_params

PAIRS = [
    ("mobilenetv2", "parc_mobilenetv2"),
    ("resnet50", "parc_resnet50"),
    ("convnext_xt", "parc_convnext_xt"),
    ("mobilevit_s", "edgeformer_s"),
]


def main() -> None:
    args = pair_parser(__doc__, blocks=6, runtimes="onnxruntime,mnn").parse_args()
    machine = machine_description()
    rows = []
    for base, plug in PAIRS:
        mb, mp = build_model(base), build_model(plug)
        size = get_card(base).input_size
        info = {
            "params": (count_params(mb), count_params(mp)),
            "macs": (count_macs(mb, size).total, count_macs(mp, size).total),
        }
        for runtime in args.runtimes.split(","):
            r = time_pair(base, plug, runtime, args)
            rows.append({"baseline": base, "plugin": plug, "runtime": runtime, **info, **r})
            print(
                f"{runtime:12s} {base:12s} {r['median_a_ms']:8.2f} ms  {plug:17s} {r['median_b_ms']:8.2f} ms  "
                f"ratio {r['ratio_of_medians']:.3f} (paired {r['median_paired_ratio']:.3f})  "
                f"slow blocks {r['slow_blocks']}/{r['blocks']}",
                flush=True,
            )
    md = [
        "# EdgeFormer paper Table 3 on this machine: plug-in vs baseline latency (batch 1, fp32)\n\n",
        machine_markdown(machine),
        f"\n{args.threads} threads; {args.blocks} blocks × {args.per_block} iterations per model, interleaved "
        "A B / B A within each pair and runtime; p50 over all samples; MACs = conv + linear + matmul "
        "(torch FlopCounterMode); a block is slow when a block median exceeds 1.3× the model's fastest block.\n\n",
        "| runtime | baseline | params | MACs | p50 (ms) | plug-in | params | MACs | p50 (ms) | plug-in / baseline "
        "| paired ratio | slow blocks |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    ]
    for r in rows:
        md.append(
            f"| {r['runtime']} | {r['baseline']} | {r['params'][0] / 1e6:.2f}M | {r['macs'][0] / 1e9:.2f}G | "
            f"{r['median_a_ms']:.2f} | {r['plugin']} | {r['params'][1] / 1e6:.2f}M | {r['macs'][1] / 1e9:.2f}G | "
            f"{r['median_b_ms']:.2f} | {r['ratio_of_medians']:.3f} | {r['median_paired_ratio']:.3f} | "
            f"{r['slow_blocks']}/{r['blocks']} |\n"
        )
    publish("table3", machine, args, rows, md)


if __name__ == "__main__":
    main()
