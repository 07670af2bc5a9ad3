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
from edgedeploy.outpaths import check_output_files, write_output


def _say(console: Console) -> Any:
    return lambda msg: console.print(f"[dim]{msg}[/dim]")


def describe(r: Any) -> str:
    """The one-line human verdict."""
    cal = f"calibration {r.calibration}" if r.calibration else "no calibration (defaults)"
    return (
        f"{r.verdict}: candidate / baseline = {r.ratio:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}] at "
        f"{r.confidence:.1%}, band ±{r.threshold_pct:g} %, {r.blocks} blocks × {r.block_size} runs per side, "
        f"{r.elapsed_s:.1f} s ({r.stopped}); baseline p50 {r.baseline.median_ms:.3f} ms, candidate p50 "
        f"{r.candidate.median_ms:.3f} ms; {r.device} / {r.runtime}; {cal}; memory {_memory(r)}"
    )


def _memory(r: Any) -> str:
    b, c = r.baseline.memory.get("peak_rss_mb"), r.candidate.memory.get("peak_rss_mb")
    if b is None or c is None:
        return "not measured"
    return f"{r.memory_verdict} (peak RSS {b:.1f} -> {c:.1f} MB)"


@click.command("ab")
@click.argument("baseline", required=False, metavar="BASELINE")
@click.argument("candidate", required=False, metavar="CANDIDATE")
@click.option("--device", default=None, help="Device profile name or YAML path (default: local; --suite: its devices).")
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
    device: str | None,
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
    check_output_files(markdown_path, html_path)
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
            write_output(markdown_path, report.markdown())
        if html_path:
            write_output(html_path, report.html())
        if as_json:
            click.echo(json.dumps({"cases": [{"case": lbl, **r.to_json()} for lbl, r in report.rows]}, indent=2))
        sys.exit(report.exit_code)
    if not (baseline and candidate):
        raise ConfigError("give BASELINE and CANDIDATE (model specs or artifacts), or --suite FILE --baseline-ref REF")
    from edgedeploy.spec import parse_input_shape

    common["device"] = device or "local"
    result = api.ab(baseline, candidate, input_shape=parse_input_shape(input_shape), **common)
    console.print(describe(result))
    if markdown_path:
        write_output(markdown_path, markdown_table([(None, result)]))
    if as_json:
        click.echo(json.dumps(result.to_json()))
    if result.stopped == "interrupted":
        sys.exit(130)
    sys.exit(result.exit_code)


@click.command("calibrate")
@click.option("--device", default="local", show_default=True, help="Device profile name or YAML path.")
@click.option("--runtime", default="onnxruntime", show_default=True, help="Runtime to calibrate with.")
@click.option("--threads", type=int, default=1, show_default=True, help="Intra-op threads.")
@click.option("--threshold", type=float, default=3.0, show_default=True, help="Band half-width the rule uses (%).")
@click.option("--max-seconds", type=float, default=900.0, show_default=True, help="Time budget of the whole run (s).")
@click.option("--trial-seconds", type=float, default=20.0, show_default=True, help="Time cap of one trial (s).")
@click.option("--input-size", type=int, default=96, show_default=True, help="ABNet's input side.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Where to store it (default: the device's calibration file, see `ab --calibration`).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as JSON (stdout).")
@click.option("--trust-on-first-use", is_flag=True, help="SSH: accept and record an unknown host key.")
@guarded
def calibrate_cmd(
    device: str,
    runtime: str,
    threads: int,
    threshold: float,
    max_seconds: float,
    trial_seconds: float,
    input_size: int,
    out_path: str | None,
    as_json: bool,
    trust_on_first_use: bool,
) -> None:
    """Measure A/A false alarms and the power against real extra-block slowdowns on DEVICE; choose the block
    length and confidence keeping false alarms <= 1 %; store it for `edgedeploy ab --device DEVICE`."""
    from rich.table import Table

    from edgedeploy.errors import OutputError
    from edgedeploy.results import ab_calibration
    from edgedeploy.results.ab_calibrate import CalibrateOptions, calibrate

    console = Console(stderr=as_json, highlight=False)
    check_output_files(out_path)
    opts = CalibrateOptions(device=device, runtime=runtime, threads=threads, threshold_pct=threshold,
                            max_seconds=max_seconds, trial_seconds=trial_seconds, input_size=input_size,
                            progress=_say(console))  # fmt: skip
    if trust_on_first_use:
        from edgedeploy.devices.profile import load_profile

        load_profile(device)  # the profile must load; TOFU is recorded by the first connection
    run = calibrate(opts)
    cal = run.calibration
    assert cal is not None
    try:
        where = ab_calibration.save(cal, out_path)
    except OSError as e:
        raise OutputError(f"cannot write the calibration: {e.strerror or e}") from e
    fa = cal.false_alarm
    t = Table(title=f"A/B calibration of {cal.device}: block {cal.block_ms:g} ms, confidence {cal.confidence}, "
                    f"band ±{cal.threshold_pct:g} %")  # fmt: skip
    for col in ("condition", "achieved", "trials", "regression verdicts", "rate", "median s", "p95 s"):
        t.add_column(col)
    t.add_row("A/A", "0", str(fa.get("trials")), str(fa.get("regression")), f"{fa.get('rate', 0):.1%}",
              f"{fa.get('median_s', 0):.1f}", f"{fa.get('p95_s', 0):.1f}")  # fmt: skip
    for label, p in cal.power.items():
        rate = p.get("rate")
        t.add_row(label, f"{p['achieved_pct']:+.1f} %", str(p["trials"]), str(p["detected"]),
                  "–" if rate is None else f"{rate:.1%}", f"{p.get('median_s') or 0:.1f}",
                  f"{p.get('p95_s') or 0:.1f}")  # fmt: skip
    console.print(t)
    met = "meets" if fa.get("meets_target") else "does NOT meet"
    console.print(f"{len(run.trials)} trials in {run.elapsed_s:.0f} s; the chosen rule {met} the 1 % false-alarm "
                  f"target on these trials; stored in {where}")  # fmt: skip
    if as_json:
        click.echo(json.dumps(cal.model_dump()))
