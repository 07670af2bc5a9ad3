"""Every GitHub workflow validates against GitHub's workflow schema (check-jsonschema's vendored copy) and passes the
Actions security linter zizmor with no finding at medium severity or above; both run offline, and where possible
inside a fresh network namespace with no interface up, which proves they make no network call."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
SEVERE = {"medium", "high"}


def _no_network(argv: list[str]) -> list[str]:
    """``argv`` run inside a new network namespace (only a down ``lo``) when this machine allows one."""
    if shutil.which("unshare") is None:
        return argv
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):  # root, else an unprivileged user namespace
        if os.geteuid() != 0 and prefix == ["unshare", "-n"]:
            continue
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return [*prefix, *argv]
    return argv


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def test_there_are_workflows() -> None:
    assert WORKFLOWS, "no workflow files found"


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_schema(wf: Path) -> None:
    cmd = _no_network([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(wf)])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda p: p.name)
def test_zizmor_no_medium_or_high_findings(wf: Path) -> None:
    cmd = _no_network([_tool("zizmor"), "--offline", "--no-progress", "--format", "json", str(wf)])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 10, 11, 12, 13, 14), p.stderr  # >= 10: findings (checked below)
    findings = json.loads(p.stdout)
    bad = [
        f"{f['ident']} ({f['determinations']['severity']}): {f['desc']}"
        for f in findings
        if f["determinations"]["severity"].lower() in SEVERE
    ]
    assert not bad, bad


def test_schema_check_and_zizmor_catch_real_problems(tmp_path: Path) -> None:
    """The checks can fail: an unpinned action with persisted credentials and a template expansion in a script is
    flagged by zizmor, and a job without runs-on is rejected by the schema."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "name: bad\non: [pull_request]\npermissions: {}\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n"
        '      - uses: actions/checkout@v4\n      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    p = subprocess.run(_no_network([_tool("zizmor"), "--offline", "--no-progress", "--format", "json", str(bad)]),
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    idents = {f["ident"] for f in json.loads(p.stdout)}
    assert {"unpinned-uses", "artipacked", "template-injection"} <= idents, idents
    broken = tmp_path / "broken.yml"
    broken.write_text("on: [push]\njobs:\n  j:\n    steps:\n      - run: true\n")
    p = subprocess.run(_no_network([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                                    str(broken)]), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode != 0


def test_latency_workflow_runs_one_suite_without_shell_loops() -> None:
    wf = ROOT / ".github" / "workflows" / "latency.yml"
    doc = yaml.safe_load(wf.read_text())
    scripts = [s.get("run", "") for job in doc["jobs"].values() for s in job["steps"]]
    benches = [line for s in scripts for line in s.splitlines() if re.search(r"\bedgedeploy bench\b", line)]
    assert len(benches) == 1 and "--suite" in benches[0], benches
    assert not any(re.search(r"^\s*(for|while|until)\b", line) for s in scripts for line in s.splitlines())
    suite_path = re.search(r"SUITE: (\S+)", wf.read_text())
    assert suite_path is not None
    from edgedeploy.suite import load_suite

    suite = load_suite(ROOT / suite_path.group(1))  # the suite the workflow runs is valid
    assert suite.runs >= 3
    for job in doc["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
