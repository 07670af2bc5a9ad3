"""The real-model corpus: other people's architectures and ONNX files through onnx / mnn / ncnn / tflite.

Cases (issue 23): timm's mobile and efficient families and torchvision's mobile classifiers, built with random
weights (``pretrained=False``; architectures, not weights, are what an export has to cope with), and the three
PaddleOCR ONNX files that the ``rapidocr-onnxruntime`` package ships (origin recorded: package, version, path,
sha256). Each case runs in a child process of its own (isolation, a per-case timeout, one thread) and goes to every
format through the PUBLIC API only (``edgedeploy.export(model, fmt, input_shape=...)``, parity on, the default
gates). ONNX files go to the formats the registry converts from an ONNX file (``FormatSpec.from_onnx``); the others
are recorded "not applicable", never counted as a pass.

Per (case x format): status ``pass`` / ``parity-failed`` / ``export-failed`` / ``not-applicable``, the parity
figures (scaled error, cosine, top-1), the export time (s) and, for a failure, the one-line reason the API raised.

Incremental and resumable: each case's record is written to ``<out>/cases/<case>.json`` as soon as the case ends,
and the tables ``<out>/corpus.json`` / ``corpus.md`` are rewritten after every case; a rerun skips the cases that
have a record (``--fresh`` drops them). The committed tables (``benchmarks/results/corpus.*``) are written only with
``--commit``; the default output folder is a new temporary folder.

timm and torchvision come from the environment, or from ``$EDGEDEPLOY_CORPUS_SITE`` (default
``/var/cache/edgedeploy-corpus/site``, what ``.ci/run`` fills) when that folder exists; torchvision is imported
through :func:`edgedeploy.compat.import_torchvision`.

    python benchmarks/corpus.py --jobs 1                # all cases, into a temporary folder
    python benchmarks/corpus.py --commit --out /tmp/c   # ... and rewrite benchmarks/results/corpus.{json,md}
    python benchmarks/corpus.py --cases mobilevit_xs,tv_mobilenet_v2 --out /tmp/c
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FORMATS = ("onnx", "mnn", "ncnn", "tflite")
DEFAULT_SITE = "/var/cache/edgedeploy-corpus/site"
#: the pinned versions of the corpus packages (.ci/run installs these)
PINS = {"timm": "1.0.31", "torchvision": "0.28.0"}
CASE_TIMEOUT_S = 1500.0
#: the children running now (killed with their process groups when the watched parent dies)
_ACTIVE: set[subprocess.Popen] = set()


@dataclass(frozen=True)
class Case:
    """One corpus entry: ``source`` "timm" / "torchvision" / "onnx"; ``model`` the builder name or ONNX file name;
    ``input_shape`` NCHW batch 1."""

    name: str
    source: str
    model: str
    input_shape: tuple[int, int, int, int] = (1, 3, 224, 224)


_TIMM = (
    "mobilevit_xs", "mobilevitv2_050", "efficientformer_l1", "efficientformerv2_s0", "efficientvit_m0",
    "efficientvit_b0", "fastvit_t8", "repvit_m0_9", "edgenext_xx_small", "levit_128s", "tiny_vit_5m_224",
    "ghostnet_100", "mobilenetv3_small_100", "mobilenetv4_conv_small", "mobileone_s0", "convnext_atto",
    "mobilenetv2_050", "efficientnet_b0", "lcnet_050", "regnetx_002", "resnet10t", "hgnetv2_b0", "mixnet_s",
)  # fmt: skip
_TORCHVISION = (
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2_x0_5", "squeezenet1_1", "mnasnet0_5",
    "efficientnet_b0", "regnet_y_400mf",
)  # fmt: skip
#: PaddleOCR files in rapidocr-onnxruntime, with the fixed input shape they are exported at
_ONNX = (
    ("ppocr_v4_det", "ch_PP-OCRv4_det_infer.onnx", (1, 3, 480, 480)),
    ("ppocr_v4_rec", "ch_PP-OCRv4_rec_infer.onnx", (1, 3, 48, 320)),
    ("ppocr_v2_cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx", (1, 3, 48, 192)),
)

CASES: tuple[Case, ...] = (
    *(Case(n, "timm", n) for n in _TIMM),
    *(Case(f"tv_{n}", "torchvision", n) for n in _TORCHVISION),
    *(Case(n, "onnx", f, s) for n, f, s in _ONNX),
)
CASE_BY_NAME = {c.name: c for c in CASES}


# ----------------------------------------------------------------------------------------------------- the child


def corpus_site() -> Path | None:
    """The folder of the corpus packages when it exists (``$EDGEDEPLOY_CORPUS_SITE`` or the CI default)."""
    site = Path(os.environ.get("EDGEDEPLOY_CORPUS_SITE", DEFAULT_SITE))
    return site if site.is_dir() else None


def use_corpus_site() -> None:
    """Put :func:`corpus_site` on ``sys.path`` (after the environment's own folders)."""
    site = corpus_site()
    if site is not None and str(site) not in sys.path:
        sys.path.append(str(site))


def rapidocr_origin(file_name: str) -> dict[str, Any]:
    """Package, version, path and sha256 of a PaddleOCR file in the installed rapidocr-onnxruntime (no import:
    the package's import pulls cv2). Raises FileNotFoundError when the package or the file is missing."""
    from importlib.metadata import version

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("rapidocr-onnxruntime is not installed (the dev extra)")
    path = Path(spec.submodule_search_locations[0]) / "models" / file_name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"package": "rapidocr-onnxruntime", "version": version("rapidocr-onnxruntime"), "path": str(path),
            "sha256": digest}  # fmt: skip


def build_case(case: Case) -> tuple[Any, dict[str, Any]]:
    """The model to export (an ``nn.Module`` in eval mode, or an ONNX file path) and its origin record."""
    if case.source == "onnx":
        origin = rapidocr_origin(case.model)
        return origin["path"], origin
    import torch

    from edgedeploy.compat import import_torchvision, shim_active

    use_corpus_site()
    tv = import_torchvision()
    torch.manual_seed(0)
    if case.source == "timm":
        import timm

        module = timm.create_model(case.model, pretrained=False)
        origin = {"package": "timm", "version": timm.__version__, "builder": f"timm.create_model({case.model!r})"}
    else:
        module = getattr(tv.models, case.model)(weights=None)
        origin = {"package": "torchvision", "version": tv.__version__, "builder": f"torchvision.models.{case.model}"}
    origin["weights"] = "random (seed 0)"
    origin["torchvision_shim"] = shim_active()
    origin["params_m"] = round(sum(p.numel() for p in module.parameters()) / 1e6, 3)
    return module.eval(), origin


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def export_case(case: Case, out: Path) -> dict[str, Any]:
    """Export one case to every format through the public API; the case's record (see the module docstring)."""
    import torch

    torch.set_num_threads(1)
    import edgedeploy
    from edgedeploy.registry import format_spec

    record: dict[str, Any] = {"case": case.name, "source": case.source, "model": case.model,
                              "input_shape": list(case.input_shape), "formats": {}}  # fmt: skip
    t0 = time.perf_counter()
    try:
        model, origin = build_case(case)
    except Exception as e:  # noqa: BLE001 - the case cannot be built: every format fails with that reason
        reason = f"building {case.model} failed: {_one_line(e)}"
        record["build_error"] = reason
        record["formats"] = {f: {"status": "export-failed", "reason": reason} for f in FORMATS}
        return record
    record["origin"] = origin
    record["build_s"] = round(time.perf_counter() - t0, 2)
    art = out / "artifacts" / case.name
    for fmt in FORMATS:
        if case.source == "onnx" and not format_spec(fmt).from_onnx:
            why = f"{fmt} converts PyTorch modules only (registry: from_onnx=False)"
            record["formats"][fmt] = {"status": "not-applicable", "reason": why}
            continue
        t = time.perf_counter()
        try:
            outcome = edgedeploy.export(model, fmt, input_shape=case.input_shape, out=art, name=case.name)
        except Exception as e:  # noqa: BLE001 - any failure of the API is the case's result, with its reason
            record["formats"][fmt] = {"status": "export-failed", "reason": _one_line(e),
                                      "export_s": round(time.perf_counter() - t, 2)}  # fmt: skip
            continue
        p = outcome.parity
        entry: dict[str, Any] = {
            "status": "pass" if p.passed else "parity-failed",
            "export_s": round(time.perf_counter() - t, 2),
            "scaled_error": p.scaled_error,
            "max_abs_error": p.max_abs_error,
            "cosine": p.cosine_similarity,
            "top1": p.top1_agreement,
            "artifact_bytes": sum(f.stat().st_size for f in art.glob(f"{case.name}*") if f.is_file()),
        }
        if not p.passed:
            entry["reason"] = "; ".join(p.failures) or (p.reason or "parity did not pass")
        record["formats"][fmt] = entry
        for f in art.iterdir():  # keep the disk small: the figures (and the manifests) are what the corpus keeps
            if f.is_file() and not f.name.endswith(".json"):
                f.unlink()
    return record


# ---------------------------------------------------------------------------------------------------- the parent


def run_child(case: Case, out: Path, timeout: float) -> dict[str, Any]:
    """Run one case in a child process (one thread, its own session, killed with its children on timeout)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "PYTHONPATH": _pythonpath()}  # fmt: skip
    rec_path = out / "cases" / f"{case.name}.json"
    log = out / "logs" / f"{case.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", case.name, "--out", str(out)]
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        _ACTIVE.add(proc)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc = None
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            _ACTIVE.discard(proc)
    wall = round(time.perf_counter() - t0, 1)
    if rc == 0 and rec_path.is_file():
        record = json.loads(rec_path.read_text())
    else:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
        why = f"timed out after {timeout:.0f} s" if rc is None else f"child exited {rc}: {' '.join(tail)[:300]}"
        failed = {f: {"status": "export-failed", "reason": f"corpus child {why}"} for f in FORMATS}
        record = {"case": case.name, "source": case.source, "model": case.model,
                  "input_shape": list(case.input_shape), "child_error": why, "formats": failed}  # fmt: skip
        done = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
        record["formats"].update(done.get("formats", {}))
    record["wall_s"] = wall
    _write_json(rec_path, record)
    return record


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def watch_parent(pid: int, every_s: float = 2.0) -> None:
    """A daemon thread: when process ``pid`` is gone (a test session killed), kill the children and exit."""
    import threading

    def loop() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                for proc in list(_ACTIVE):
                    _kill_group(proc)
                os._exit(3)
            except PermissionError:
                pass

    threading.Thread(target=loop, daemon=True, name="watch-parent").start()


def _pythonpath() -> str:
    parts = [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return os.pathsep.join(dict.fromkeys(parts))


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Pass counts and rates: per format, over all applicable (case x format) pairs, and the case counts."""
    per: dict[str, dict[str, int]] = {}
    for r in records:
        for fmt, e in r["formats"].items():
            d = per.setdefault(fmt, {"pass": 0, "parity-failed": 0, "export-failed": 0, "not-applicable": 0})
            d[e["status"]] += 1
    for d in per.values():
        d["applicable"] = d["pass"] + d["parity-failed"] + d["export-failed"]
        d["rate"] = round(d["pass"] / d["applicable"], 4) if d["applicable"] else None
    applicable = sum(d["applicable"] for d in per.values())
    passed = sum(d["pass"] for d in per.values())
    return {
        "per_format": per,
        "pairs_applicable": applicable,
        "pairs_passed": passed,
        "pairs_not_applicable": sum(d["not-applicable"] for d in per.values()),
        "rate": round(passed / applicable, 4) if applicable else None,
        "architectures": sum(r["source"] != "onnx" for r in records),
        "onnx_files": sum(r["source"] == "onnx" for r in records),
        "cases": len(records),
    }


def write_tables(out: Path, records: list[dict[str, Any]], machine: dict[str, Any], complete: bool) -> dict:
    """``corpus.json`` and ``corpus.md`` in ``out``; returns the JSON document."""
    order = {c.name: i for i, c in enumerate(CASES)}
    records = sorted(records, key=lambda r: order.get(r["case"], len(order)))
    doc = {"machine": machine, "complete": complete, "formats": list(FORMATS), "summary": summarize(records),
           "cases": records}  # fmt: skip
    _write_json(out / "corpus.json", doc)
    (out / "corpus.md").write_text(render_md(doc))
    return doc


def _fmt_cell(e: dict[str, Any]) -> str:
    st = e["status"]
    if st == "not-applicable":
        return "n/a"
    t = f" {e['export_s']:.0f}s" if e.get("export_s") is not None else ""
    if st == "export-failed":
        return f"**export failed**{t}"
    sc = f"{e['scaled_error']:.1e}" if e.get("scaled_error") is not None else "-"
    cos = f"{e['cosine']:.6f}" if e.get("cosine") is not None else "-"
    top = f"{e['top1']:.2f}" if e.get("top1") is not None else "n/a"
    head = "pass" if st == "pass" else "**parity failed**"
    return f"{head}{t} · {sc} · {cos} · {top}"


def render_md(doc: dict[str, Any]) -> str:
    s, m = doc["summary"], doc["machine"]
    lines = [
        "# Real-model corpus: other people's architectures and ONNX files (issue 23)",
        "",
        "`python benchmarks/corpus.py --commit` (public API, parity on with the default gates, one child process "
        "and one thread per case). Architectures are built with random weights (seed 0).",
        "",
        f"Machine: {m.get('cpu_model', '?')} ({m.get('machine', '?')}), {m.get('cores', '?')} cores (affinity "
        f"{m.get('affinity', '?')}); python {m.get('python', '?')}; edgedeploy {m.get('edgedeploy', '?')} at "
        f"{str(m.get('git_commit', '?'))[:10]}; started {m.get('date', '?')}; load {m.get('loadavg_1_5_15', '?')}."
        + ("" if doc["complete"] else " **Incomplete run** (some cases have no record yet)."),
        "",
        f"**{s['pairs_passed']} of {s['pairs_applicable']} applicable (case × format) pairs pass with parity "
        f"({_pct(s['rate'])})**; {s['architectures']} architectures, {s['onnx_files']} ONNX files; "
        f"{s['pairs_not_applicable']} pairs not applicable (an ONNX file to a format that converts PyTorch modules "
        "only).",
        "",
        "| format | pass | parity failed | export failed | not applicable | pass rate |",
        "|---|---|---|---|---|---|",
    ]
    for fmt in doc["formats"]:
        d = s["per_format"].get(fmt)
        if d:
            lines.append(f"| {fmt} | {d['pass']} | {d['parity-failed']} | {d['export-failed']} | "
                         f"{d['not-applicable']} | {_pct(d['rate'])} |")  # fmt: skip
    lines += ["", "Cell: status, export time (s, the API call: trace, lowering, conversion, parity) · scaled error "
              "(max abs ÷ the output's range or RMS, per output kind) · cosine · top-1 agreement.", "",
              "| case | source | input | " + " | ".join(doc["formats"]) + " |",
              "|---|---|---|" + "---|" * len(doc["formats"])]  # fmt: skip
    for r in doc["cases"]:
        src = r.get("origin", {}).get("package", r["source"])
        shape = "×".join(str(d) for d in r["input_shape"][1:])
        cells = [_fmt_cell(r["formats"][f]) if f in r["formats"] else "-" for f in doc["formats"]]
        lines.append(f"| {r['case']} | {src} | {shape} | " + " | ".join(cells) + " |")
    fails = [(r["case"], f, e) for r in doc["cases"] for f, e in r["formats"].items()
             if e["status"] in ("parity-failed", "export-failed")]  # fmt: skip
    lines += ["", "## Failures (the one-line reason the API gave)", ""]
    lines += [f"- {c} → {f} ({e['status']}): {e.get('reason', '(no reason)')}" for c, f, e in fails] or ["None."]
    lines += ["", "## Origin of the ONNX files", ""]
    for r in doc["cases"]:
        o = r.get("origin", {})
        if r["source"] == "onnx" and o:
            lines.append(f"- {r['case']}: {o['package']} {o['version']}, `{Path(o['path']).name}`, sha256 "
                         f"`{o['sha256']}`")  # fmt: skip
    return "\n".join(lines) + "\n"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f} %"


def load_records(out: Path) -> list[dict[str, Any]]:
    recs = []
    for p in sorted((out / "cases").glob("*.json")):
        try:
            recs.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return recs


def run_corpus(cases: list[Case], out: Path, jobs: int, timeout: float, fresh: bool) -> dict[str, Any]:
    """Run the cases not yet recorded in ``out`` (all with ``fresh``), ``jobs`` children at a time; tables after
    every case. Returns the final JSON document."""
    sys.path.insert(0, str(ROOT))
    from benchmarks._common import machine_description

    machine = machine_description()
    (out / "cases").mkdir(parents=True, exist_ok=True)
    if fresh:
        for c in cases:
            (out / "cases" / f"{c.name}.json").unlink(missing_ok=True)
    done = {r["case"] for r in load_records(out)}
    todo = [c for c in cases if c.name not in done]
    wanted = {c.name for c in cases}

    def tables() -> dict[str, Any]:
        recs = [r for r in load_records(out) if r["case"] in wanted]
        return write_tables(out, recs, machine, complete=len(recs) == len(cases))

    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_child, c, out, timeout): c for c in todo}
        for fut in cf.as_completed(futures):
            rec = fut.result()
            states = " ".join(f"{f}={e['status']}" for f, e in rec["formats"].items())
            print(f"{rec['case']}: {states} ({rec.get('wall_s', '?')} s)", flush=True)
            tables()
    return tables()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="output folder (default: a new temporary folder)")
    ap.add_argument("--commit", action="store_true", help="write benchmarks/results/corpus.{json,md}")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="children at a time (one thread each)")
    ap.add_argument("--timeout", type=float, default=CASE_TIMEOUT_S, help="per-case timeout, s")
    ap.add_argument("--fresh", action="store_true", help="rerun cases that already have a record")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    ap.add_argument("--report-only", action="store_true", help="write the tables from --out's records; run nothing")
    ap.add_argument("--watch-pid", type=int, help="exit (killing the children) when this process is gone")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(c.name for c in CASES))
        return 0
    if args.worker:
        out = args.out
        rec = export_case(CASE_BY_NAME[args.worker], out)
        _write_json(out / "cases" / f"{args.worker}.json", rec)
        return 0
    if args.watch_pid:
        watch_parent(args.watch_pid)
    names = args.cases.split(",") if args.cases else [c.name for c in CASES]
    unknown = [n for n in names if n not in CASE_BY_NAME]
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)} (see --list)")
    out = args.out or Path(tempfile.mkdtemp(prefix="edgedeploy-corpus-"))
    if args.report_only:
        if not args.out:
            ap.error("--report-only needs --out (the folder of a run)")
        sys.path.insert(0, str(ROOT))
        from benchmarks._common import machine_description

        recs = [r for r in load_records(out) if r["case"] in set(names)]
        prev = out / "corpus.json"  # the run's machine description (taken at its start), when there is one
        machine = json.loads(prev.read_text())["machine"] if prev.is_file() else machine_description()
        doc = write_tables(out, recs, machine, complete=len(recs) == len(names))
    else:
        print(f"corpus: {len(names)} cases into {out}", flush=True)
        doc = run_corpus([CASE_BY_NAME[n] for n in names], out, args.jobs, args.timeout, args.fresh)
    if args.commit:
        _write_json(RESULTS / "corpus.json", doc)
        (RESULTS / "corpus.md").write_text(render_md(doc))
    s = doc["summary"]
    print(f"{s['pairs_passed']} of {s['pairs_applicable']} pairs pass ({_pct(s['rate'])}); tables in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
