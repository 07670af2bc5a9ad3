"""An emulated RK3288-class board: sshd chrooted into a Debian armhf rootfs under qemu-user, running real ncnn.

Needs root, qemu-user-static and the cached rootfs from ``tests/testbed/build_rootfs.sh armhf CACHE`` (CACHE:
``$EDGEDEPLOY_TESTBED_CACHE``, default /var/cache/edgedeploy-testbed); skipped with the reason otherwise.
Emulated latency means nothing: the workflow, the files, the parsing and ``arch == armv7l`` are what this proves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgedeploy.devices.profile import load_profile
from edgedeploy.devices.remote import bench_on_device
from edgedeploy.devices.ssh import SSHTransport
from tests.testbed.sshd import SSHServer
from tests.testbed.sshd import skip_reason as sshd_skip

CACHE = Path(os.environ.get("EDGEDEPLOY_TESTBED_CACHE", "/var/cache/edgedeploy-testbed"))
TARBALL = CACHE / "rootfs-bookworm-armhf.tar.zst"
WHEELS = CACHE / "wheels-armhf"
NCNN = Path(__file__).parent / "fixtures" / "ncnn_tiny"


def _skip_reason() -> str | None:
    if sshd_skip():
        return sshd_skip()
    if not Path("/usr/bin/qemu-arm-static").exists():
        return "needs qemu-user-static"
    if not TARBALL.is_file() or not list(WHEELS.glob("ncnn-*.whl")):
        return f"no armhf rootfs cached: run tests/testbed/build_rootfs.sh armhf {CACHE}"
    return None


pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    base = tmp_path_factory.mktemp("board")
    root = base / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "--zstd", "--numeric-owner", "-xpf", str(TARBALL), "-C", str(root)], check=True)
    site = root / "usr/local/lib/python3.11/dist-packages"
    site.mkdir(parents=True, exist_ok=True)
    for whl in sorted(WHEELS.glob("*.whl")):  # wheels are zip files: unpack into the board's site-packages
        with zipfile.ZipFile(whl) as z:
            z.extractall(site)
    for so in site.rglob("*.so*"):
        so.chmod(0o755)
    server = SSHServer(base / "ssh", rootfs=root, arch="armhf")
    server.tmp.mkdir()
    server.start(timeout=30)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_board_says_armv7l(board: SSHServer, tmp_path: Path) -> None:
    prof = load_profile(str(board.profile_yaml(tmp_path / "rk3288-emu.yaml", "/tmp/edgedeploy", "python3")))
    with SSHTransport(prof) as t:
        assert t.sh("uname -m").stdout.strip() == "armv7l"
        assert t.run(["python3", "-c", "import platform; print(platform.machine())"]).stdout.strip() == "armv7l"


def test_bench_ncnn_on_emulated_armv7l(board: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEDEPLOY_LOCK_DIR", str(tmp_path / "locks"))
    workdir = "/tmp/edge deploy $(x)"
    prof_path = board.profile_yaml(
        tmp_path / "rk3288-emu.yaml", workdir, "python3", arch="armv7l",
        clusters=[{"name": "big", "cores": [0], "core_type": "Cortex-A17", "max_freq_mhz": 1800}],
    )  # fmt: skip
    model = tmp_path / "tiny.ncnn.param"
    shutil.copy(NCNN / "tiny.ncnn.param", model)
    shutil.copy(NCNN / "tiny.ncnn.bin", tmp_path / "tiny.ncnn.bin")
    res = bench_on_device(
        load_profile(str(prof_path)), model, "ncnn", iterations=5, warmup=1, threads=1, model="tiny",
        fmt="ncnn", precision="fp32", input_shape=[1, 3, 32, 32], timeout_s=600,
    )  # fmt: skip
    assert res.status == "complete" and len(res.samples_ms) == 5
    assert res.env["arch"] == "armv7l" and res.device_state["before"]["arch"] == "armv7l"
    assert res.runtime == "ncnn" and res.env["runtime_version"]
    ref = json.loads((NCNN / "reference.json").read_text())
    out = res.output_summary  # type: ignore[attr-defined]
    assert out["sum"] == pytest.approx(ref["sum"], abs=1e-4)
    assert out["head"] == pytest.approx(ref["head"], abs=1e-4)
    # both files of the ncnn artifact were pushed into the chroot's workdir
    remote_dir = res.artifact["remote_path"].rsplit("/", 1)[0]
    with SSHTransport(load_profile(str(prof_path))) as t:
        names = t.run(["ls", remote_dir]).stdout.split()
    assert sorted(names) == ["tiny.ncnn.bin", "tiny.ncnn.param"]
