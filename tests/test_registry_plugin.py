"""A third-party format and runtime registered through real Python entry points reach every reader of the registry.

The plug-in (``tests/fixtures/plugin``: a dist-info with ``entry_points.txt`` beside ``edgedeploy_torchscript.py``)
is put on ``sys.path`` of child processes only, so ``importlib.metadata`` finds it there and this process's registry
stays the built-in one. The CLI's ``--to`` check, ``edgedeploy formats``, ``format_of``, ``default_runtime``, the
export pipeline, parity and ``bench`` all see it, without any list of names edited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

PLUGIN = Path(__file__).resolve().parent / "fixtures" / "plugin"
USER_NET = Path(__file__).resolve().parent / "fixtures" / "byom" / "user_net.py"


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(PLUGIN), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def test_entry_point_format_is_read_from_the_one_table() -> None:
    code = """
from edgedeploy import registry
from edgedeploy.export import base
from edgedeploy.runtimes import base as rt_base
loaded = registry.load_entry_points()
assert loaded == ["edgedeploy.formats:torchscript", "edgedeploy.runtimes:torchscript"], loaded
assert "torchscript" in registry.format_names() and registry.format_names()[:4] == ["onnx", "mnn", "tflite", "coreml"]
assert registry.format_of("model.pt") == "torchscript" and base.format_of("m.pt") == "torchscript"
assert registry.default_runtime("torchscript") == "torchscript" == rt_base.default_runtime("torchscript")
assert registry.runtime_spec("jit").name == "torchscript" and registry.runtimes_for("torchscript") == ["torchscript"]
assert base.get_exporter("torchscript").suffix == ".pt"
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **_env()})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    from edgedeploy import registry

    assert "torchscript" not in registry.format_names()  # this process never saw the plug-in


@pytest.mark.slow
def test_entry_point_format_through_the_cli(tmp_path: Path) -> None:
    proc = run_cli("formats", "--json", env=_env())
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    (fmt,) = [f for f in table["formats"] if f["name"] == "torchscript"]
    assert fmt["suffixes"] == [".pt"] and fmt["default_runtime"] == "torchscript"
    assert any(r["name"] == "torchscript" and r["aliases"] == ["jit"] for r in table["runtimes"])
    proc = run_cli("export", "edgeformer_s", "--to", "torchscriptt", env=_env())
    assert proc.returncode == 2 and "did you mean torchscript" in proc.stderr
    proc = run_cli("export", f"{USER_NET}:build", "--input-shape", "1,3,64,96", "--to", "torchscript",
                   "--out", str(tmp_path), "--json", env=_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["format"] == "torchscript" and out["parity"]["passed"] is True
    assert out["parity"]["runtime"] == "torchscript" and Path(out["artifact"]).suffix == ".pt"
    proc = run_cli("bench", out["artifact"], "--iterations", "5", "--warmup", "1", "--json", env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["runtime"] == "torchscript" and result["format"] == "torchscript"
    assert len(result["samples_ms"]) == 5 and result["input_shape"] == [1, 3, 64, 96]
    proc = run_cli("formats", "--json")  # without the plug-in on the path: not there
    assert "torchscript" not in [f["name"] for f in json.loads(proc.stdout)["formats"]]
