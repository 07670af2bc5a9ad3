"""``edgedeploy profile SPEC|ARTIFACT --runtime R[,R…]``: per-operator times joined to ``nn.Module`` paths.

Exit codes: 2 bad input (unknown model / runtime, a device other than local, a file the runtime cannot run),
3 no profiler for the runtime here (``litert``: its Python API has no op profiler) or a missing extra,
4 the export of SPEC failed.
"""

from __future__ import annotations

import json

import click

COMPARE_DEFAULT = "onnxruntime,mnn"


@click.command("profile")
@click.argument("target")
@click.option(
    "--runtime",
    "runtimes",
    default=None,
    help="onnxruntime, mnn, torch (litert: not available); a comma list profiles each, side by side.",
)
@click.option("--compare", is_flag=True, help=f"Profile on {COMPARE_DEFAULT} (or the --runtime list) side by side.")
@click.option("--device", default="local", show_default=True, help="Only the local device has the profilers.")
@click.option("--iterations", type=int, default=50, show_default=True, help="Profiled runs (and as many bench runs).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed runs before timing.")
@click.option("--threads", type=int, default=None, help="Intra-op threads (default: all cores).")
@click.option(
    "--depth",
    type=int,
    default=2,
    show_default=True,
    help="Module table depth: 1 = stages, 2 = blocks (layer_4.1), 0 = op-owning modules (0 … 32).",
)
@click.option("--top", type=int, default=30, show_default=True, help="Rows per module table (1 … 10000).")
@click.option("--json", "as_json", is_flag=True, help="Print the record(s) as JSON (stdout).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), default=None, help="Write a self-contained page.")
def profile_cmd(
    target: str, runtimes: str | None, compare: bool, device: str, iterations: int, warmup: int,
    threads: int | None, depth: int, top: int, as_json: bool, html_out: str | None,
) -> None:  # fmt: skip
    """Per-operator profile of TARGET (a zoo model or an exported artifact) from each runtime's own profiler,
    rolled up per module and per stage, with the bench median measured in the same process.

    Exit codes: 2 bad input (unknown model / runtime, --device other than local), 3 no op profiler for the runtime
    (litert) or a missing extra, 4 the export failed."""
    from rich.console import Console

    from edgedeploy import api
    from edgedeploy.clierrors import err_console
    from edgedeploy.commands.tables import compare_table, module_table, op_type_table
    from edgedeploy.limits import check_profile_options
    from edgedeploy.opprof.render import headline
    from edgedeploy.outpaths import check_output_file

    check_profile_options(depth, top)
    check_output_file(html_out, "--html")  # before profiling, not after
    names = [r.strip() for r in (runtimes or (COMPARE_DEFAULT if compare else "onnxruntime")).split(",") if r.strip()]
    out = Console(stderr=as_json)
    with err_console.status(f"profiling {target} on {', '.join(names)}") as status:
        profiles = api.profile(
            target, names, device=device, iterations=iterations, warmup=warmup, threads=threads,
            progress=status.update,
        )  # fmt: skip
    for p in profiles:
        out.print(headline(p), soft_wrap=True)
        out.print(module_table(p, 1, top))
        if depth != 1:
            out.print(module_table(p, depth, top))
    out.print(op_type_table(profiles))
    if len(profiles) > 1:
        out.print(compare_table(profiles, 1, top))
        if depth != 1:
            out.print(compare_table(profiles, depth, top))
    if html_out:
        from pathlib import Path

        from edgedeploy._util import atomic_write_text
        from edgedeploy.opprof.render import render_html

        path = Path(html_out)  # checked before profiling (edgedeploy.outpaths)
        try:
            atomic_write_text(path, render_html(profiles, depth if depth > 1 else 2, max(top, 40)))
        except OSError as e:
            from edgedeploy.errors import OutputError

            raise OutputError(f"cannot write --html {path}: {e.strerror or e}") from e
        err_console.print(f"profile page written to {path}")
    if as_json:
        if len(profiles) == 1:
            click.echo(json.dumps(profiles[0].to_dict(), indent=2))
        else:
            from edgedeploy.opprof.render import compare_rows

            both = {"stages": compare_rows(profiles, 1), "modules": compare_rows(profiles, max(depth, 2))}
            click.echo(json.dumps({"profiles": [p.to_dict() for p in profiles], "compare": both}, indent=2))
