"""Emulated ARM boards (tests/testbed/board.py): sshd chrooted into a Debian bookworm rootfs under qemu-user.

* armhf — an RK3288-class board (armv7l, ``QEMU_CPU=cortex-a15``): tflite-runtime 2.14 and ncnn, the runtimes
  with armv7l wheels; edgeformer_s exported to TFLite is benched there through the real CLI with board-side parity.
* arm64 — a Raspberry Pi 4-class board (aarch64, ``QEMU_CPU=cortex-a72``): onnxruntime 1.32, MNN 3.6.1 and
  ai-edge-litert 2.3 through the real CLI, board-side parity passing.

Needs root, qemu-user-static and the cached rootfs + wheels from ``tests/testbed/build_rootfs.sh ARCH CACHE``;
skipped with the reason otherwise. Emulated latency means nothing: the workflow, the files, the numbers the board
computed and ``arch`` are what this proves.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgedeploy import registry
from edgedeploy.devices.profile import load_profile
from edgedeploy.devices.remote import bench_on_device
from edgedeploy.devices.request import RemoteBench
from edgedeploy.devices.ssh import SSHTransport
from tests.conftest import run_cli
from tests.testbed.board import EmulatedBoard, skip_reason

NCNN = Path(__file__).parent / "fixtures" / "ncnn_tiny"
# the zoo model benched on the boards. Issue 11's done-when names edgeformer_s; under qemu-user on a loaded 2-core
# machine one TFLite run of it on the armhf board took 740 s (7 inferences + the host-side export), so CI uses
# mobilevit_xxs and EDGEDEPLOY_BOARD_MODEL=edgeformer_s runs the exact command.
MODEL = os.environ.get("EDGEDEPLOY_BOARD_MODEL", "mobilevit_xxs")
ARMHF_SKIP = skip_reason("armhf", ("ncnn", "tflite_runtime"))
ARM64_SKIP = skip_reason("arm64", ("onnxruntime", "mnn", "ai_edge_litert"))

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.usefixtures("private_locks")]
needs_armhf = pytest.mark.skipif(ARMHF_SKIP is not None, reason=ARMHF_SKIP or "")
needs_arm64 = pytest.mark.skipif(ARM64_SKIP is not None, reason=ARM64_SKIP or "")

# AT_HWCAP2 (26) of the ELF auxiliary vector, read by the board's python: 0 under -cpu cortex-a15 (no AES/SHA/CRC
# extensions), non-zero under qemu's default "max" CPU. AT_HWCAP bit 8 is "atomics" (ARMv8.1) on aarch64: absent on
# a Cortex-A72 (ARMv8.0), present on "max".
AUXV = (
    "import struct,platform;d=open('/proc/self/auxv','rb').read();w=4 if platform.machine()=='armv7l' else 8;"
    "f='<%dI'%(len(d)//4) if w==4 else '<%dQ'%(len(d)//8);v=struct.unpack(f,d);a=dict(zip(v[0::2],v[1::2]));"
    "print(a.get(16,0),a.get(26,0))"
)


@pytest.fixture(scope="module")
def armhf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedBoard]:
    b = EmulatedBoard("armhf", tmp_path_factory.mktemp("armhf")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedBoard]:
    b = EmulatedBoard("arm64", tmp_path_factory.mktemp("arm64")).start()
    yield b
    b.stop()


def _cli_bench(profile: Path, model: str, runtime: str, iterations: int = 2) -> dict:
    p = run_cli("bench", model, "--device", str(profile), "--runtime", runtime, "--parity", "--json",
                "--iterations", str(iterations), "--warmup", "1", "--threads", "1", timeout=1800)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    bp = res.get("board_parity") or {}
    print(f"\n{model} {runtime} on {res['env'].get('arch')}: {bp.get('status')} max abs {bp.get('max_abs_error')}, "
          f"cosine {bp.get('cosine_similarity')}, samples {res['samples_ms']} ({bp.get('runtime')})")  # fmt: skip
    return res


def _assert_board_parity(res: dict, arch: str, version_prefix: str) -> None:
    bp = res["board_parity"]
    assert bp["status"] == "passed" and bp["passed"] is True, bp
    assert bp["inputs"] == ["grace_hopper.jpg", *(f"random[{i}]" for i in range(4))]
    assert bp["max_abs_error"] < 1e-3 and bp["cosine_similarity"] > 0.9999 and bp["top1_agreement"] == 1.0
    assert bp["runtime"].endswith(f"on {arch}") and version_prefix in bp["runtime"]
    assert res["env"]["arch"] == arch and res["device_state"]["before"]["arch"] == arch
    assert not any("different outputs" in w for w in res["warnings"])


def _says(t: SSHTransport, machine: str, cpu: str) -> tuple[int, int]:
    """The board's ``uname -m`` is ``machine`` and its emulated CPU (``$QEMU_CPU``) ``cpu``; returns its
    (AT_HWCAP, AT_HWCAP2) as its own Python reads them."""
    assert t.sh("uname -m").stdout.strip() == machine
    assert t.sh("echo $QEMU_CPU").stdout.strip() == cpu
    hwcap, hwcap2 = map(int, t.run(["python3", "-c", AUXV]).stdout.split())
    return hwcap, hwcap2


# ------------------------------------------------------------------------------------------------ armhf (armv7l)
@needs_armhf
def test_armhf_board_says_armv7l_with_cortex_a15(armhf: EmulatedBoard, tmp_path: Path) -> None:
    prof = load_profile(str(armhf.profile(tmp_path / "rk3288-emu.yaml")))
    with SSHTransport(prof) as t:
        hwcap, hwcap2 = _says(t, "armv7l", "cortex-a15")
        assert hwcap & (1 << 12) and hwcap2 == 0  # NEON (HWCAP_NEON = bit 12) yes; AES/SHA/CRC no
        assert not t.sh("test -e /sys/devices/system/cpu", check=False).ok  # the host's /sys is not mounted
    from edgedeploy.devices.remote import probe_device

    with SSHTransport(prof) as t:
        probe = probe_device(t, prof)
    assert probe["arch"] == "armv7l" and probe["python"].startswith("3.11")
    assert probe["runtimes"]["tflite"] == "tflite_runtime 2.14.0" and probe["runtimes"]["ncnn"]
    assert "onnxruntime" not in probe["runtimes"] and "mnn" not in probe["runtimes"]


@needs_armhf
def test_bench_ncnn_on_emulated_armv7l(armhf: EmulatedBoard, tmp_path: Path) -> None:
    workdir = "/tmp/edge deploy $(x)"
    prof_path = armhf.profile(
        tmp_path / "rk3288-emu.yaml", workdir,
        clusters=[{"name": "big", "cores": [0], "core_type": "Cortex-A17", "max_freq_mhz": 1800}],
    )  # fmt: skip
    model = tmp_path / "tiny.ncnn.param"
    shutil.copy(NCNN / "tiny.ncnn.param", model)
    shutil.copy(NCNN / "tiny.ncnn.bin", tmp_path / "tiny.ncnn.bin")
    req = RemoteBench(model, "ncnn", "tiny", "ncnn", "fp32", [1, 3, 32, 32], 5, 1, 1, timeout_s=600)
    res = bench_on_device(load_profile(str(prof_path)), req)
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


@needs_armhf
def test_cli_bench_tflite_parity_on_armv7l(armhf: EmulatedBoard, tmp_path: Path) -> None:
    """Issue 11's done-when: a zoo model → TFLite, benched on the armv7l board by tflite-runtime, parity there."""
    prof = armhf.profile(tmp_path / "rk3288-emu.yaml")
    res = _cli_bench(prof, MODEL, "tflite")
    assert len(res["samples_ms"]) == 2 and all(s > 0 for s in res["samples_ms"])
    assert res["runtime"] == "tflite" and res["env"]["runtime_version"].startswith("tflite_runtime 2.14")
    _assert_board_parity(res, "armv7l", "tflite_runtime 2.14.0")


# ------------------------------------------------------------------------------------------------ arm64 (aarch64)
@needs_arm64
def test_arm64_board_says_aarch64_with_cortex_a72(arm64: EmulatedBoard, tmp_path: Path) -> None:
    from edgedeploy.devices.remote import probe_device

    prof = load_profile(str(arm64.profile(tmp_path / "rpi4-emu.yaml")))
    with SSHTransport(prof) as t:
        hwcap, _ = _says(t, "aarch64", "cortex-a72")
        assert hwcap & (1 << 1) and not hwcap & (1 << 8)  # ASIMD yes, LSE atomics (ARMv8.1) no: an ARMv8.0 core
        probe = probe_device(t, prof)
    assert probe["arch"] == "aarch64"
    assert probe["runtimes"]["onnxruntime"] == "1.32.0" and probe["runtimes"]["mnn"].startswith("3.6.1")
    assert probe["runtimes"]["tflite"] == "ai-edge-litert 2.3.0" and probe["runtimes"]["ncnn"]


@needs_arm64
@pytest.mark.parametrize(("runtime", "version"), [("onnxruntime", "onnxruntime 1.32.0"), ("mnn", "mnn 3.6.1"),
                                                  ("litert", "ai-edge-litert 2.3.0")])  # fmt: skip
def test_cli_bench_parity_on_aarch64(arm64: EmulatedBoard, tmp_path: Path, runtime: str, version: str) -> None:
    prof = arm64.profile(tmp_path / "rpi4-emu.yaml")
    res = _cli_bench(prof, MODEL, runtime)
    assert len(res["samples_ms"]) == 2 and res["runtime"] == registry.device_runtime(runtime)  # litert -> tflite
    _assert_board_parity(res, "aarch64", version)  # for MNN also: no "different outputs on repeated runs" warning
