"""Click commands of the A/B verdict: ``edgedeploy ab`` (and ``calibrate``): parse, call the API, print.

``ab`` exits 1 for a regression, 0 for unchanged / improvement / inconclusive, 2 for bad input (different input
shapes or formats, a missing git ref, ``--max-seconds 0``, another device's calibration), 3 / 5 as everywhere.
``--json`` prints the result document alone on stdout (the human lines go to stderr then).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from edgedeploy.clierrors import guarded
from edgedeploy.results.cli import _check_outputs, _write


def _say(console: Console) -> Any:
    return lambda msg: console.print(f"[dim]{msg}[/dim]")


def describe(r: Any) -> str:
    """The one-line human verdict."""
    cal = f"calibration {r.calibration}" if r.calibration else "no calibration (defaults)"
    return (
        f"{r.verdict}: candidate / baseline = {r.ratio:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}] at "
        f"{r.confidence:.1%}, band ±{r.threshold_pct:g} %, {r.blocks} blocks × {r.block_size} runs per side, "
        f"{r.elapsed_s:.1f} s ({r.stopped}); baseline p50 {r.baseline.median_ms:.3f} ms, candidate p50 "
        f"{r.candidate.median_ms:.3f} ms; {r.device} / {r.runtime}; {cal}"
    )


@click.command("ab")
@click.argument("baseline", required=False, metavar="BASELINE")
@click.argument("candidate", required=False, metavar="CANDIDATE")
@click.option("--device", default="local", show_default=True, help="Device profile name or YAML path.")
@click.option("--runtime", default=None, help="Runtime for both sides (default: the artifact's, else MNN).")
@click.option("--threads", type=int, default=None, help="Intra-op threads (default: all cores / the profile's).")
@click.option("--threshold", type=float, default=None, help="Band half-width, percent (default: calibration, else 3).")
@click.option("--confidence", type=float, default=None, help="Interval confidence (default: calibration, else 0.99).")
@click.option("--max-seconds", type=float, default=60.0, show_default=True, help="Timing budget per A/B (s).")
@click.option("--block-size", type=int, default=None, help="Timed runs per side per block (default: ~100 ms).")
@click.option("--input-shape", default=None, help="Input shape N,C,H,W for callable specs.")
@click.option("--calibration", type=click.Path(dir_okay=False), default=None,
              help="Calibration file (default: the stored one of --device, if any).")  # fmt: skip
@click.option("--no-calibration", is_flag=True, help="Ignore any stored calibration.")
@click.option("--suite", "suite_file", type=click.Path(dir_okay=False), default=None,
              help="A/B every case of this suite: the --baseline-ref export against the working tree's.")  # fmt: skip
@click.option("--baseline-ref", default=None, help="Git ref of the baseline side for --suite (e.g. the merge base).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="--suite: HTML report.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (stdout).")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), default=None,
              help="Write the PR table row(s) as Markdown.")  # fmt: skip
@click.option("--trust-on-first-use", is_flag=True, help="SSH: accept and record an unknown host key.")
@guarded
def ab_cmd(
    baseline: str | None,
    candidate: str | None,
    device: str,
    runtime: str | None,
    threads: int | None,
    threshold: float | None,
    confidence: float | None,
    max_seconds: float,
    block_size: int | None,
    input_shape: str | None,
    calibration: str | None,
    no_calibration: bool,
    suite_file: str | None,
    baseline_ref: str | None,
    html_path: str | None,
    as_json: bool,
    markdown_path: str | None,
    trust_on_first_use: bool,
) -> None:
    """A/B CANDIDATE against BASELINE (model specs or artifacts of one format) in one process, interleaved.

    Exit 1 for a regression, 0 otherwise, 2 for bad input."""
    from edgedeploy import api
    from edgedeploy.errors import ConfigError
    from edgedeploy.results.ab import markdown_table

    console = Console(stderr=as_json, highlight=False)
    _check_outputs(markdown_path, html_path)
    common: dict[str, Any] = dict(
        device=device, runtime=runtime, threads=threads, threshold_pct=threshold, confidence=confidence,
        max_seconds=max_seconds, block_size=block_size, calibration=False if no_calibration else calibration,
        trust_on_first_use=trust_on_first_use, progress=_say(console),
    )  # fmt: skip
    if max_seconds is not None and not max_seconds > 0:
        raise ConfigError(f"--max-seconds must be > 0 (got {max_seconds:g})")
    if suite_file or baseline_ref:
        if not (suite_file and baseline_ref) or baseline or candidate:
            raise ConfigError("--suite FILE and --baseline-ref REF go together, without BASELINE / CANDIDATE")
        from edgedeploy.results.ab_suite import SuiteABOptions, run_suite_ab

        report = run_suite_ab(SuiteABOptions(suite=suite_file, baseline_ref=baseline_ref, ab=common))
        for label, r in report.rows:
            console.print(f"{label}: {describe(r)}")
        if markdown_path:
            _write(markdown_path, report.markdown())
        if html_path:
            _write(html_path, report.html())
        if as_json:
            click.echo(json.dumps({"cases": [{"case": lbl, **r.to_json()} for lbl, r in report.rows]}, indent=2))
        sys.exit(report.exit_code)
    if not (baseline and candidate):
        raise ConfigError("give BASELINE and CANDIDATE (model specs or artifacts), or --suite FILE --baseline-ref REF")
    from edgedeploy.spec import parse_input_shape

    result = api.ab(baseline, candidate, input_shape=parse_input_shape(input_shape), **common)
    console.print(describe(result))
    if markdown_path:
        _write(markdown_path, markdown_table([(None, result)]))
    if as_json:
        click.echo(json.dumps(result.to_json()))
    if result.stopped == "interrupted":
        sys.exit(130)
    sys.exit(result.exit_code)
