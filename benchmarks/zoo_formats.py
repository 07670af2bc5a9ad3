"""Every zoo variant to every format, parity on: the check behind issue 22's "the 19 zoo variants still export to
all five formats with parity passed".

Each variant runs ``edgedeploy export NAME --to all --json`` (the CLI, so the same path a user runs) in a child
process with a timeout; the default lowering, fp32, the card's input size, the default parity gates. Per (variant x
format): the status the CLI reports, the parity figures (scaled error, min cosine, top-1 agreement), the export time
(s) and the artifact size (bytes). CoreML predictions need macOS, so on Linux a CoreML row is "exported" with parity
"not run": the table says so and does not count it as a pass.

The tables are rewritten after every variant (``results/<name>.{json,md}``), so a stopped run keeps what it did.

    taskset -c 1 python benchmarks/zoo_formats.py                   # all variants
    python benchmarks/zoo_formats.py --models mobilevit_xxs --name zoo_formats_smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import comma_choices, first_line, machine_description, machine_markdown, write_results

from edgedeploy.zoo import list_models

FORMATS = ("onnx", "mnn", "tflite", "coreml", "ncnn")
VARIANT_TIMEOUT_S = 1800.0


def export_all(name: str, out: Path, timeout_s: float) -> tuple[list[dict[str, Any]], float, str | None]:
    """One variant through ``edgedeploy export NAME --to all --json``: (format rows, wall s, error or None)."""
    cmd = [sys.executable, "-m", "edgedeploy.cli", "export", name, "--to", "all", "--out", str(out), "--json"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return [], time.perf_counter() - t0, f"timed out after {timeout_s:.0f} s"
    wall = time.perf_counter() - t0
    try:
        rows = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return [], wall, f"exit {proc.returncode}: {first_line(proc.stderr or proc.stdout or 'no output')}"
    return rows, wall, None


def row_of(model: str, r: dict[str, Any]) -> dict[str, Any]:
    """The table's view of one CLI format row."""
    p = r.get("parity") or {}
    return {
        "model": model,
        "format": r["format"],
        "status": r["status"],
        "parity": p.get("status"),
        "parity_reason": p.get("reason"),
        "scaled_error": p.get("scaled_error"),
        "cosine": p.get("cosine_similarity"),
        "top1": p.get("top1_agreement"),
        "export_s": r.get("export_s"),
        "size_bytes": r.get("size_bytes"),
        "error": r.get("error"),
    }


def _cell(row: dict[str, Any]) -> str:
    if row["parity"] == "passed":
        return f"pass ({row['scaled_error']:.1e})"
    if row["parity"] == "not run":
        return "exported, parity not run"
    return f"**{row['status']}**: {first_line(row['error'] or row['parity_reason'] or row['parity'] or '?')}"


def markdown(machine: dict[str, Any], rows: list[dict[str, Any]], errors: dict[str, str], wall: float) -> list[str]:
    models = list(dict.fromkeys([r["model"] for r in rows] + list(errors)))
    md = [
        "# Every zoo variant to every format (fp32, default lowering, parity on)\n\n",
        machine_markdown(machine),
        f"\nEach variant: `edgedeploy export NAME --to all --json` in a child process; wall {wall:.0f} s in all. "
        "Cell: parity passed (its scaled error: max abs error ÷ the reference's RMS, per output kind), or what "
        "failed. CoreML: exported only (CoreML prediction needs macOS; this host runs Linux), not counted as a "
        "pass.\n\n",
        "| variant | " + " | ".join(FORMATS) + " |\n",
        "|---|" + "---|" * len(FORMATS) + "\n",
    ]
    for m in models:
        if m in errors:
            md.append(f"| {m} | " + " | ".join([f"**failed**: {errors[m]}"] * len(FORMATS)) + " |\n")
            continue
        by_fmt = {r["format"]: r for r in rows if r["model"] == m}
        md.append(f"| {m} | " + " | ".join(_cell(by_fmt[f]) if f in by_fmt else "–" for f in FORMATS) + " |\n")
    md.append("\n| format | parity passed | exported, not run | failed |\n|---|---:|---:|---:|\n")
    for f in FORMATS:
        fr = [r for r in rows if r["format"] == f]
        passed = sum(r["parity"] == "passed" for r in fr)
        not_run = sum(r["parity"] == "not run" for r in fr)
        md.append(f"| {f} | {passed} of {len(models)} | {not_run} | {len(models) - passed - not_run} |\n")
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--models", default="", help="comma list of zoo names (default: every card)")
    ap.add_argument("--name", default="zoo_formats")
    ap.add_argument("--timeout", type=float, default=VARIANT_TIMEOUT_S, help="seconds per variant")
    args = ap.parse_args()
    names = [c.name for c in list_models()]
    models = comma_choices(args.models, names, "model") if args.models else names
    machine = machine_description()
    machine["affinity"] = sorted(os.sched_getaffinity(0))
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-formats-") as tmp:
        for m in models:
            got, wall, err = export_all(m, Path(tmp) / m, args.timeout)
            if err:
                errors[m] = err
            rows += [row_of(m, r) | {"variant_wall_s": round(wall, 1)} for r in got]
            print(f"{m}: {wall:.0f} s " + (err or ", ".join(f"{r['format']} {r['status']}" for r in got)), flush=True)
            md = markdown(machine, rows, errors, time.perf_counter() - t0)
            payload = {"machine": machine, "args": vars(args), "rows": rows, "errors": errors}
            write_results(args.name, payload, "".join(md))
    print("".join(md))


if __name__ == "__main__":
    main()
