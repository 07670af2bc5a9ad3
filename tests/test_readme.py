"""The README's Python example runs as written (extracted from the "Bring your own model" section)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def byom_python_block() -> str:
    text = README.read_text()
    section = text[text.index("## Bring your own model") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "expected one Python example in the section"
    return blocks[0]


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path: Path) -> None:
    code = byom_python_block()
    assert "edgedeploy.export(" in code and "edgedeploy.bench(" in code
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "artifacts/my_net.onnx True n/a"
    assert re.fullmatch(r"median \d+\.\d{3} ms over 20 runs", lines[1])
    assert lines[2] in ("unchanged", "regression", "improvement")
    assert (tmp_path / "artifacts" / "my_net.onnx.json").is_file()
