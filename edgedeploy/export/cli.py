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

import click

from edgedeploy.export.recheck import check_artifact


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

    from edgedeploy.commands.tables import bisect_table

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
            con.print(bisect_table(b))
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
