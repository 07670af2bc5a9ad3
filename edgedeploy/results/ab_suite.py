"""``edgedeploy ab --suite FILE --baseline-ref REF``: every case exported at the git ref and at the working tree,
then one interleaved A/B per case (:func:`edgedeploy.results.ab.run_ab`), one Markdown / HTML report.

The ref's tree is extracted with ``git archive REF`` into a temporary folder (the user's checkout, index and
``.git`` are never touched) and each baseline artifact is exported there by that tree's own edgedeploy
(``python -m edgedeploy.cli export`` with ``PYTHONPATH`` = the extracted tree, run from it, so relative model
paths and model cards resolve to the ref's files). The candidate artifact is exported by this working tree's
edgedeploy the same way. Both artifacts of a case have the case's format and precision; the A/B runs on each of
the suite's devices (or ``--device``).

Errors: :class:`~edgedeploy.errors.ConfigError` (exit 2) for a ref git does not know, a folder that is not in a
git repository, or a bad suite; a case whose export fails is reported as an ``error`` row (exit 2 overall unless a
regression makes it 1).
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedeploy import registry
from edgedeploy.errors import ConfigError, EdgeDeployError

EXPORT_TIMEOUT_S = 3600


@dataclass(frozen=True)
class SuiteABOptions:
    """``suite``: the suite file; ``baseline_ref``: a git ref (branch, tag, sha, ``origin/main``…); ``ab``: the
    keyword options of :func:`edgedeploy.ab` for every case (``device`` None: the suite's devices);
    ``repo``: the git checkout (default: the one holding the working directory)."""

    suite: str | Path
    baseline_ref: str
    ab: dict[str, Any] = field(default_factory=dict)
    repo: str | Path | None = None


@dataclass
class SuiteABReport:
    """One row per case: (label, :class:`~edgedeploy.results.ab.ABResult`); ``errors``: (label, message);
    ``excluded``: (label, reason); ``ref`` / ``commit``: the baseline ref and the commit it named."""

    ref: str
    commit: str
    rows: list[tuple[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 if any case regressed, else 2 if a case could not run, else 0."""
        if any(r.verdict == "regression" for _, r in self.rows):
            return 1
        return 2 if self.errors else 0

    def markdown(self) -> str:
        from edgedeploy.results.ab import markdown_table

        md = markdown_table(self.rows, f"Latency A/B against {self.ref} ({self.commit[:10]})")
        for label, msg in self.errors:
            md += f"| {label} | – | – | – | – | error: {msg} |\n"
        for label, reason in self.excluded:
            md += f"| {label} | – | – | – | – | excluded: {reason} |\n"
        return md

    def html(self) -> str:
        rows = "".join(
            f"<tr class='{html.escape(r.verdict)}'><td>{html.escape(label)}</td><td>{r.baseline.median_ms:.3f}</td>"
            f"<td>{r.candidate.median_ms:.3f}</td><td>{r.ratio:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]</td>"
            f"<td>{r.blocks}</td><td>{html.escape(r.verdict)}</td></tr>"
            for label, r in self.rows
        )
        rows += "".join(f"<tr class='error'><td>{html.escape(lbl)}</td><td colspan='5'>error: {html.escape(m)}"
                        "</td></tr>" for lbl, m in self.errors)  # fmt: skip
        title = f"Latency A/B against {html.escape(self.ref)} ({self.commit[:10]})"
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>" + title + "</title><style>"
            "body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
            ".regression td{background:#fdd}.improvement td{background:#dfd}</style></head><body><h1>" + title
            + "</h1><p>Both sides of each case were loaded in one process and timed in interleaved blocks; ratio = "
            "candidate / baseline with its t-interval on log block ratios.</p><table><tr><th>case</th>"
            "<th>baseline p50 ms</th><th>candidate p50 ms</th><th>ratio [CI]</th><th>blocks</th><th>verdict</th>"
            "</tr>" + rows + "</table></body></html>"
        )  # fmt: skip


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=600)


def resolve_ref(repo: Path, ref: str) -> tuple[Path, str]:
    """The checkout's top folder and the commit ``ref`` names; :class:`ConfigError` when either is unknown."""
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ConfigError(f"{repo} is not in a git repository: --baseline-ref needs one")
    c = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if c.returncode != 0 or not c.stdout.strip():
        raise ConfigError(f"git ref {ref!r} not found in {top.stdout.strip()} (fetch it, e.g. git fetch origin {ref})")
    return Path(top.stdout.strip()), c.stdout.strip()


def extract_ref(top: Path, commit: str, dest: Path) -> Path:
    """``git archive commit`` unpacked into ``dest`` (the checkout itself is not touched); returns ``dest``."""
    tar = dest.parent / "ref.tar"
    with open(tar, "wb") as f:
        p = subprocess.run(["git", "-C", str(top), "archive", "--format=tar", commit], stdout=f,
                           stderr=subprocess.PIPE, timeout=600)  # fmt: skip
    if p.returncode != 0:
        raise ConfigError(f"git archive {commit[:10]} failed: {p.stderr.decode(errors='replace').strip()}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()
    return dest


def export_with(code_root: Path, cwd: Path, case: Any, out: Path) -> Path:
    """Export ``case`` with the edgedeploy of ``code_root`` (run from ``cwd``) into ``out``; the artifact."""
    where = "the baseline ref" if out.name == "baseline" else "the working tree"
    # the tree's own edgedeploy when it has one (this project's CI), else the one this process runs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(code_root), os.environ.get("PYTHONPATH")) if p)}
    argv = [sys.executable, "-m", "edgedeploy.cli", "export", case.model, "--to", case.format,
            "--precision", case.precision, "--out", str(out)]  # fmt: skip
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        raise EdgeDeployError(f"export at {where}: {last}")
    suffix = registry.format_spec(case.format).suffix
    found = sorted(out.rglob(f"*{suffix}"))
    if not found:
        raise EdgeDeployError(f"export at {where} wrote no {suffix} file")
    return found[0]


def run_suite_ab(opts: SuiteABOptions) -> SuiteABReport:
    """Export each case at ``opts.baseline_ref`` and at the working tree and A/B them (see the module doc)."""
    from edgedeploy import api
    from edgedeploy.devices.profile import load_profile
    from edgedeploy.suite import device_runtimes, expand, load_suite

    suite = load_suite(opts.suite)
    top, commit = resolve_ref(Path(opts.repo or Path.cwd()), opts.baseline_ref)
    report = SuiteABReport(opts.baseline_ref, commit)
    ab_kw = dict(opts.ab)
    device_opt = ab_kw.pop("device", None)
    devices = [device_opt] if device_opt else list(suite.devices or ["local"])
    if ab_kw.pop("runtime", None):
        raise ConfigError("--runtime does not go with --suite: each case names its runtime")
    if ab_kw.get("threads") is None:
        ab_kw["threads"] = suite.threads
    say = ab_kw.get("progress") or (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="edgedeploy-ab-suite-") as tmp:
        ref_tree = extract_ref(top, commit, Path(tmp) / "ref")
        cwd_rel = Path.cwd().resolve().relative_to(top) if Path.cwd().resolve().is_relative_to(top) else Path()
        for device in devices:
            cases = expand(suite, device, device_runtimes(load_profile(device)))
            for case in cases:
                label = " / ".join(case.key)
                if case.excluded:
                    report.excluded.append((label, case.excluded))
                    continue
                out = Path(tmp) / "artifacts" / "_".join(case.key).replace("/", "_")
                try:
                    say(f"{label}: exporting at {opts.baseline_ref} and at the working tree")
                    base = export_with(ref_tree, ref_tree / cwd_rel, case, out / "baseline")
                    cand = export_with(top, Path.cwd(), case, out / "candidate")
                    say(f"{label}: A/B")
                    r = api.ab(str(base), str(cand), device=device, runtime=case.runtime, **ab_kw)
                except EdgeDeployError as e:
                    report.errors.append((label, str(e)))
                    continue
                report.rows.append((label, r))
    return report
