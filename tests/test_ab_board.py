"""``edgedeploy ab`` on the emulated aarch64 board over SSH: both sides in ONE runner process, interleaved.

The board is tests/testbed's arm64 board (sshd chrooted into a Debian bookworm rootfs under qemu-user,
onnxruntime 1.32). The model is a tiny ABNet (4 blocks, 32×32); the candidate has 12 more blocks (a real graph
change, ~3× the work), so the verdict is clear even under emulation. Emulated latency means nothing beyond that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.testbed.board import EmulatedBoard, skip_reason

ARM64_SKIP = skip_reason("arm64", ("onnxruntime",))
pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(ARM64_SKIP is not None, reason=ARM64_SKIP or "")]  # fmt: skip


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedBoard]:
    b = EmulatedBoard("arm64", tmp_path_factory.mktemp("arm64")).start()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _private_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEDEPLOY_LOCK_DIR", str(tmp_path / "locks"))


def _card(folder: Path, name: str, extra: int) -> Path:
    p = folder / f"{name}.yaml"
    p.write_text(f"entry: edgedeploy.nn.abnet:abnet\nname: {name}\ninput_shape: [1, 3, 32, 32]\n"
                 f"kwargs: {{extra_blocks: {extra}, blocks: 4, width: 8}}\n")  # fmt: skip
    return p


def test_ab_on_the_aarch64_board_times_both_sides_in_one_runner_process(arm64: EmulatedBoard, tmp_path: Path) -> None:
    prof = arm64.profile(tmp_path / "rpi4-emu.yaml")
    base, slow = _card(tmp_path, "abnet_tiny", 0), _card(tmp_path, "abnet_tiny_plus12", 12)
    args = ["--device", str(prof), "--runtime", "onnxruntime", "--threads", "1", "--no-calibration", "--json",
            "--max-seconds", "120", "--trust-on-first-use"]  # fmt: skip
    r = run_cli("ab", str(base), str(slow), *args, timeout=1800)
    assert r.returncode == 1, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "regression" and doc["ci_low"] > 1.03
    assert doc["device"] == "rpi4-emu" or doc["device"]
    b, c = doc["baseline"]["process"], doc["candidate"]["process"]
    assert b["arch"] == "aarch64" and b == c and isinstance(b["pid"], int)  # one runner process timed both
    assert len(doc["baseline"]["samples_ms"]) == len(doc["candidate"]["samples_ms"]) >= 6 * 3
    # A/A on the board: not a regression (unchanged, or inconclusive if the emulated board is too noisy)
    r = run_cli("ab", str(base), str(base), *args, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["verdict"] in ("unchanged", "inconclusive")
    assert doc["baseline"]["process"]["arch"] == "aarch64"
    print(f"\nboard A/A: {doc['verdict']} {doc['ratio']:.3f} [{doc['ci_low']:.3f}, {doc['ci_high']:.3f}], "
          f"{doc['blocks']} blocks, {doc['elapsed_s']:.1f} s")  # fmt: skip
