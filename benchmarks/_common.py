"""Shared pieces of the benchmark suites: interleaved A/B timing in short blocks, machine description, tables.

This machine alternates between quiet and slow phases (TOOLCHAIN_NOTES.md, "Timing on this machine"), so suites
never time A for a minute and then B: they interleave A B A B in short blocks inside one process, report per-block
paired ratios and overall medians, and count the blocks that ran in a slow phase.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import edgedeploy
from edgedeploy.bench.envinfo import local_fingerprint
from edgedeploy.bench.harness import measure
from edgedeploy.cards import get_card
from edgedeploy.data import real_image
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.runtimes.torch_rt import TorchRuntime
from edgedeploy.zoo import build_model

RESULTS = Path(__file__).resolve().parent / "results"
#: the side of the fp32 GEMM whose speed is the machine's compute ceiling (TOOLCHAIN_NOTES.md)
GEMM_N = 2048


def infer_for(model: str, runtime: str, threads: int) -> Callable[[], Any]:
    """A zero-argument batch-1 inference on the embedded photo: exported (cached) and parity-checked, or eager."""
    size = get_card(model).input_size
    x = real_image(size)
    if runtime == "torch":
        return TorchRuntime.from_module(build_model(model), (1, 3, size, size), threads).prepare(x)
    rt = get_runtime(runtime)
    outcome = edgedeploy.export(model, rt.formats[0], cache=True)  # the public API; cached like `bench MODEL`
    if outcome.parity.status != "passed":
        raise SystemExit(f"{model} {rt.formats[0]}: parity {outcome.parity.status}; refusing to time a wrong model")
    return rt.load(outcome.artifact, threads).prepare(x)


#: the SIMD flags of /proc/cpuinfo that matter for these runtimes' kernels, in this order
CPU_FLAGS_OF_INTEREST = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                         "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")  # fmt: skip


def cpu_flags() -> list[str]:
    """Which of :data:`CPU_FLAGS_OF_INTEREST` this CPU has (from /proc/cpuinfo; empty when unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return [f for f in CPU_FLAGS_OF_INTEREST if f in have]


def machine_description() -> dict[str, Any]:
    """CPU, cores, versions and the load average at the time of the call."""
    env = local_fingerprint()
    env["loadavg_1_5_15"] = list(os.getloadavg())
    env["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return env


def interleaved(
    infers: dict[str, Callable[[], Any]], blocks: int, per_block: int, warmup: int = 2
) -> dict[str, list[list[float]]]:
    """Time each callable in turn, ``blocks`` times, ``per_block`` timed iterations each (ms samples per block)."""
    for infer in infers.values():
        for _ in range(warmup):
            infer()
    out: dict[str, list[list[float]]] = {k: [] for k in infers}
    for b in range(blocks):
        order = list(infers) if b % 2 == 0 else list(reversed(infers))  # A B, then B A: no position bias
        for name in order:
            out[name].append(measure(infers[name], iterations=per_block, warmup=0).samples_ms)
    return out


def dual_interleaved(
    fns: dict[str, Callable[[], Any]], blocks: int, iters: int, warmup: int = 2
) -> tuple[dict[str, list[list[float]]], dict[str, list[list[float]]]]:
    """Like ``_common.interleaved``, recording per inference both the *process CPU time* and the wall time (ms).

    With ``--threads 1`` (no worker threads, so nothing spins) CPU time is the work an inference does, nearly
    independent of how the scheduler shares an oversubscribed host — the wall clock is not (TOOLCHAIN_NOTES.md).
    """
    for f in fns.values():
        for _ in range(warmup):
            f()
    cpu: dict[str, list[list[float]]] = {k: [] for k in fns}
    wall: dict[str, list[list[float]]] = {k: [] for k in fns}
    for b in range(blocks):
        order = list(fns) if b % 2 == 0 else list(reversed(fns))
        for name in order:
            cb, wb = [], []
            f = fns[name]
            for _ in range(iters):
                c0, w0 = time.process_time(), time.perf_counter()
                f()
                w1, c1 = time.perf_counter(), time.process_time()
                cb.append((c1 - c0) * 1e3)
                wb.append((w1 - w0) * 1e3)
            cpu[name].append(cb)
            wall[name].append(wb)
    return cpu, wall


def gemm_ceiling(reps: int) -> list[dict[str, float]]:
    """``reps`` timings of a 2048³ fp32 ``numpy.matmul`` (OpenBLAS, ``OPENBLAS_NUM_THREADS`` threads).

    OpenBLAS reads ``OPENBLAS_NUM_THREADS`` when numpy is first imported: a script sets it before importing this
    module.

    Each entry: ``cpu_s``, ``wall_s`` and the GMAC/s of each (2048³ multiply-accumulates per product).
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    b = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)  # warm-up (OpenBLAS buffers)
    out = []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        np.matmul(a, b, out=c)
        w1, c1 = time.perf_counter(), time.process_time()
        out.append({"cpu_s": c1 - c0, "wall_s": w1 - w0,
                    "gmacs_cpu": GEMM_N**3 / (c1 - c0) / 1e9, "gmacs_wall": GEMM_N**3 / (w1 - w0) / 1e9})  # fmt: skip
    return out


def summarize_pair(a: list[list[float]], b: list[list[float]], slow_factor: float = 1.3) -> dict[str, Any]:
    """Medians of A and B over all samples, per-block ratios B/A, and how many blocks ran slow.

    A block is "slow" when its median exceeds ``slow_factor`` × the fastest block median of the same model.
    """
    med_a = [float(np.median(x)) for x in a]
    med_b = [float(np.median(x)) for x in b]
    ratios = [mb / ma for ma, mb in zip(med_a, med_b, strict=True)]
    slow = sum(
        1 for ma, mb in zip(med_a, med_b, strict=True) if ma > slow_factor * min(med_a) or mb > slow_factor * min(med_b)
    )
    quiet = [
        r
        for r, ma, mb in zip(ratios, med_a, med_b, strict=True)
        if ma <= slow_factor * min(med_a) and mb <= slow_factor * min(med_b)
    ]
    return {
        "median_a_ms": float(np.median(np.concatenate(a))),
        "median_b_ms": float(np.median(np.concatenate(b))),
        "quiet_median_a_ms": float(np.median([m for m in med_a if m <= slow_factor * min(med_a)])),
        "quiet_median_b_ms": float(np.median([m for m in med_b if m <= slow_factor * min(med_b)])),
        "ratio_of_medians": float(np.median(np.concatenate(b)) / np.median(np.concatenate(a))),
        "median_paired_ratio": float(np.median(ratios)),
        "median_paired_ratio_quiet": float(np.median(quiet)) if quiet else None,
        "blocks": len(ratios),
        "slow_blocks": slow,
    }


def time_pair(a: str, b: str, runtime: str, args: argparse.Namespace) -> dict[str, Any]:
    """Zoo models ``a`` and ``b`` on ``runtime`` (``args.threads``), interleaved in ``args.blocks`` blocks of
    ``args.per_block`` iterations: :func:`summarize_pair` of the two plus ``samples_ms`` ({model: blocks})."""
    infers = {a: infer_for(a, runtime, args.threads), b: infer_for(b, runtime, args.threads)}
    samples = interleaved(infers, args.blocks, args.per_block)
    return summarize_pair(samples[a], samples[b]) | {"samples_ms": samples}


def write_results(name: str, payload: dict[str, Any], markdown: str) -> None:
    """Write ``benchmarks/results/<name>.json`` and ``<name>.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)


def publish(name: str, machine: dict[str, Any], args: argparse.Namespace, rows: Any, md: list[str]) -> None:
    """Write ``{"machine", "args", "rows"}`` and the Markdown table as ``results/<name>.*``, then print the table."""
    write_results(name, {"machine": machine, "args": vars(args), "rows": rows}, "".join(md))
    print("".join(md))


def comma_choices(text: str, allowed: Any, what: str) -> list[str]:
    """The names in the comma list ``text``; SystemExit naming the unknown ones and the ``allowed`` names."""
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}(s) {', '.join(unknown)}: use {', '.join(allowed)}")
    return names


def block_parser(doc: str | None, blocks: int, iters: int, threads: int = 2) -> argparse.ArgumentParser:
    """The options of an interleaved suite: ``--blocks``, ``--iters`` (timed iterations per block and variant),
    ``--threads``; the description is the first line of ``doc`` (the script's docstring)."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--blocks", type=int, default=blocks)
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--threads", type=int, default=threads)
    return ap


def pair_parser(doc: str | None, blocks: int, runtimes: str) -> argparse.ArgumentParser:
    """The options of a model-pair suite: ``--threads`` (default: all cores), ``--blocks``, ``--per-block``
    (timed iterations per block and model), ``--runtimes`` (comma-separated)."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--blocks", type=int, default=blocks)
    ap.add_argument("--per-block", type=int, default=10)
    ap.add_argument("--runtimes", default=runtimes)
    return ap


def load_note(load_start: float, load_end: float, cpus: int) -> str:
    """Describe interference from the measured 1-minute load averages (never assumed)."""
    if max(load_start, load_end) > 0.5 * cpus + 1:
        return f"load average {load_start:.1f} → {load_end:.1f} on {cpus} CPUs: other jobs shared the host"
    return f"load average {load_start:.1f} → {load_end:.1f} on {cpus} CPUs: no other heavy job (this run's own load)"


def machine_markdown(m: dict[str, Any]) -> str:
    return (
        f"Machine: {m['cpu_model']}, {m['cores']} logical cores, {m['platform']}, Python {m['python']}; "
        f"load average at start {m['loadavg_1_5_15'][0]:.2f}; {m['date']}; edgedeploy {m['edgedeploy']} "
        f"(commit {str(m.get('package_commit') or '?')[:10]}).\n"
    )


def first_line(e: BaseException | str) -> str:
    """The first non-blank line of an error (its type name when it has no message), at most 300 characters."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


# ----------------------------------------------------- export forms, A/B (ncnn_forms, mnn_forms, litert_forms)
#: one form-table entry a variant sets for its target: (module, table name, value)
#: one form-table entry of a variant: ``(module, table name, value)`` sets ``module.table[target] = value``;
#: ``(module, table name, value, key)`` sets ``module.table[key] = value`` (e.g. a lowering keyed by module class)
FormEntry = tuple[Any, ...]


def export_with_forms(model: str, target: str, entries: list[FormEntry], out: Path) -> Any:
    """``edgedeploy.export(model, target, out=out)`` with each entry of ``entries`` (:data:`FormEntry`) set for the
    export; the tables are restored afterwards (also on errors)."""
    keyed = [(mod, table, value, *(rest or (target,))) for mod, table, value, *rest in entries]
    saved = [(mod, table, getattr(mod, table).get(key), key) for mod, table, _, key in keyed]
    try:
        for mod, table, value, key in keyed:
            getattr(mod, table)[key] = value
        return edgedeploy.export(model, target, out=out)
    finally:
        for mod, table, value, key in saved:
            if value is None:
                getattr(mod, table).pop(key, None)
            else:
                getattr(mod, table)[key] = value


@dataclass
class FormsRun:
    """What one target's forms A/B needs (:func:`run_forms`).

    ``target``: the export format (``"ncnn"``, ``"mnn"``, ``"tflite"``); ``runtime``: edgedeploy's runtime name;
    ``title``: the Markdown heading's runtime name; ``variants``: variant name → its form entries;
    ``make_naive(module, x, folder) -> Path``: the naive artifact; ``census(path) -> {op: count}`` of it (or None).
    ``post_passes``: variant → ``f(artifact, folder) -> (rewritten artifact, note)``, a trial rewrite of the exported
    file; it is timed only when its outputs equal the export's (max abs ≤ 1e-6 on the photo), else the export is.
    ``census_types``: op types listed per session in a census table (data movement, the forms' own layers).
    """

    target: str
    runtime: str
    title: str
    variants: dict[str, list[FormEntry]]
    make_naive: Callable[[Any, Any, Path], Path]
    census: Callable[[Path], dict[str, int]] | None = None
    post_passes: dict[str, Callable[[Path, Path], tuple[Path, str]]] = field(default_factory=dict)
    census_types: tuple[str, ...] = ()


def forms_parser(doc: str | None, variants: dict[str, Any], model: str) -> argparse.ArgumentParser:
    """``--model``, ``--variants`` (comma list of ``variants``), ``--blocks``, ``--iters``, ``--threads``, ``--name``,
    ``--cache-dir`` (keep the naive artifact there, ``<dir>/<model>/``, as ``naive_vs_edgedeploy.py`` does)."""
    ap = block_parser(doc, 12, 10, threads=1)
    ap.add_argument("--model", default=model)
    ap.add_argument("--variants", default="current", help=f"comma list of {', '.join(variants)}")
    ap.add_argument("--name", default="")
    ap.add_argument("--cache-dir", default="", help="keep the naive artifact here (<dir>/<model>/)")
    return ap


def run_forms(spec: FormsRun, args: argparse.Namespace) -> dict[str, Any]:
    """The naive artifact and one parity-checked export per variant, all loaded in one process with edgedeploy's
    ``spec.runtime`` runtime (``args.threads``) and timed in interleaved blocks (:func:`dual_interleaved`, CPU and
    wall clock) with a second session of the naive file as the same-file control (``naive again``).

    Writes ``results/<args.name or <target>_forms_<model>>.json`` / ``.md`` and returns the payload. A variant
    whose parity does not pass is reported and not timed.
    """
    import tempfile

    import torch

    variants = comma_choices(args.variants, spec.variants, "variant")
    torch.set_num_threads(args.threads)
    load_before = list(os.getloadavg())
    started = time.time()
    card = get_card(args.model)
    x = real_image(card.input_size)
    rt = get_runtime(spec.runtime)
    info: dict[str, Any] = {}
    fns: dict[str, Callable[[], Any]] = {}
    with tempfile.TemporaryDirectory(prefix=f"edgedeploy-{spec.target}-forms-") as tmp:
        folder = Path(tmp)
        naive_dir = Path(args.cache_dir) / args.model if args.cache_dir else folder
        naive_dir.mkdir(parents=True, exist_ok=True)
        module = build_model(card, card.input_size).eval()
        naive = spec.make_naive(module, torch.from_numpy(x), naive_dir)
        census = spec.census(naive) if spec.census else {}
        info["naive"] = {"ops": sum(census.values()) if census else None, "op_census": census}
        fns["naive"] = rt.load(naive, args.threads).prepare(x)
        for v in variants:
            t0 = time.perf_counter()
            outcome = export_with_forms(args.model, spec.target, spec.variants[v], folder / v.replace(" ", "_"))
            census = outcome.manifest.op_census
            info[v] = {"parity": outcome.parity.status, "max_abs": outcome.parity.to_dict().get("max_abs_error"),
                       "ops": sum(census.values()), "op_census": census,
                       "export_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
            print(f"   {v}: parity {info[v]['parity']} ({info[v]['max_abs']}), {info[v]['ops']} ops", flush=True)
            artifact = Path(outcome.artifact)
            if v in spec.post_passes and outcome.parity.status == "passed":
                artifact = _post_pass(spec, v, artifact, folder, rt, x, info[v])
            if outcome.parity.status == "passed":
                fns[v] = rt.load(artifact, args.threads).prepare(x)
        fns["naive again"] = rt.load(naive, args.threads).prepare(x)
        cpu, wall = dual_interleaved(fns, args.blocks, args.iters)
    pairs = {k: summarize_pair(cpu["naive"], cpu[k]) for k in fns if k != "naive"}
    payload = {"model": args.model, "target": spec.target, "variants": variants, "args": vars(args), "info": info,
               "pairs": pairs, "wall_pairs": {k: summarize_pair(wall["naive"], wall[k]) for k in fns if k != "naive"},
               "samples_ms": cpu, "machine": machine_description(), "load_before": load_before,
               "load_after": list(os.getloadavg()), "wall_s": round(time.time() - started, 1)}  # fmt: skip
    m = payload["machine"]
    md = [
        f"# {spec.title} export forms, {args.model} @{card.input_size}\n\n",
        machine_markdown(m),
        f"{load_note(load_before[0], payload['load_after'][0], m['cores'])}. Clock: process CPU time; "
        f"{args.threads} thread(s); {args.blocks} interleaved blocks × {args.iters} runs per session.\n\n",
        "| session | median ms (CPU) | ÷ naive (paired) | wall-clock paired | slow blocks | ops | parity max abs |\n",
        "|---|---:|---:|---:|---:|---:|---:|\n",
        f"| naive | {float(np.median(np.concatenate(cpu['naive']))):.2f} | 1 | 1 | – | "
        f"{info['naive']['ops'] or '–'} | – |\n",
    ]
    for k, p in pairs.items():
        i = info.get(k, info["naive"] if k == "naive again" else {})
        md.append(f"| {k} | {p['median_b_ms']:.2f} | {p['median_paired_ratio']:.3f} | "
                  f"{payload['wall_pairs'][k]['median_paired_ratio']:.3f} | {p['slow_blocks']} | "
                  f"{i.get('ops') or '–'} | {i.get('max_abs', '–')} |\n")  # fmt: skip
    if spec.census_types:
        md += ["\n| session | " + " | ".join(spec.census_types) + " | all ops |\n",
               "|---|" + "---:|" * (len(spec.census_types) + 1) + "\n"]  # fmt: skip
        for k in ("naive", *variants):
            if k in info and info[k]["op_census"]:
                c = info[k]["op_census"]
                md.append(f"| {k} | " + " | ".join(str(c.get(t, 0)) for t in spec.census_types)
                          + f" | {info[k]['ops']} |\n")  # fmt: skip
    write_results(args.name or f"{spec.target}_forms_{args.model}", payload, "".join(md))
    print("".join(md))
    return payload


def _post_pass(spec: FormsRun, v: str, artifact: Path, folder: Path, rt: Any, x: Any, rec: dict[str, Any]) -> Path:
    """Run variant ``v``'s post-pass on ``artifact``; the rewritten file when its outputs equal the export's (its
    census and the comparison recorded in ``rec``), else ``artifact``."""
    rewritten, note = spec.post_passes[v](artifact, folder)
    diff = float(np.abs(np.asarray(rt.load(rewritten, 1).run(x)) - np.asarray(rt.load(artifact, 1).run(x))).max())
    rec["max_abs"] = f"{rec['max_abs']} ({note}; vs the export {diff:.1e})"
    rec["post_pass"] = {"note": note, "max_abs_vs_export": diff, "timed": diff <= 1e-6}
    print(f"   {v}: {note}, max abs vs the export {diff:.1e}", flush=True)
    if diff > 1e-6:
        return artifact
    if spec.census:
        census = spec.census(rewritten)
        rec.update(ops=sum(census.values()), op_census=census)
    return rewritten
