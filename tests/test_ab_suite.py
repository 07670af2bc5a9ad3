"""``edgedeploy ab --suite FILE --baseline-ref REF`` in a real git repository: the ref's model (``git archive`` of
the ref in a temp folder) against the working tree's, per case, one Markdown / HTML report; the user's checkout is
left as it was; a missing ref is exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli

NET = """from edgedeploy.nn.abnet import abnet


def build():
    return abnet(extra_blocks={extra}, blocks=8, width=16)
"""
CARD = "entry: net.py:build\nname: usernet\ninput_shape: [1, 3, 48, 48]\n"
SUITE = """name: pr
models: [net.yaml]
formats: [onnx]
runtimes: [onnxruntime]
precisions: [fp32]
devices: [local]
threads: 1
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "proj"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "net.py").write_text(NET.format(extra=0))
    (r / "net.yaml").write_text(CARD)
    (r / "suite.yaml").write_text(SUITE)
    git(r, "add", ".")
    git(r, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "base")
    return r


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["python", "-m", "edgedeploy.cli", "ab", "--suite", "suite.yaml", *args],
        cwd=repo, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.mark.slow
def test_a_pr_adding_blocks_is_a_regression_and_the_checkout_is_untouched(repo: Path) -> None:
    (repo / "net.py").write_text(NET.format(extra=8))  # the PR: twice the blocks, uncommitted
    status, worktrees = git(repo, "status", "--porcelain"), git(repo, "worktree", "list")
    md, page = repo.parent / "ab.md", repo.parent / "ab.html"
    p = _run(repo, "--baseline-ref", "main", "--no-calibration", "--markdown", str(md), "--html", str(page))
    assert p.returncode == 1, p.stderr[-3000:]
    text = md.read_text()
    assert "Latency A/B against main" in text and "net.yaml / onnx / fp32 / onnxruntime / local" in text
    assert "**regression**" in text
    assert "class='regression'" in page.read_text()
    assert git(repo, "status", "--porcelain") == status and git(repo, "worktree", "list") == worktrees
    assert (repo / "net.py").read_text() == NET.format(extra=8)


@pytest.mark.slow
def test_no_change_is_not_a_regression(repo: Path) -> None:
    p = _run(repo, "--baseline-ref", "HEAD", "--no-calibration", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert '"verdict": "unchanged"' in p.stdout or '"verdict": "inconclusive"' in p.stdout


def test_a_missing_git_ref_is_exit_2(repo: Path) -> None:
    p = _run(repo, "--baseline-ref", "no-such-branch")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error") or "no-such-branch" in p.stderr
    assert "git ref 'no-such-branch' not found" in p.stderr and "Traceback" not in p.stderr


def test_suite_without_ref_is_exit_2() -> None:
    p = run_cli("ab", "--suite", "x.yaml")
    assert p.returncode == 2 and "--baseline-ref" in p.stderr
