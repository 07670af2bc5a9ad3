"""``edgedeploy parity ARTIFACT [--model NAME]``: re-check an artifact against PyTorch, bisect when it fails.

The model, precision, input size, layout and lowering mode come from the manifest beside the artifact
(``--model`` is needed only without a manifest, or to override it). Parity uses the same inputs, metrics and
default gates as export (:mod:`edgedeploy.export.parity`). When the gate fails — or with ``--bisect`` — the
artifact is bisected (:mod:`edgedeploy.export.bisect`, ONNX and MNN artifacts) and the first module whose output
drifts beyond ``--tolerance`` is named with the error table.

Exit codes: 0 parity passed (or not run on this OS), 1 parity failed, 2 bad input, 3 missing package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _module_for(model: str, size: int, weights: str | None, lowering: str, fmt: str) -> tuple[Any, Any]:
    """(original module, exported module): the latter lowered for ``fmt`` when the artifact was."""
    import torch

    from edgedeploy.cards import get_card
    from edgedeploy.data import real_image
    from edgedeploy.export.lowering import lower
    from edgedeploy.zoo import build_model

    module = build_model(get_card(model), size, weights=weights)
    if lowering == "none":
        return module, module
    lowered, _ = lower(module, torch.from_numpy(real_image(size)), target=fmt)
    return module, lowered


def check_artifact(
    artifact: str | Path,
    model: str | None = None,
    bisect: bool | None = None,
    tolerance: float | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """Parity (and bisection when it fails, or when ``bisect`` is True) of ``artifact``; returns a dict with
    ``parity`` (ParityReport) and ``bisection`` (BisectReport or None) and ``bisect_error`` (why not bisected)."""
    from edgedeploy.errors import ArtifactError, ConfigError
    from edgedeploy.export.bisect import BISECT_FORMATS, bisect_artifact
    from edgedeploy.export.manifest import read_manifest
    from edgedeploy.export.parity import DEFAULT_THRESHOLDS
    from edgedeploy.export.pipeline import run_parity
    from edgedeploy.limits import check_parity_thresholds
    from edgedeploy.registry import existing_artifact_format

    path = Path(artifact)
    if not path.exists():
        raise ArtifactError(f"artifact not found: {path}")
    fmt = existing_artifact_format(path)
    check_parity_thresholds(tolerance=tolerance)
    manifest = read_manifest(path, verify=True)
    if manifest is None and model is None:
        raise ConfigError(f"{path} has no manifest beside it; name the model with --model")
    name = model or manifest.model  # type: ignore[union-attr]
    precision = manifest.precision if manifest else "fp32"
    layout = manifest.input.layout if manifest else "NCHW"
    lowering = (manifest.lowering or {}).get("mode", "default") if manifest else "default"
    weights = weights or (manifest.weights if manifest else None)
    if manifest:
        shape = manifest.input.shape
        size = int(shape[2] if layout == "NCHW" else shape[1])
    else:
        from edgedeploy.cards import get_card

        size = get_card(name).input_size
    original, exported = _module_for(name, size, weights, lowering, fmt)
    report = run_parity(original, path, fmt, (1, 3, size, size), DEFAULT_THRESHOLDS[precision], layout)
    result: dict[str, Any] = {"artifact": str(path), "model": name, "format": fmt, "precision": precision}
    result["parity"] = report
    result["bisection"] = None
    result["bisect_error"] = None
    if bisect or (bisect is None and report.status == "failed"):
        if fmt not in BISECT_FORMATS:
            result["bisect_error"] = f"bisection supports {', '.join(BISECT_FORMATS)} artifacts, not {fmt}"
        else:
            opset = manifest.opset if manifest else None
            result["bisection"] = bisect_artifact(
                exported, path, fmt, (1, 3, size, size), tolerance, None, precision, opset
            )
    return result


@click.command("parity")
@click.argument("artifact", type=click.Path())
@click.option("--model", default=None, help="Zoo model name (default: from the manifest).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="state_dict (default: manifest's).")
@click.option("--bisect/--no-bisect", "bisect", default=None, help="Bisect even when parity passes / never bisect.")
@click.option("--tolerance", type=float, default=None, help="Bisection: max normwise relative error per module.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--device", default=None, help="Run the parity inputs on this device (profile name or YAML path) and "
              "compare its outputs with PyTorch fp32 on this machine (no bisection).")  # fmt: skip
@click.option("--runtime", default=None, help="--device: runtime on the board (default: the format's).")
def parity_cmd(
    artifact: str, model: str | None, weights: str | None, bisect: bool | None, tolerance: float | None, as_json: bool,
    device: str | None, runtime: str | None,
) -> None:  # fmt: skip
    """Check ARTIFACT against PyTorch; when the gate fails, bisect it and name the first module that drifts.

    With --device, the board computes the outputs (edgedeploy.devices.board_parity). Exit 1 when parity fails.
    """
    import sys

    if device is not None and device != "local":
        _parity_on_device(artifact, device, runtime, model, weights, as_json)
        return

    from rich.console import Console
    from rich.table import Table

    err = Console(stderr=True, highlight=False)
    with err.status(f"checking {artifact}"):
        res = check_artifact(artifact, model, bisect, tolerance, weights)
    p = res["parity"]
    b = res["bisection"]
    if as_json:
        out = {**res, "parity": p.to_dict(), "bisection": b.to_dict() if b else None}
        click.echo(json.dumps(out, indent=2))
    else:
        con = Console()
        t = Table(
            title=f"{res['model']} · {res['format']} {res['precision']} · {Path(artifact).name}", show_header=False
        )
        if p.status == "not run":
            t.add_row("parity", f"not run: {p.reason}")
        else:
            verdict = "[green]passed[/]" if p.passed else "[red]FAILED[/]: " + "; ".join(p.failures)
            t.add_row("parity", verdict)
            t.add_row(
                "metrics",
                f"max abs {p.max_abs_error:.2e}, max rel {p.max_rel_error:.2e}, cosine {p.cosine_similarity:.6f}, "
                f"top-1 {p.top1_agreement:.2f} ({len(p.inputs)} inputs, runtime {p.runtime})",
            )
        con.print(t)
        if b is not None:
            con.print(b.table())
            if b.culprit:
                con.print(f"first module whose output drifts: [bold]{b.culprit}[/] ({b.culprit_type})")
            else:
                con.print("no module exceeds the tolerance with a persisting error")
        elif res["bisect_error"]:
            err.print(f"[yellow]not bisected:[/] {res['bisect_error']}")
    if p.status == "failed":
        sys.exit(1)


def _parity_on_device(
    artifact: str, device: str, runtime: str | None, model: str | None, weights: str | None, as_json: bool
) -> None:
    import sys

    from rich.console import Console
    from rich.markup import escape

    from edgedeploy.devices.board_parity import parity_on_device, summary_line, verdict_line
    from edgedeploy.devices.profile import load_profile

    err = Console(stderr=True, highlight=False)
    profile = load_profile(device)
    with err.status(f"checking {artifact} on {profile.name}"):
        res = parity_on_device(profile, artifact, runtime, model, weights)
    bp = res.board_parity  # type: ignore[attr-defined]
    if as_json:
        out = {"artifact": str(artifact), "model": res.model, "format": res.format, "precision": res.precision,
               "device": res.device, "arch": res.env.get("arch"), "runtime": res.runtime, "parity": bp}  # fmt: skip
        click.echo(json.dumps(out, indent=2))
    else:
        Console().print(f"{res.model} · {res.format} {res.precision} · {res.device} ({res.env.get('arch')}): "
                        f"{escape(summary_line(bp))}")  # fmt: skip
    line = verdict_line(res)
    if line:
        err.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
        sys.exit(1)
