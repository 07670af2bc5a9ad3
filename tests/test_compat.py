"""torchvision / timm beside the pinned CPU torch (edgedeploy/compat.py), in fresh interpreters.

The registry's torchvision 0.28.0 is a CUDA build whose C++ operators do not load next to CPU torch 2.13:
``import torchvision`` (and ``import timm``) raise ``operator torchvision::nms does not exist``. These tests need
the corpus packages (``pip install -c constraints.txt -e ".[all,dev]"`` installs them; or a folder of them in
``$EDGEDEPLOY_CORPUS_SITE``) and skip with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    site = os.environ.get("EDGEDEPLOY_CORPUS_SITE", "/var/cache/edgedeploy-corpus/site")
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")] + ([site] if Path(site).is_dir() else [])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=_env())


@pytest.fixture(scope="module")
def corpus_packages() -> None:
    probe = _python("import importlib.util as u; print(all(u.find_spec(m) for m in ('timm', 'torchvision')))")
    if probe.stdout.strip() != "True":
        pytest.skip("timm / torchvision are not installed (pip install -c constraints.txt -e '.[all,dev]')")


@pytest.mark.slow
def test_timm_and_torchvision_import_through_the_shim(corpus_packages: None) -> None:
    """A plain ``import torchvision`` fails exactly as the shim expects (or works, and the shim stays off); through
    import_torchvision, timm builds a model that runs, and torchvision.ops.nms fails with torchvision's own clear
    error."""
    code = """
import json, torch
from edgedeploy.compat import MISSING_OPERATOR, import_torchvision, shim_active
plain = None
try:
    import torchvision
except RuntimeError as e:
    plain = str(e)
tv = import_torchvision()
import timm
m = timm.create_model("mobilenetv3_small_050", pretrained=False).eval()
y = m(torch.zeros(1, 3, 64, 64))
nms = None
try:
    tv.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
except Exception as e:
    nms = f"{type(e).__name__}: {e}"
print(json.dumps({"plain": plain, "shim": shim_active(), "shape": list(y.shape), "nms": nms,
                  "expected": MISSING_OPERATOR, "models": hasattr(tv, "models")}))
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [1, 1000] and out["models"]
    if out["plain"] is None:  # a matching CPU torchvision: nothing to work around
        assert out["shim"] is False
    else:
        assert out["expected"] in out["plain"] and out["shim"] is True
        assert out["nms"] and out["nms"].startswith("RuntimeError") and "C++ ops" in out["nms"], out["nms"]


@pytest.mark.slow
def test_user_callable_importing_timm_exports(corpus_packages: None, tmp_path: Path) -> None:
    """A user's ``file.py:build`` that imports timm at the top exports through the CLI (edgedeploy imports
    torchvision through the shim before the user's module)."""
    src = tmp_path / "my_timm.py"
    src.write_text("import timm\n\n\ndef build():\n    return timm.create_model('mobilenetv3_small_050')\n")
    proc = run_cli("export", f"{src}:build", "--input-shape", "1,3,64,64", "--to", "onnx", "--out",
                   str(tmp_path / "a"), "--json", env=_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["parity"]["passed"] is True and Path(out["artifact"]).name == "my_timm.onnx"
