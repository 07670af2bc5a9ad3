"""Calibrate the parity gates per output kind: the drift of correct artifacts vs the error of defective ones.

Correct artifacts: PaddleOCR's ONNX files (shipped in ``rapidocr-onnxruntime`` 1.4.4) and zoo models, exported
to the host runtimes. Defective artifacts: the same ONNX files with one weight tensor (the first / the last
initializer of rank ≥ 2) scaled by 1.01, exported to ONNX and compared with the unperturbed source. Each row
gives, per output, the kind, max abs error, scaled error (max abs ÷ output range), max abs ÷ output RMS and
cosine; no gate is applied while measuring.

    PYTHONPATH=. python benchmarks/parity_gates.py [--quick]   # writes results/parity_gates.{json,md}
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

import edgedeploy
from edgedeploy.export.parity import Thresholds

RESULTS = Path(__file__).resolve().parent / "results"
OCR_SHAPES = {
    "ch_PP-OCRv4_det_infer.onnx": "1,3,480,480",
    "ch_PP-OCRv4_rec_infer.onnx": "1,3,48,320",
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": "1,3,48,192",
}
ZOO = [("mobilenetv2", ["onnx", "mnn", "ncnn", "tflite"]), ("emo_1m", ["mnn", "ncnn"]), ("edgevit_xxs", ["mnn"])]


def ocr_models() -> Path:
    """The folder of PaddleOCR ONNX files in the installed rapidocr-onnxruntime (without importing it: cv2)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("rapidocr-onnxruntime==1.4.4 is not installed (pip install -e .[dev])")
    return Path(spec.submodule_search_locations[0]) / "models"


def perturb(src: Path, dst: Path, which: str) -> str:
    """Copy ``src`` to ``dst`` with the first / last rank ≥ 2 initializer scaled by 1.01; returns its name."""
    model = onnx.load(str(src))
    # Paddle2ONNX stores weights as Constant nodes, torch.onnx as initializers
    found = [(t, t.name) for t in model.graph.initializer if len(t.dims) >= 2]
    found += [(a.t, n.output[0]) for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
              if a.name == "value" and len(a.t.dims) >= 2 and a.t.data_type == onnx.TensorProto.FLOAT]  # fmt: skip
    t, name = found[0] if which == "first" else found[-1]
    arr = numpy_helper.to_array(t).astype(np.float32) * np.float32(1.01)
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    onnx.save(model, str(dst))
    return name


def row(case: str, fmt: str, outcome: Any, seconds: float) -> dict[str, Any]:
    p = outcome.parity
    return {"case": case, "format": fmt, "runtime": p.runtime, "export_s": round(seconds, 1),
            "outputs": [{k: o[k] for k in ("name", "shape", "kind", "max_abs_error", "scaled_error",
                                           "error_over_rms", "cosine_similarity")} for o in p.outputs]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="PaddleOCR files only")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    off = Thresholds()  # measure, do not gate
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for fname, shape in OCR_SHAPES.items():
            src = ocr_models() / fname
            for fmt in ("onnx", "mnn"):
                t0 = time.perf_counter()
                o = edgedeploy.export(src, fmt, input_shape=shape, out=out / fmt, thresholds=off)
                rows.append(row(fname, fmt, o, time.perf_counter() - t0) | {"defect": None})
                print(rows[-1], flush=True)
            for which in ("first", "last"):
                bad = out / f"bad_{which}_{fname}"
                name = perturb(src, bad, which)
                # the artifact of the perturbed file, compared with the unperturbed source's onnxruntime outputs
                o = edgedeploy.export(bad, "onnx", input_shape=shape, out=out / "bad", thresholds=off)
                from edgedeploy.export.onnx_source import reference_runner
                from edgedeploy.export.parity import ParitySetup, check_parity
                from edgedeploy.runtimes.base import get_runtime

                sess = get_runtime("onnxruntime").load(o.artifact, threads=1)
                dims = tuple(int(v) for v in shape.split(","))
                rep = check_parity(reference_runner(src), sess.run_outputs, dims, off, "onnxruntime",
                                   setup=ParitySetup(reference="onnxruntime on the unperturbed file"))  # fmt: skip
                o.parity = rep
                rows.append(row(fname, "onnx", o, 0.0) | {"defect": f"{name} x 1.01 ({which} weight)"})
                print(rows[-1], flush=True)
        if not args.quick:
            for model, fmts in ZOO:
                for fmt in fmts:
                    t0 = time.perf_counter()
                    o = edgedeploy.export(model, fmt, out=out / fmt, thresholds=off)
                    rows.append(row(model, fmt, o, time.perf_counter() - t0) | {"defect": None})
                    print(rows[-1], flush=True)
    machine = f"{platform.machine()} {platform.processor() or ''} {platform.python_version()}".strip()
    RESULTS.mkdir(exist_ok=True)
    data = {"machine": machine, "rows": rows}
    (RESULTS / "parity_gates.json").write_text(json.dumps(data, indent=1) + "\n")
    write_md(data)


def write_md(data: dict[str, Any]) -> None:
    """``results/parity_gates.md``: every row, then per kind the worst drift, the smallest defect and the gate."""
    from edgedeploy.export.parity_kinds import DEFAULT_SCALED_GATES

    rows = data["rows"]
    lines = [f"# Parity gate calibration ({data['machine']})", "",
             "Correct artifacts (no defect) vs the same ONNX file with one weight tensor x 1.01 (compared with the",
             "unperturbed file). Scaled error = max abs ÷ the reference output's range over the 5 parity inputs.",
             "Zoo models are random-init here (no official weights offline): their logits are tiny, so max abs is",
             "meaningless and only the scaled error says how close they are.", "",
             "| case | format | defect | output (kind) | max abs | max abs ÷ range | max abs ÷ RMS | cosine |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    drift: dict[str, float] = {}
    defect: dict[str, float] = {}
    for r in rows:
        for o in r["outputs"]:
            lines.append(f"| {r['case']} | {r['format']} | {r['defect'] or '–'} | {o['name']} {o['shape']} "
                         f"({o['kind']}) | {o['max_abs_error']:.2e} | {o['scaled_error']:.2e} | "
                         f"{o['error_over_rms']:.2e} | {o['cosine_similarity']:.7f} |")  # fmt: skip
            if r["defect"]:
                defect[o["kind"]] = min(defect.get(o["kind"], 1e9), o["scaled_error"])
            else:
                drift[o["kind"]] = max(drift.get(o["kind"], 0.0), o["scaled_error"])
    lines += ["", "| kind | worst drift (correct) | smallest defect | fp32 gate | gate ÷ drift | defect ÷ gate |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for kind, gate in DEFAULT_SCALED_GATES["fp32"].items():
        d, e = drift.get(kind), defect.get(kind)
        lines.append(f"| {kind} | {d:.2e} | " if d is not None else f"| {kind} | – | ")
        lines[-1] += (f"{e:.2e} | " if e is not None else "– | ") + f"{gate:g} | "
        lines[-1] += (f"{gate / d:.1f}x | " if d else "– | ") + (f"{e / gate:.1f}x |" if e is not None else "– |")
    (RESULTS / "parity_gates.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
