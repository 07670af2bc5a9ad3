"""Full-integer int8 vs fp32 on the same runtime: speed-up and top-1 agreement on inputs disjoint from calibration.

Run: ``python benchmarks/int8_speedup.py [--model edgeformer_s] [--runtimes onnxruntime,mnn] [--blocks 8]
[--iters 10] [--threads 2] [--name int8_speedup_edgeformer_s]``.
Writes ``benchmarks/results/<name>.json`` (raw samples, per-input agreement) and ``<name>.md``.

Artifacts: the toolkit's own exports through the public API, ``edgedeploy.export(model, fmt)`` at fp32 and
``precision="int8"`` (full integer, the default calibration set of :mod:`edgedeploy.export.calibration`: 16 views
of the embedded photo), parity-checked.

Agreement set (never the calibration images; built here, nothing downloaded): 160 seeded random views of the
embedded photo (crop of 25–95 % of the area at a random aspect ratio 3/4–4/3 and position, optional horizontal
flip, brightness and contrast ×0.7–1.3, rotation −15…15°), and 8 random crops + flips of each other picture that
ships with matplotlib (``logo2.png``, ``Minduka_Present_Blue_Pack.png``, the ``topobathy`` and
``jacksboro_fault_dem`` elevation grids and the ``s1045.ima`` MRI slice rendered as grey images) — 200 or more
inputs. Any input whose pixels equal a calibration image is dropped (checked by sha256). Reported: top-1 agreement
of int8 with fp32 of the same runtime, and with PyTorch fp32; cosine similarity of the logits (min, median).

Latency: fp32 and int8 sessions of each runtime loaded in this process (``edgedeploy.runtimes``, the sessions
``edgedeploy bench`` uses) and timed in interleaved blocks (``_common.interleaved``); speed-up = median of per-block
paired ratios fp32 / int8 (> 1: int8 faster); slow blocks counted; load average recorded before and after.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).parent))
import torch
from _common import cpu_flags, interleaved, load_note, machine_description, summarize_pair, write_results

import edgedeploy
from edgedeploy.cards import get_card
from edgedeploy.data import IMAGENET_MEAN, IMAGENET_STD, sample_image_path
from edgedeploy.export.calibration import default_calibration_set
from edgedeploy.runtimes.base import get_runtime
from edgedeploy.zoo import build_model

FORMAT_OF = {"onnxruntime": "onnx", "mnn": "mnn"}


# ------------------------------------------------------------------------------------------- agreement set
def other_pictures() -> list[tuple[str, Any]]:
    """matplotlib's other bundled pictures as RGB PIL images (grids and the MRI slice as grey images)."""
    import matplotlib
    from PIL import Image

    d = Path(matplotlib.get_data_path()) / "sample_data"
    out: list[tuple[str, Any]] = []
    for name in ("logo2.png", "Minduka_Present_Blue_Pack.png"):
        if (d / name).is_file():
            with Image.open(d / name) as im:
                out.append((name, im.convert("RGB")))

    def grey(a: np.ndarray) -> Any:
        a = np.asarray(a, dtype=np.float64)
        a = (a - np.nanmin(a)) / max(float(np.nanmax(a) - np.nanmin(a)), 1e-9)
        return Image.fromarray(np.uint8(np.nan_to_num(a) * 255)).convert("RGB")

    for name, key in (("topobathy.npz", "topo"), ("jacksboro_fault_dem.npz", "elevation")):
        if (d / name).is_file():
            with np.load(d / name) as z:
                out.append((name, grey(z[key] if key in z else z[z.files[0]])))
    if (d / "s1045.ima.gz").is_file():
        with gzip.open(d / "s1045.ima.gz") as f:
            out.append(("s1045.ima", grey(np.frombuffer(f.read(), np.uint16).reshape(256, 256))))
    return out


def _random_view(im: Any, size: int, rng: np.random.Generator, jitter: bool) -> np.ndarray:
    from PIL import Image, ImageEnhance

    w, h = im.size
    for _ in range(20):
        area = rng.uniform(0.25, 0.95) * w * h
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        cw, ch = round((area * aspect) ** 0.5), round((area / aspect) ** 0.5)
        if cw <= w and ch <= h:
            break
    else:
        cw, ch = min(w, h), min(w, h)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    view = im.crop((left, top, left + cw, top + ch))
    if jitter:
        view = view.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
        view = ImageEnhance.Brightness(view).enhance(float(rng.uniform(0.7, 1.3)))
        view = ImageEnhance.Contrast(view).enhance(float(rng.uniform(0.7, 1.3)))
    view = view.resize((size, size), Image.BILINEAR)
    a = np.asarray(view, dtype=np.uint8)
    return np.ascontiguousarray(a[:, ::-1]) if rng.random() < 0.5 else a


def agreement_set(size: int, photo_views: int = 160, per_other: int = 8, seed: int = 0) -> tuple[list, list[str]]:
    """``(arrays, names)``: ImageNet-normalised ``(1, 3, size, size)`` float32 inputs, none a calibration image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    calib = {
        hashlib.sha256(np.ascontiguousarray(c).tobytes()).hexdigest() for c in default_calibration_set(size).images
    }
    views: list[tuple[str, np.ndarray]] = []
    with Image.open(sample_image_path()) as raw:
        photo = raw.convert("RGB")
        views += [(f"photo_{i:03d}", _random_view(photo, size, rng, jitter=True)) for i in range(photo_views)]
    for name, im in other_pictures():
        views += [(f"{name}_{i}", _random_view(im, size, rng, jitter=False)) for i in range(per_other)]
    arrays, names = [], []
    for name, v in views:
        if hashlib.sha256(v.tobytes()).hexdigest() in calib:
            continue
        a = (v.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        arrays.append(np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32))
        names.append(name)
    return arrays, names


def agreement(outs: dict[str, list[np.ndarray]], ref: list[np.ndarray], names: list[str]) -> dict[str, Any]:
    """Top-1 agreement (int8 vs fp32, each vs torch) and output cosines over the agreement inputs.

    ``outs`` maps ``"fp32"`` / ``"int8"`` to one logits array per input, ``ref`` the PyTorch logits, ``names`` the
    inputs' names (listed where int8 and fp32 disagree).
    """
    top1 = {p: [int(o.argmax()) for o in v] for p, v in outs.items()}
    top1_torch = [int(r.argmax()) for r in ref]
    agree = [a == b for a, b in zip(top1["fp32"], top1["int8"], strict=True)]
    cos = [_cos(a, b) for a, b in zip(outs["fp32"], outs["int8"], strict=True)]
    return {
        "top1_int8_vs_fp32": float(np.mean(agree)),
        "top1_int8_vs_torch": float(np.mean([a == b for a, b in zip(top1_torch, top1["int8"], strict=True)])),
        "top1_fp32_vs_torch": float(np.mean([a == b for a, b in zip(top1_torch, top1["fp32"], strict=True)])),
        "disagreeing_inputs": [n for n, ok in zip(names, agree, strict=True) if not ok],
        "cosine_min": float(np.min(cos)),
        "cosine_median": float(np.median(cos)),
        "cosine_min_vs_torch": float(min(_cos(a, r) for a, r in zip(outs["int8"], ref, strict=True))),
        "distinct_fp32_classes": len(set(top1["fp32"])),
    }


def agreement_of(
    runs: dict[str, Callable[[np.ndarray], np.ndarray]], inputs: list[np.ndarray], ref: list[np.ndarray],
    names: list[str],
) -> dict[str, Any]:  # fmt: skip
    """:func:`agreement` of ``runs["fp32"]`` and ``runs["int8"]`` (each: one ``(1, 3, H, W)`` float32 input →
    logits) over ``inputs``, plus ``"inputs"`` (how many); ``ref`` the PyTorch fp32 logits per input."""
    pairs = list(zip(inputs, ref, strict=True))
    outs = {p: [np.asarray(run(x)).reshape(r.shape) for x, r in pairs] for p, run in runs.items()}
    return {"inputs": len(inputs), **agreement(outs, ref, names)}


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


# -------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="edgeformer_s")
    ap.add_argument("--runtimes", default="onnxruntime,mnn")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    name = args.name or f"int8_speedup_{args.model}"
    torch.set_num_threads(args.threads)
    started = time.time()
    card = get_card(args.model)
    size = card.input_size
    inputs, names = agreement_set(size)
    module = build_model(card, size).eval()
    with torch.no_grad():
        ref = [module(torch.from_numpy(x)).numpy() for x in inputs]
    payload: dict[str, Any] = {
        "model": args.model, "input_size": size, "threads": args.threads, "blocks": args.blocks, "iters": args.iters,
        "cpu_flags": cpu_flags(), "load_before": list(os.getloadavg()), "machine": machine_description(),
        "agreement_inputs": len(inputs), "agreement_input_names": names, "runtimes": {},
    }  # fmt: skip
    print(f"{len(inputs)} agreement inputs (disjoint from the 16 calibration views)", flush=True)
    with tempfile.TemporaryDirectory(prefix="edgedeploy-int8-") as tmp:
        for runtime in args.runtimes.split(","):
            fmt = FORMAT_OF[runtime]
            rt = get_runtime(runtime)
            entry: dict[str, Any] = {}
            sessions = {}
            for precision in ("fp32", "int8"):
                outcome = edgedeploy.export(args.model, fmt, out=Path(tmp) / f"{fmt}-{precision}", precision=precision)
                if not outcome.parity.passed:
                    raise SystemExit(f"{args.model} {fmt} {precision}: parity failed; refusing to time a wrong model")
                m = outcome.manifest
                sessions[precision] = rt.load(outcome.artifact, args.threads)
                entry[precision] = {
                    "artifact_bytes": m.size_bytes,
                    "exporter": m.exporter,
                    "quantization": getattr(m, "quantization", None),
                    "settings": getattr(sessions[precision], "settings", {}),
                }
            outs = {
                p: [s.run(x).reshape(r.shape) for x, r in zip(inputs, ref, strict=True)] for p, s in sessions.items()
            }
            entry["agreement"] = agreement(outs, ref, names)
            x = inputs[0]
            samples = interleaved({p: s.prepare(x) for p, s in sessions.items()}, args.blocks, args.iters)
            pair = summarize_pair(samples["int8"], samples["fp32"])  # b / a = fp32 / int8 = speed-up
            entry["timing"] = {"samples_ms": samples, **pair, "speedup_paired": pair["median_paired_ratio"]}
            payload["runtimes"][runtime] = entry
            a = entry["agreement"]
            print(f"{runtime}: int8 speed-up {pair['median_paired_ratio']:.3f} (fp32 {pair['median_b_ms']:.2f} ms, "
                  f"int8 {pair['median_a_ms']:.2f} ms, slow blocks {pair['slow_blocks']}); top-1 int8 vs fp32 "
                  f"{a['top1_int8_vs_fp32']:.3f}, cosine min {a['cosine_min']:.4f}", flush=True)  # fmt: skip
    payload["load_after"] = list(os.getloadavg())
    payload["wall_s"] = round(time.time() - started, 1)
    write_results(name, payload, markdown(payload))
    print(markdown(payload))


def markdown(p: dict[str, Any]) -> str:
    m = p["machine"]
    lines = [
        f"# int8 vs fp32: {p['model']} @{p['input_size']}",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} logical cores, flags {' '.join(p['cpu_flags'])}; {m['date']}. "
        f"Load average before {'/'.join(f'{v:.2f}' for v in p['load_before'])}, after "
        f"{'/'.join(f'{v:.2f}' for v in p['load_after'])}: "
        f"{load_note(p['load_before'][0], p['load_after'][0], m['cores'])}. "
        f"{p['threads']} threads, {p['blocks']} interleaved blocks × {p['iters']} runs; wall {p['wall_s']} s.",
        f"Agreement on {p['agreement_inputs']} inputs disjoint from the calibration set (see the script's docstring).",
        "",
        "| runtime | fp32 ms | int8 ms | speed-up fp32/int8 (paired) | slow blocks | top-1 int8 vs fp32 | "
        "top-1 int8 vs torch | cosine min / median | int8 method |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for rt, e in p["runtimes"].items():
        c = int8_cells(e)
        lines.append(
            f"| {rt} | {c['fp32_ms']} | {c['int8_ms']} | {c['ratio']} | {c['slow']} | {c['top1']} | "
            f"{c['top1_torch']} | {c['cosine']} | {c['method']} |"
        )
    return "\n".join(lines) + "\n"


def int8_cells(entry: dict[str, Any]) -> dict[str, str]:
    """The formatted table cells of one runtime's int8-vs-fp32 entry (times in ms, ratio fp32 / int8)."""
    t, a = entry["timing"], entry["agreement"]
    return {
        "fp32_ms": f"{t['median_b_ms']:.2f}",
        "int8_ms": f"{t['median_a_ms']:.2f}",
        "ratio": f"{t['speedup_paired']:.3f}",
        "slow": f"{t['slow_blocks']} of {t['blocks']}",
        "top1": f"{a['top1_int8_vs_fp32']:.3f}",
        "top1_torch": f"{a['top1_int8_vs_torch']:.3f}",
        "cosine": f"{a['cosine_min']:.4f} / {a['cosine_median']:.4f}",
        "method": (entry["int8"].get("quantization") or {}).get("method", "?"),
    }


if __name__ == "__main__":
    sys.exit(main())
