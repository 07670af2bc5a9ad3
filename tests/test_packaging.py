"""The wheel ships the model cards and device profiles, and the installed package finds them outside a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_cards_and_profiles_and_finds_them(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("edgedeploy-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    cards = {p.name for p in (ROOT / "models").glob("*.yaml")}
    profiles = {p.name for p in (ROOT / "devices").glob("*.yaml")}
    assert {f"edgedeploy/_data/models/{c}" for c in cards} <= names
    assert {f"edgedeploy/_data/devices/{p}" for p in profiles} <= names
    # import the unpacked wheel from an empty folder: only the shipped copies can be found
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import edgedeploy, pathlib\n"
        "assert pathlib.Path(edgedeploy.__file__).is_relative_to(sys.argv[1]), edgedeploy.__file__\n"
        "from edgedeploy.cards import all_cards\n"
        "from edgedeploy.devices.profile import load_profile\n"
        "print(len(all_cards()), load_profile('rk3288').arch)\n"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "site")], capture_output=True, text=True, timeout=120, cwd=empty
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(len(cards)), "armv7l"]
