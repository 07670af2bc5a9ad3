"""The ``edgedeploy`` command line: parse, call the library, print, map errors to exit codes.

Every :class:`~edgedeploy.errors.EdgeDeployError` becomes one line on stderr and its ``exit_code``, any other
exception ``internal error: …`` and exit 70, SIGINT / SIGTERM exit 130 / 143 (:mod:`edgedeploy.clierrors`);
``--debug`` (or ``EDGEDEPLOY_DEBUG=1``) shows the traceback too. Numeric options are checked by
:mod:`edgedeploy.limits` before anything runs. ``--json`` output goes to stdout alone; progress and
tables go to stderr in that mode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgedeploy import registry
from edgedeploy._util import si_format
from edgedeploy._version import __version__
from edgedeploy.clierrors import ErrorHandlingGroup, err_console

#: command groups that live beside their library code, imported when first used (so that ``bench --threads 9999``
#: is refused without importing numpy / scipy for ``compare``): name -> "module:attribute"
LAZY_COMMANDS = {
    "ab": "edgedeploy.commands.ab:ab_cmd",
    "calibrate": "edgedeploy.commands.ab:calibrate_cmd",
    "devices": "edgedeploy.devices.cli:devices_group",
    "compare": "edgedeploy.results.cli:compare_cmd",
    "report": "edgedeploy.results.cli:report_cmd",
    "results": "edgedeploy.results.cli:results_group",
    "baseline": "edgedeploy.results.cli:baseline_group",
    "parity": "edgedeploy.export.cli:parity_cmd",
    "profile": "edgedeploy.opprof.cli:profile_cmd",
}


class EdgeDeployGroup(ErrorHandlingGroup):
    """The top-level group: every error of every sub-command is one line and a documented exit code
    (:mod:`edgedeploy.clierrors`: toolkit errors, interrupts, and a last-resort ``internal error`` with exit 70).
    The commands of :data:`LAZY_COMMANDS` are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in LAZY_COMMANDS:
            import importlib

            module, _, attr = LAZY_COMMANDS[cmd_name].partition(":")
            cmd = getattr(importlib.import_module(module), attr)
            self.add_command(cmd, cmd_name)
        return cmd


@click.group(cls=EdgeDeployGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="EDGEDEPLOY_DEBUG", help="Show tracebacks on errors.")
@click.version_option(__version__, prog_name="edgedeploy")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Export light-weight vision models to edge formats, prove parity, and measure batch-1 latency."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ---------------------------------------------------------------------------------------------------- models
@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--no-macs", is_flag=True, help="Skip MAC counting (faster).")
def models_cmd(as_json: bool, no_macs: bool) -> None:
    """List the zoo: params and MACs counted from the built modules, beside the papers' figures."""
    from edgedeploy.zoo import build_model, count_macs, count_params, list_models

    try:
        from edgedeploy.macs import count_macs_paper_convention
    except ImportError:
        count_macs_paper_convention = None

    rows = []
    for card in list_models():
        module = build_model(card)
        row: dict[str, Any] = {
            "name": card.name,
            "family": card.family,
            "input_size": card.input_size,
            "params": count_params(module),
            "macs": None,
            "official_params": card.official.params if card.official else None,
            "paper_params": card.paper.params if card.paper else None,
            "paper_macs": card.paper.macs if card.paper else None,
            "paper_source": card.paper.source if card.paper else None,
        }
        if not no_macs:
            macs = count_macs(module, card.input_size)
            row["macs"] = macs.total
            row["macs_breakdown"] = {"conv": macs.conv, "linear": macs.linear, "matmul": macs.matmul}
            if count_macs_paper_convention is not None:
                row["macs_paper_convention"] = count_macs_paper_convention(module, card.input_size)
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="edgedeploy model zoo (batch 1; MACs = conv + linear + matmul; ✓ = official params)")
    for col in ("name", "family", "input", "params", "paper params", "MACs", "MACs (fvcore)", "paper MACs"):
        table.add_column(col, justify="left" if col in ("name", "family") else "right", no_wrap=col == "name")
    for r in rows:
        match = ""
        if r["official_params"] is not None:
            match = " ✓" if r["official_params"] == r["params"] else " ✗"
        table.add_row(
            r["name"], r["family"], str(r["input_size"]), si_format(r["params"]) + match, si_format(r["paper_params"]),
            si_format(r["macs"]), si_format(r.get("macs_paper_convention")), si_format(r["paper_macs"]),
        )  # fmt: skip
    Console().print(table)


# ---------------------------------------------------------------------------------------------------- export
@main.command("export")
@click.argument("model", metavar="MODEL_SPEC")
@click.option("--to", "formats", required=True, help="Target format (see `edgedeploy formats`), or all.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="artifacts", show_default=True)
@click.option("--precision", type=click.Choice(registry.precision_choices()), default="fp32", show_default=True)
@click.option("--opset", type=int, default=None,
              help=f"ONNX opset (default {registry.DEFAULT_OPSET}; 18+ uses the torch.export exporter, "
              f"{registry.FALLBACK_OPSET} and below the TorchScript one).")  # fmt: skip
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Local state_dict to load.")
@click.option("--input-size", type=int, default=None, help="Square input side (default: the card's).")
@click.option("--input-shape", default=None, help="Input shape N,C,H,W, e.g. 1,3,96,160 (non-square allowed).")
@click.option("--name", default=None, help="Artifact / model name (default: the card's, callable's or file's).")
@click.option("--lowering", type=click.Choice(["default", "none"]), default="default", show_default=True)
@click.option("--atol", type=float, default=None, help="Parity gate: max abs error (replaces the scaled-error gates).")
@click.option("--min-cosine", type=float, default=None, help="Parity gate: min cosine similarity.")
@click.option("--min-top1", type=float, default=None, help="Parity gate: min top-1 agreement (0..1).")
@click.option("--no-parity", is_flag=True, help="Skip the parity check (manifest says 'not run').")
@click.option("--calibration", type=click.Path(file_okay=False), default=None,
              help="int8: folder of calibration images (default: the embedded photo, crops and flips).")  # fmt: skip
@click.option("--layout", type=click.Choice(registry.LAYOUTS), default="NCHW", show_default=True,
              help="TFLite input layout.")  # fmt: skip
@click.option("--int8", "int8_mode", type=click.Choice(["full", "weight"]), default="full", show_default=True,
              help="int8: full-integer with calibration, or weight-only.")  # fmt: skip
@click.option("--int8-speed-check/--no-int8-speed-check", default=True, show_default=True,
              help="int8: time the int8 artifact against the fp32 one of the format on this host (1 thread, CPU "
              "time, interleaved) and say which is faster; off for CI / fast exports.")  # fmt: skip
@click.option("--int8-speed-seconds", type=float, default=5.0, show_default=True,
              help="int8: at most this many seconds of timing for --int8-speed-check.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export_cmd(
    model: str, formats: str, out_dir: str, precision: str, opset: int | None, weights: str | None,
    input_size: int | None, input_shape: str | None, name: str | None, lowering: str, atol: float | None,
    min_cosine: float | None, min_top1: float | None, no_parity: bool, calibration: str | None, layout: str,
    int8_mode: str, int8_speed_check: bool, int8_speed_seconds: float, as_json: bool,
) -> None:  # fmt: skip
    """Export MODEL_SPEC to a format, check parity, write the artifact and its manifest.

    MODEL_SPEC: a zoo name, path/to/file.py:callable or package.module:callable (returns an nn.Module; needs
    --input-shape unless a card gives it), a model card (.yaml), or an .onnx file (parity against onnxruntime).

    Exit codes: 0 parity passed (or not run), 1 parity failed (the artifact is kept, marked failed),
    2 bad input, 3 missing optional package, 4 export failed.
    """
    from edgedeploy import api
    from edgedeploy.errors import UnknownFormatError
    from edgedeploy.outpaths import check_output_dir

    check_output_dir(out_dir, "--out")  # before any model is built (the options are checked once, by the API)
    known = registry.format_names()
    fmts = known if formats == "all" else [formats]
    for f in fmts:
        if f not in known:
            raise UnknownFormatError(f, [*known, "all"])
    opts = api.ExportOptions(
        precision=precision, parity=not no_parity, opset=opset, weights=weights, input_size=input_size,
        lowering=lowering, atol=atol, min_cosine=min_cosine, min_top1=min_top1, layout=layout,
        int8_mode=int8_mode, calibration=calibration, int8_speed_check=int8_speed_check,
        int8_speed_seconds=int8_speed_seconds,
    )  # fmt: skip
    kwargs = {f: getattr(opts, f) for f in ("opset", "weights", "input_size", "lowering", "atol", "min_cosine",
                                             "min_top1", "layout", "int8_mode", "calibration", "int8_speed_check",
                                             "int8_speed_seconds")}  # fmt: skip
    if len(fmts) > 1:
        from edgedeploy.commands.export_all import run_export_all

        sys.exit(run_export_all(model, fmts, out_dir, as_json, precision=precision, parity=not no_parity,
                                input_shape=input_shape, name=name, **kwargs))  # fmt: skip
    from edgedeploy.commands.progress import stage_progress

    with stage_progress(err_console, f"exporting {model} to {fmts[0]}") as progress:
        outcome = api.export(
            model, fmts[0], out=out_dir, precision=precision, parity=not no_parity, input_shape=input_shape,
            name=name, progress=progress, **kwargs,
        )  # fmt: skip
    p = outcome.parity
    if as_json:
        click.echo(json.dumps(outcome.to_json_dict(), indent=2))
    else:
        m = outcome.manifest
        table = Table(title=f"{m.model} → {m.format} ({m.precision})", show_header=False)
        table.add_row("artifact", str(outcome.artifact))
        table.add_row("manifest", str(outcome.manifest_path))
        source = getattr(m, "source", None) or {}
        if source.get("kind") not in (None, "zoo"):
            table.add_row("source", f"{source['kind']}: {source['spec']} (input {'x'.join(map(str, m.input.shape))})")
        table.add_row("size", f"{m.size_bytes / 1e6:.2f} MB")
        table.add_row("exporter", f"{m.exporter} (opset {m.opset})")
        table.add_row("ops", ", ".join(f"{k}×{v}" for k, v in m.op_census.items()))
        if p.status == "not run":
            table.add_row("parity", f"not run: {p.reason}")
        else:
            verdict = "[green]passed[/]" if p.passed else "[red]FAILED[/]"
            against = f" vs {p.reference}" if p.reference and p.reference != "pytorch fp32" else ""
            table.add_row("parity", f"{verdict}  {escape(p.summary())}{escape(against)}")
        if m.int8_speed is not None:
            from edgedeploy.export.manifest import int8_speed_line

            line = escape(int8_speed_line(m.int8_speed))
            slower = m.int8_speed.ratio is not None and m.int8_speed.ratio < 1
            table.add_row("int8 speed", f"[yellow]{line}[/]" if slower else line)
        Console().print(table)
    bisection = outcome.manifest.bisection
    if p.status == "failed" and bisection and bisection.get("culprit"):
        err_console.print(
            f"first module that drifts: [bold]{escape(bisection['culprit'])}[/] "
            f"({escape(str(bisection['culprit_type']))})",
            soft_wrap=True,
        )
    if p.status == "failed":
        err_console.print(
            f"[bold red]error:[/] parity failed for {escape(str(outcome.artifact))}: {escape('; '.join(p.failures))}",
            soft_wrap=True,
        )
        sys.exit(1)


# ---------------------------------------------------------------------------------------------------- bench
@main.command("bench")
@click.argument("target", metavar="[MODEL_SPEC_OR_FILE]", required=False)
@click.option("--device", default=None, help="Device profile name or path to a YAML file (default: local; with a "
              "suite: replaces the suite's devices).")  # fmt: skip
@click.option(
    "--suite",
    "suite_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Run a benchmark suite file (default with no model: ./edgedeploy.yaml, else the built-in suite).",
)
@click.option("--markdown", type=click.Path(dir_okay=False), default=None, help="Suites: write the table as Markdown.")
@click.option(
    "--case-timeout",
    type=float,
    default=None,
    help="Suites: seconds an export or a timed run may take "
    "before its case is marked `timed out` (the suite goes on; default: the suite's case_timeout, none).",
)
@click.option("--runtime", default=None,
              help="See `edgedeploy formats` (default: mnn for a model, else the file format's).")  # fmt: skip
@click.option("--iterations", type=int, default=100, show_default=True, help="Timed batch-1 runs.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed runs before timing.")
@click.option("--threads", type=int, default=None, help="Intra-op threads (default: all cores / the profile's).")
@click.option("--precision", type=click.Choice(registry.precision_choices()), default="fp32", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Local state_dict to load.")
@click.option("--input-size", type=int, default=None, help="Square input side (default: the card's).")
@click.option("--input-shape", default=None, help="Input shape N,C,H,W for a model spec, e.g. 1,3,96,160.")
@click.option("--name", default=None, help="Model name for a spec (default: the card's, callable's or file's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (stdout).")
@click.option("--out", "out", type=click.Path(), default=None, help="Write the result: a .json file, or a folder "
              "(one record appended per run).")  # fmt: skip
@click.option("--trust-on-first-use", is_flag=True, help="SSH: accept and record an unknown host key.")
@click.option("--parity", "with_parity", is_flag=True, help="Also run the parity inputs on the device and compare its "
              "outputs with PyTorch fp32 (result: board_parity; exit 1 when it fails).")  # fmt: skip
@click.option("--allow-oversubscribe", is_flag=True, help="Allow more --threads than the device has cores "
              "(up to 4x, with a warning).")  # fmt: skip
@click.option("--matrix", is_flag=True, help="Every format x precision x runtime the device has, at 1..cores threads: "
              "ranked, with parity, and the best case (see edgedeploy/bench/matrix.py).")  # fmt: skip
@click.option("--threads-sweep", default=None, help="--matrix: thread counts, e.g. 1,2 (default 1..cores).")
@click.option("--max-minutes", type=click.FloatRange(min=0.01), default=None,
              help="--matrix: bound the whole run; cases not started by then are skipped.")  # fmt: skip
@click.option("--sustained", type=click.FloatRange(min=1, max=86400), default=None, metavar="SECONDS",
              help="Run back-to-back for SECONDS: per-iteration timestamps, temperature / frequency every second, "
              "first- and last-window p50 and throttle_ratio (see edgedeploy/bench/sustained.py).")  # fmt: skip
@click.pass_context
def bench_cmd(
    ctx: click.Context, target: str | None, device: str | None, suite_file: str | None, markdown: str | None,
    runtime: str | None, iterations: int, warmup: int, threads: int | None, precision: str, weights: str | None,
    input_size: int | None, input_shape: str | None, name: str | None, as_json: bool, out: str | None,
    trust_on_first_use: bool, with_parity: bool, allow_oversubscribe: bool, matrix: bool, threads_sweep: str | None,
    max_minutes: float | None, sustained: float | None, case_timeout: float | None,
) -> None:  # fmt: skip
    """Time batch-1 inference of MODEL_SPEC_OR_FILE: load, first inference, warm-up, then N timed runs.

    With --suite FILE, or with no MODEL_SPEC_OR_FILE (then ./edgedeploy.yaml, else EdgeFormer-S vs MobileViT-S on
    every runtime the device has), run a suite: every case exported once and benched, one table, one stored run;
    exit 0 only when every case that was not excluded was benchmarked, else 1 (see edgedeploy/suite.py).

    An artifact file is timed as it is; anything `export` takes is exported first (or its cached artifact reused).
    `--runtime native:TOOL` runs a native tool of the device profile (`mnn-runner`, `mnn-benchmark`, …).
    Exit codes: 0 done, 1 board-side parity failed (--parity; the result is printed and stored first), 2 bad input
    (also: --out could not be written; the message names the file the samples were saved to instead), 3 missing
    optional package, 5 device problem or partial result, 130 / 143 interrupted (the samples measured so far are
    printed and stored first; in a suite the table is printed, the case in progress is `partial`).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgedeploy import api, limits

    limits.check_run_options(iterations, warmup, threads)  # before anything is loaded or started
    from edgedeploy.outpaths import check_output_file

    check_output_file(markdown, "--markdown")
    if case_timeout is not None and not (0 < case_timeout <= 86_400):
        from edgedeploy.errors import ConfigError

        raise ConfigError(f"--case-timeout must be between 0 and 86400 s (got {case_timeout:g})")
    from edgedeploy.devices.profile import load_profile

    if suite_file is not None or target is None:
        from edgedeploy.suite import find_suite, load_suite

        suite = load_suite(suite_file) if suite_file else find_suite()
        return _run_suite(ctx, suite, device, out, as_json, markdown, trust_on_first_use)
    device = device or "local"
    if not matrix and (threads_sweep is not None or max_minutes is not None):
        from edgedeploy.errors import ConfigError

        raise ConfigError("--threads-sweep and --max-minutes belong to --matrix")
    if matrix and sustained is not None:
        from edgedeploy.errors import ConfigError

        raise ConfigError("--sustained times one case; run it on the case --matrix picks, not with --matrix")
    if matrix:
        from edgedeploy.bench.matrix import MatrixOptions
        from edgedeploy.commands.matrix import parse_sweep, run_matrix_command

        opts = MatrixOptions(device=device, threads=parse_sweep(threads_sweep), iterations=iterations, warmup=warmup,
                             max_minutes=max_minutes, trust_on_first_use=trust_on_first_use, store=out)  # fmt: skip
        return run_matrix_command(target, opts, as_json, err_console, markdown)
    if load_profile(device).transport == "labgrid":  # a farm: one case, on whichever board labgrid allocates
        from edgedeploy.bench.run import DEFAULT_RUNTIME
        from edgedeploy.suite import Suite

        one = Suite(name=target, models=[target], runtimes=[runtime or DEFAULT_RUNTIME], devices=[device])
        return _run_suite(ctx, one, device, out, as_json, markdown, trust_on_first_use)
    if out is not None:
        api.check_result_out(Path(out))  # fails before measuring; the result is written after it is printed

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"preparing {target}", total=iterations)

        def say(msg: str) -> None:
            if msg.startswith("benchmarking on ") or msg.startswith("result "):
                progress.console.print(msg, soft_wrap=True, highlight=False)
            else:
                progress.update(task, description=msg)

        def on_sample(i: int, ms: float) -> None:
            if i == 0:
                progress.update(task, description=f"timing {target}")
            progress.update(task, advance=1)

        result = api.bench(
            target, device=device, runtime=runtime, iterations=iterations, warmup=warmup, threads=threads,
            precision=precision, weights=weights, input_size=input_size, input_shape=input_shape, name=name,
            trust_on_first_use=trust_on_first_use, progress=say, on_sample=on_sample,
            allow_oversubscribe=allow_oversubscribe, parity=with_parity, sustained=sustained,
        )  # fmt: skip
    from edgedeploy.devices import board_parity

    # the samples go out (stdout) before any write that can fail; see edgedeploy.bench.keep
    if as_json:
        click.echo(result.to_json())
        for w in result.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
    else:
        _print_result(result)
        if getattr(result, "board_parity", None):
            Console().print(f"parity on {result.device}: {escape(board_parity.summary_line(result.board_parity))}")
    if out is not None:
        _write_result(result, Path(out), printed_json=as_json)
    failed = board_parity.verdict_line(result)
    if failed:
        err_console.print(f"[bold red]error:[/] {escape(failed)}", soft_wrap=True)
        sys.exit(1)
    if result.status == "partial":
        err_console.print(f"[yellow]warning:[/] partial result: {escape('; '.join(result.warnings))}", soft_wrap=True)
        from edgedeploy.clierrors import received_signal

        signum = received_signal()
        sys.exit(128 + signum if signum else 5)


def _write_result(result: Any, out: Path, printed_json: bool = False) -> None:
    from edgedeploy.bench.keep import save_result
    from edgedeploy.errors import OutputError

    try:
        path = save_result(result, out)
    except OutputError as e:
        if getattr(e, "saved", None) is None and not printed_json:
            click.echo(result.to_json())  # nowhere else to keep the samples
        raise
    err_console.print(f"result {'written to' if path == out else 'stored in'} {path}")


def _run_suite(
    ctx: click.Context, suite: Any, device: str | None, out: str | None, as_json: bool, markdown: str | None,
    trust_on_first_use: bool,
) -> None:  # fmt: skip
    """Suite mode: options given on the command line override the suite's (see edgedeploy/bench/cli.py)."""
    from click.core import ParameterSource

    from edgedeploy import api
    from edgedeploy.bench.cli import run_suite_command

    given = {k: v for k, v in ctx.params.items() if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    update: dict[str, Any] = {
        k: given[k] for k in ("iterations", "warmup", "threads", "input_size", "case_timeout") if k in given
    }
    if "runtime" in given:
        update["runtimes"] = [registry.runtime_spec(given["runtime"]).name]
    if "precision" in given:
        update["precisions"] = [given["precision"]]
    if update:
        from pydantic import ValidationError

        from edgedeploy.errors import ConfigError

        try:
            suite = type(suite).model_validate({**suite.model_dump(), **update, "path": suite.path})
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"])
            raise ConfigError(f"--{field.replace('_', '-')}: {err['msg']}") from None
    if out is not None:  # a folder: the run record goes there; a .json file: every result as a list (and the
        api.check_result_out(Path(out))  # run record in the default store)
    run_suite_command(suite, [device] if device else None, out, as_json, markdown, trust_on_first_use, err_console)


def _print_result(r: Any) -> None:
    table = Table(title=f"{r.model} · {r.format} {r.precision} · {r.runtime} · {r.device} · {r.threads} threads")
    table.add_column("latency (ms)", justify="left")
    for col in ("p50", "p90", "p99", "mean", "std", "min", "max"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{len(r.samples_ms)} runs (+{r.warmup} warm-up)", *(f"{v:.2f}" for v in (
            r.median_ms, r.p90_ms, r.p99_ms, r.mean_ms, r.std_ms, r.min_ms, r.max_ms))
    )  # fmt: skip
    Console().print(table)
    extra = []
    if r.load_ms is not None:
        extra.append(f"load {r.load_ms:.1f} ms")
    if r.first_ms is not None:
        extra.append(f"first inference {r.first_ms:.1f} ms")
    from edgedeploy.results.figures import fmt, fmt_mb_bytes

    size, peak, delta = (getattr(r, k, None) for k in ("artifact_bytes", "peak_rss_mb", "rss_delta_mb"))
    extra.append(f"artifact {fmt_mb_bytes(size)} MB" if size is not None else "artifact n/a")
    extra.append(f"peak RSS {fmt(peak)} MB (+{fmt(delta)} MB from just before the load)" if peak is not None
                 else "peak RSS n/a")  # fmt: skip
    if extra:
        Console().print(", ".join(extra))
    s = getattr(r, "sustained", None)
    if s:
        Console().print(
            f"sustained {s['duration_s']:.0f} s: {s['iterations']} iterations; p50 {s['first_window_p50_ms']:.2f} ms "
            f"in the first window, {s['last_window_p50_ms']:.2f} ms in the last ({s['window_s']:.0f} s windows): "
            f"throttle_ratio {fmt(s['throttle_ratio'], '{:.3f}')}; temperature {fmt(s['temperature_c_max'])} °C max"
        )
    for name, why in (getattr(r, "not_measured", None) or {}).items():
        err_console.print(f"[dim]{escape(name)} not measured: {escape(why)}[/]", soft_wrap=True)
    for w in r.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)


# ---------------------------------------------------------------------------------------------------- formats
@main.command("formats")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def formats_cmd(as_json: bool) -> None:
    """List the registered formats and runtimes (built-in and from plug-in entry points)."""
    from dataclasses import asdict

    fmts = [asdict(f) for f in registry.formats().values()]
    rts = [asdict(r) for r in registry.runtimes().values()]
    if as_json:
        click.echo(json.dumps({"formats": fmts, "runtimes": rts}, indent=2))
        return
    table = Table(title="formats")
    for col in ("format", "suffixes", "precisions", "default runtime", "other runtimes", "extra"):
        table.add_column(col)
    for f in registry.formats().values():
        others = [r for r in registry.runtimes_for(f.name) if r != f.default_runtime]
        table.add_row(f.name, " ".join(f.suffixes), ", ".join(f.precisions), f.default_runtime,
                      ", ".join(others) or "–", escape(f"[{f.extra}]"))  # fmt: skip
    Console().print(table)
    table = Table(title="runtimes")
    for col in ("runtime", "aliases", "runs", "on boards as", "package", "extra"):
        table.add_column(col)
    for r in registry.runtimes().values():
        table.add_row(r.name, ", ".join(r.aliases) or "–", ", ".join(r.formats), r.device_name or "host only",
                      r.package, escape(f"[{r.extra}]") if r.extra else "–")  # fmt: skip
    Console().print(table)


# ---------------------------------------------------------------------------------------------------- groups
def _add_command_groups() -> None:
    """Add every command group now (the main group also imports them on first use, :data:`LAZY_COMMANDS`)."""
    for name in LAZY_COMMANDS:
        main.get_command(click.Context(main), name)


if __name__ == "__main__":
    main()
