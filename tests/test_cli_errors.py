"""Bad input gets one clear line on stderr and a non-zero exit code; --debug shows the traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgedeploy.cli import main
from tests.conftest import run_cli


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines, "expected an error line on stderr"
    assert "Traceback" not in stderr
    return " ".join(lines)


def test_unknown_model_suggests_close_names() -> None:
    code, _, err = invoke("export", "edgeformer_ss", "--to", "onnx")
    assert code == 2
    line = one_error_line(err)
    assert "unknown model 'edgeformer_ss'" in line
    assert "did you mean" in line and "edgeformer_s" in line


def test_unknown_format() -> None:
    code, _, err = invoke("export", "edgeformer_s", "--to", "onnxx")
    assert code == 2
    assert "unknown format 'onnxx'" in one_error_line(err)


def test_unknown_runtime() -> None:
    code, _, err = invoke("bench", "edgeformer_s", "--runtime", "tensorrt")
    assert code == 2
    assert "unknown runtime 'tensorrt'" in one_error_line(err)


def test_unknown_device() -> None:
    code, _, err = invoke("bench", "edgeformer_s", "--device", "rk3289")
    assert code == 2
    line = one_error_line(err)
    assert "unknown device 'rk3289'" in line and "rk3288" in line


def test_zero_iterations() -> None:
    code, _, err = invoke("bench", "edgeformer_s", "--iterations", "0")
    assert code == 2
    assert "--iterations must be between 1 and 100000 (got 0)" in one_error_line(err)


def test_missing_model_file(tmp_path: Path) -> None:
    code, _, err = invoke("bench", str(tmp_path / "nowhere.onnx"))
    assert code == 2
    assert "model file not found" in one_error_line(err)


@pytest.mark.parametrize("suffix", [".onnx", ".mnn"])
def test_corrupt_model_file(tmp_path: Path, suffix: str) -> None:
    bad = tmp_path / f"garbage{suffix}"
    bad.write_bytes(os.urandom(4096))
    code, _, err = invoke("bench", str(bad), "--iterations", "1")
    assert code == 2
    line = one_error_line(err)
    assert str(bad) in line and ("not a valid" in line or "cannot load" in line)


def test_runtime_that_cannot_run_the_format(tmp_path: Path) -> None:
    f = tmp_path / "m.mnn"
    f.write_bytes(b"\0" * 64)
    code, _, err = invoke("bench", str(f), "--runtime", "onnxruntime")
    assert code == 2
    assert "cannot run mnn files" in one_error_line(err)


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = invoke("export", "edgeformer_s", "--to", "onnx", "--out", str(blocker / "sub"))
    assert code == 2
    assert "output folder" in one_error_line(err)


def test_missing_optional_package_names_the_extra(tmp_path: Path) -> None:
    # A child process where importing MNN fails exactly as it does when the package is not installed.
    code = (
        "import sys; sys.modules['MNN'] = None; sys.modules['_tools'] = None\n"
        "from edgedeploy.cli import main\n"
        f"main(['export', 'edgeformer_s', '--to', 'mnn', '--out', {str(tmp_path)!r}])\n"
    )
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "pip install 'edgedeploy[mnn]'" in one_error_line(proc.stderr)


def test_debug_shows_traceback() -> None:
    proc = run_cli("--debug", "export", "nosuchmodel", "--to", "onnx")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "UnknownModelError" in proc.stderr


def test_real_console_script_error_is_one_line() -> None:
    proc = run_cli("bench", "edgeformer_s", "--device", "nosuchboard")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stdout == ""


def test_bad_model_card_names_file_and_field(tmp_path: Path) -> None:
    card = tmp_path / "broken.yaml"
    card.write_text("name: broken\nfamily: edgeformer\ninput_size: -3\n")
    code, _, err = invoke("export", str(card), "--to", "onnx")
    assert code == 2
    line = one_error_line(err)
    assert str(card) in line and "input_size" in line


def test_models_json_lists_required_fields() -> None:
    code, out, _ = invoke("models", "--json", "--no-macs")
    assert code == 0
    rows = json.loads(out)
    names = {r["name"] for r in rows}
    assert {"edgeformer_s", "mobilevit_s"} <= names
    for r in rows:
        assert {"name", "family", "input_size", "params", "macs"} <= set(r)
        assert r["params"] > 0


def test_weights_with_wrong_keys_are_reported(tmp_path: Path) -> None:
    import torch

    from edgedeploy.zoo import build_model

    state = build_model("mobilevit_xxs").state_dict()
    first = next(iter(state))
    state["not.a.layer.weight"] = state.pop(first)
    last = list(state)[-2]
    state[last] = torch.zeros(3, 3)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"state_dict": state}, ckpt)
    code, _, err = invoke("export", "mobilevit_xxs", "--to", "onnx", "--out", str(tmp_path), "--weights", str(ckpt))
    assert code == 2
    line = one_error_line(err)
    assert "1 missing" in line and first in line
    assert "1 unexpected" in line and "not.a.layer.weight" in line
    assert "1 mismatched" in line and last in line


def test_corrupt_weights_file(tmp_path: Path) -> None:
    ckpt = tmp_path / "broken.pt"
    ckpt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    code, _, err = invoke("bench", "mobilevit_xxs", "--runtime", "torch", "--weights", str(ckpt))
    assert code == 2
    assert "cannot read weights file" in one_error_line(err)
