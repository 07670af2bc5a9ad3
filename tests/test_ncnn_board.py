"""A zoo model exported to ncnn, benchmarked on the emulated armhf board (sshd + qemu-arm) through the real CLI.

The board: the cached Debian bookworm armhf rootfs (``tests/testbed/build_rootfs.sh armhf CACHE``) with the ncnn
armv7l wheel unpacked into it, behind :class:`tests.testbed.sshd.SSHServer`; needs root and qemu-user-static,
skipped with the reason otherwise. Emulated latency means nothing; what this proves: the ``.param``/``.bin`` pair
travels, the board-side runner loads it in ncnn on armv7l, times it, and computes what the host's ncnn computes
for the same input.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from tests.testbed.sshd import SSHServer
from tests.testbed.sshd import skip_reason as sshd_skip

CACHE = Path(os.environ.get("EDGEDEPLOY_TESTBED_CACHE", "/var/cache/edgedeploy-testbed"))
TARBALL = CACHE / "rootfs-bookworm-armhf.tar.zst"
WHEELS = CACHE / "wheels-armhf"


def _skip_reason() -> str | None:
    if sshd_skip():
        return sshd_skip()
    if not Path("/usr/bin/qemu-arm-static").exists():
        return "needs qemu-user-static"
    if not TARBALL.is_file() or not list(WHEELS.glob("ncnn-*.whl")):
        return f"no armhf rootfs with the ncnn wheel cached: run tests/testbed/build_rootfs.sh armhf {CACHE}"
    return None


pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    base = tmp_path_factory.mktemp("ncnn-board")
    root = base / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "--zstd", "--numeric-owner", "-xpf", str(TARBALL), "-C", str(root)], check=True)
    site = root / "usr/local/lib/python3.11/dist-packages"
    site.mkdir(parents=True, exist_ok=True)
    for whl in sorted(WHEELS.glob("ncnn-*.whl")):  # a wheel is a zip file: unpack it into the board's site-packages
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


#: EMO-1M: exported through its 4-D window-attention lowering (the training-time 6-D form does not load in ncnn),
#: and its random-init logits are O(1) on the runner's input (mobilenetv2's are ~1e-9: a comparison would be empty)
MODEL = "emo_1m"


def test_bench_a_zoo_ncnn_model_on_the_armhf_board(
    board: SSHServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("pnnx", reason="needs the [ncnn] extra")
    from edgedeploy.runtimes.ncnn_rt import NcnnRuntime

    proc = run_cli("export", MODEL, "--to", "ncnn", "--out", str(tmp_path / "art"), "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["parity"]["passed"] is True  # host parity against PyTorch first
    artifact = tmp_path / "art" / f"{MODEL}.param"
    prof = board.profile_yaml(
        tmp_path / "rk3288-emu.yaml", "/tmp/edgedeploy-ncnn", "python3", arch="armv7l",
        clusters=[{"name": "big", "cores": [0], "core_type": "Cortex-A17", "max_freq_mhz": 1800}],
    )  # fmt: skip
    proc = run_cli(
        "bench", str(artifact), "--device", str(prof), "--runtime", "ncnn", "--iterations", "2", "--warmup", "0",
        "--threads", "1", "--json", timeout=1200, env={"EDGEDEPLOY_LOCK_DIR": str(tmp_path / "locks")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["status"] == "complete" and res["env"]["arch"] == "armv7l"
    assert res["runtime"] == "ncnn" and res["format"] == "ncnn" and res["model"] == MODEL
    assert len(res["samples_ms"]) == 2 and all(s > 0 for s in res["samples_ms"])
    assert res["input_shape"] == [1, 3, 224, 224]
    # the board computed what the host's ncnn computes on the runner's input (linspace over [-1, 1])
    x = np.linspace(-1.0, 1.0, 3 * 224 * 224, dtype=np.float32).reshape(1, 3, 224, 224)
    host = NcnnRuntime().load(artifact, threads=1).run(x).reshape(-1)
    out = res["output_summary"]
    assert out["shape"] == [1, 1000]
    scale = float(np.abs(host).max())
    assert scale > 0.1  # a comparison of near-zero outputs would prove nothing
    assert out["head"] == pytest.approx(host[:5].tolist(), abs=1e-5 * scale)
    assert out["sum"] == pytest.approx(float(host.sum()), abs=1e-4 * scale)
    head_err = float(np.abs(np.asarray(out["head"]) - host[:5]).max())
    with capsys.disabled():
        print(
            f"\nncnn {MODEL} on emulated armv7l: load {res['load_ms']:.0f} ms, first {res['first_ms']:.0f} ms, "
            f"samples {[round(v) for v in res['samples_ms']]} ms; |board - host|: head {head_err:.2e}, "
            f"sum {abs(out['sum'] - float(host.sum())):.2e}"
        )
