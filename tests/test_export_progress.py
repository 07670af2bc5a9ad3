"""Export progress: finished stages with their times on a terminal (a real pty), nothing off a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_onnx_files import tiny_onnx


def run_on_pty(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run the CLI with stdin / stdout / stderr on a pseudo-terminal; (exit code, output without ANSI codes)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "edgedeploy.cli", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=env)  # fmt: skip
    os.close(slave)
    buf = b""
    try:
        while select.select([master], [], [], timeout)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the child closed the pty
                break
            if not chunk:
                break
            buf += chunk
    finally:
        code = proc.wait(timeout=timeout)
        os.close(master)
    return code, re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", buf.decode(errors="replace"))


@pytest.mark.slow
def test_stages_with_times_on_a_tty_and_clean_output_off_it(tmp_path: Path) -> None:
    src = tiny_onnx(tmp_path / "tiny.onnx")
    code, text = run_on_pty(["export", str(src), "--to", "mnn", "--out", str(tmp_path / "tty")])
    assert code == 0, text[-2000:]
    done = [ln for ln in re.split(r"[\r\n]", text) if ln.startswith("✓")]
    assert [ln.split("  ")[0] for ln in done] == [
        "✓ converting tiny.onnx to mnn (fp32)",
        "✓ checking parity against onnxruntime on the source ONNX file",
    ]
    assert all(re.search(r"  \d+\.\d s$", ln) for ln in done), done
    proc = run_cli("export", str(src), "--to", "mnn", "--out", str(tmp_path / "pipe"), "--json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert json.loads(proc.stdout)["status"] == "parity passed"
