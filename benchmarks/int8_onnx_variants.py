"""onnxruntime int8 recipe variants on one model: top-1 agreement with fp32, and speed for the ones worth timing.

Run: ``python benchmarks/int8_onnx_variants.py MODEL VARIANTS_JSON [--blocks 6] [--log PATH]``, e.g.
``python benchmarks/int8_onnx_variants.py mobilevit_s '[{"label": "current"}, {"label": "no-softmax",
"exclude_ops": ["Softmax"]}]'``. ``--blocks 0``: agreement only. One JSON line per variant on stdout (and
appended to ``--log``); the table of issue 22's run is ``benchmarks/results/int8_onnx_variants_mobilevit.md``.

Each variant starts from the exporter's recipe (``edgedeploy.export.quantize``: QDQ, per-channel int8 weights,
uint8 activations, MinMax calibration on the embedded calibration views, the stem conv and run-time weights kept
float) applied to edgedeploy's cached fp32 ONNX export (``edgedeploy.export(model, "onnx", cache=True)``), and
changes one thing. Variant keys: ``label`` (required); ``exclude_ops`` (op types kept float); ``exclude_dw``
(depthwise convs float); ``exclude_range`` ``[lo, hi]`` (the nodes in that fraction of the graph, float);
``exclude_ops_range`` ``[[ops], lo, hi]``; ``exclude_last`` (the classifier Gemm float); ``calib``
(``default`` or a combination of ``grey``, ``contrast``, ``invert``, ``mpl``: extra calibration views); ``pre``
(onnxruntime's ``quant_pre_process`` first); any ``quantize_static`` keyword (``quant_format``,
``activation_type``, ``weight_type``, ``calibrate_method`` by name).

Agreement: top-1 of int8 vs fp32 onnxruntime on ``int8_speedup.agreement_set`` (200 inputs, none a calibration
image) and the minimum cosine of the logits. Speed: 1 thread, process CPU time, ``--blocks`` interleaved blocks ×
5 runs, paired ratio fp32 ÷ int8 (``_common.dual_interleaved`` / ``summarize_pair``).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from _common import dual_interleaved, first_line, summarize_pair
from int8_speedup import agreement_set, other_pictures
from onnxruntime import quantization as q
from PIL import Image, ImageEnhance, ImageOps

import edgedeploy
from edgedeploy._util import captured_fd_output
from edgedeploy.cards import get_card
from edgedeploy.data import IMAGENET_MEAN, IMAGENET_STD
from edgedeploy.export.calibration import default_calibration_set
from edgedeploy.export.quantize import ort_calibration_reader, prepare_for_quantization
from edgedeploy.runtimes.onnxruntime_rt import OrtSession, create_session, session_options


def _load(path: Path | str) -> OrtSession:
    return OrtSession(create_session(ort, str(path), session_options(ort, 1)))


def _norm(im: Any) -> np.ndarray:
    a = (np.asarray(im, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)


def calibration_arrays(size: int, kind: str) -> list[np.ndarray]:
    """The exporter's calibration inputs, plus the extra views ``kind`` names (NCHW float32, ImageNet-normalised)."""
    calib = default_calibration_set(size)
    out = list(calib.arrays("NCHW"))
    ims = [Image.fromarray(i) for i in calib.images]
    if "grey" in kind:
        out += [_norm(ImageOps.grayscale(i).convert("RGB")) for i in ims]
    if "contrast" in kind:
        out += [_norm(ImageEnhance.Contrast(i).enhance(f)) for i in ims[:8] for f in (0.5, 1.6)]
    if "invert" in kind:
        out += [_norm(ImageOps.invert(i)) for i in ims[:8]]
    if "mpl" in kind:  # an upper bound only: the agreement set draws views from these pictures too
        out += [_norm(im.resize((size, size))) for _, im in other_pictures()]
    return out


def excluded_nodes(model: Any, v: dict[str, Any]) -> list[str]:
    """Node names the variant keeps float (pops the exclusion keys from ``v``)."""
    nodes = list(model.graph.node)
    n = len(nodes)
    excl = [x.name for x in nodes if x.op_type in v.pop("exclude_ops", [])]
    if v.pop("exclude_dw", False):
        excl += [
            x.name for x in nodes if x.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in x.attribute)
        ]
    if (r := v.pop("exclude_ops_range", None)) is not None:
        excl += [x.name for x in nodes[int(r[1] * n) : int(r[2] * n)] if x.op_type in r[0]]
    if (r := v.pop("exclude_range", None)) is not None:
        excl += [x.name for x in nodes[int(r[0] * n) : int(r[1] * n)]]
    if v.pop("exclude_last", False):
        excl += [x.name for x in nodes if x.op_type == "Gemm"]
    return excl


def quantize_kwargs(v: dict[str, Any]) -> dict[str, Any]:
    """The exporter's ``quantize_static`` settings with the variant's overrides (enum values by name)."""
    kw: dict[str, Any] = dict(quant_format=q.QuantFormat.QDQ, per_channel=True, activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax)  # fmt: skip
    enums = {"quant_format": q.QuantFormat, "activation_type": q.QuantType, "weight_type": q.QuantType,
             "calibrate_method": q.CalibrationMethod}  # fmt: skip
    for k, val in v.items():
        kw[k] = getattr(enums[k], val) if k in enums else val
    return kw


def run_variant(model: str, fp32: Path, v: dict[str, Any], blocks: int, tmp: Path) -> dict[str, Any]:
    """Quantize ``fp32`` with variant ``v``; agreement (and, with ``blocks`` > 0, the paired speed ratio)."""
    v = dict(v)
    label = v.pop("label")
    size = get_card(model).input_size
    t0 = time.time()
    src, excl = prepare_for_quantization(onnx, fp32, tmp, "full")
    if v.pop("pre", False):
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre = tmp / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        src = pre
    m = onnx.load(str(src))
    excl += excluded_nodes(m, v)
    name = m.graph.input[0].name
    arrays = calibration_arrays(size, v.pop("calib", "default"))

    dst = tmp / f"{label}.onnx"
    with captured_fd_output():
        reader = ort_calibration_reader(name, arrays)
        q.quantize_static(str(src), str(dst), reader, nodes_to_exclude=excl, **quantize_kwargs(v))
    rec: dict[str, Any] = {"model": model, "label": label, "quant_s": round(time.time() - t0, 1)}
    inputs, _ = agreement_set(size)
    fp, s8 = _load(fp32), _load(dst)
    ref, outs = [fp.run(x) for x in inputs], [s8.run(x) for x in inputs]
    cos = [float(a.ravel() @ b.ravel() / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(ref, outs, strict=True)]
    rec.update(top1=float(np.mean([int(a.argmax()) == int(b.argmax()) for a, b in zip(ref, outs, strict=True)])),
               cos_min=round(min(cos), 4), inputs=len(inputs))  # fmt: skip
    if blocks > 0:
        cpu, _wall = dual_interleaved({"fp32": fp.prepare(inputs[0]), "int8": s8.prepare(inputs[0])}, blocks, 5)
        pr = summarize_pair(cpu["int8"], cpu["fp32"])
        rec.update(ratio=round(pr["median_paired_ratio"], 4), fp32_ms=round(pr["median_b_ms"], 2),
                   int8_ms=round(pr["median_a_ms"], 2), slow=pr["slow_blocks"])  # fmt: skip
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("variants", help="a JSON list of variant objects (see the module docstring)")
    ap.add_argument("--blocks", type=int, default=6, help="interleaved timing blocks; 0: agreement only")
    ap.add_argument("--log", type=Path, default=None, help="also append each record to this JSON-lines file")
    args = ap.parse_args()
    variants = json.loads(args.variants)
    if not isinstance(variants, list) or not all(isinstance(v, dict) and "label" in v for v in variants):
        ap.error("VARIANTS_JSON must be a list of objects with a 'label'")
    if not 0 <= args.blocks <= 100:
        ap.error("--blocks 0..100")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    fp32 = Path(edgedeploy.export(args.model, "onnx", cache=True).artifact)
    with tempfile.TemporaryDirectory(prefix="int8-variants-") as tmp:
        for v in variants:
            try:
                rec = run_variant(args.model, fp32, v, args.blocks, Path(tmp))
            except Exception as e:  # noqa: BLE001 - a variant the quantizer refuses is a result too
                rec = {"model": args.model, "label": v.get("label"), "failed": first_line(e)}
            print(json.dumps(rec), flush=True)
            if args.log is not None:
                with args.log.open("a") as f:
                    f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
