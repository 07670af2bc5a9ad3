"""A zoo model exported to ncnn, benchmarked on the emulated armhf board through the real CLI, with board-side parity.

The board: :class:`tests.testbed.board.EmulatedBoard` ("armhf": Debian bookworm under qemu-arm ``-cpu cortex-a15``
behind a real sshd, with the ncnn armv7l wheel); needs root, qemu-user-static and the cached rootfs + wheels from
``tests/testbed/build_rootfs.sh armhf CACHE``, skipped with the reason otherwise. Emulated latency means nothing;
what this proves: the ``.param``/``.bin`` pair travels, the board-side runner loads it in ncnn on armv7l, times it,
and its outputs on the reference inputs agree with PyTorch fp32 (board parity) and with the host's ncnn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.testbed.board import EmulatedBoard, skip_reason

SKIP = skip_reason("armhf", ("ncnn",))
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(SKIP is not None, reason=SKIP or "")]

#: EMO-1M: exported through its 4-D window-attention lowering (the training-time 6-D form does not load in ncnn),
#: and its random-init logits are O(1) on the runner's input (mobilenetv2's are ~1e-9: a comparison would be empty)
MODEL = "emo_1m"


@pytest.fixture(scope="module")
def armhf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedBoard]:
    b = EmulatedBoard("armhf", tmp_path_factory.mktemp("ncnn-armhf")).start()
    yield b
    b.stop()


def test_bench_a_zoo_ncnn_model_on_the_armhf_board_with_parity(
    armhf: EmulatedBoard, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("pnnx", reason="needs the [ncnn] extra")
    from edgedeploy.runtimes.ncnn_rt import NcnnRuntime

    proc = run_cli("export", MODEL, "--to", "ncnn", "--out", str(tmp_path / "art"), "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["parity"]["passed"] is True  # host parity against PyTorch first
    artifact = tmp_path / "art" / f"{MODEL}.param"
    prof = armhf.profile(
        tmp_path / "rk3288-emu.yaml", "/tmp/edgedeploy-ncnn",
        clusters=[{"name": "big", "cores": [0], "core_type": "Cortex-A17", "max_freq_mhz": 1800}],
    )  # fmt: skip
    proc = run_cli(
        "bench", str(artifact), "--device", str(prof), "--runtime", "ncnn", "--parity", "--iterations", "2",
        "--warmup", "0", "--threads", "1", "--json", timeout=1800, env={"EDGEDEPLOY_LOCK_DIR": str(tmp_path / "lk")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["status"] == "complete" and res["env"]["arch"] == "armv7l"
    assert res["runtime"] == "ncnn" and res["format"] == "ncnn" and res["model"] == MODEL
    assert len(res["samples_ms"]) == 2 and all(s > 0 for s in res["samples_ms"])
    assert res["input_shape"] == [1, 3, 224, 224]
    # board-side parity: the reference inputs ran in ncnn on the board, compared with PyTorch fp32 on the host
    bp = res["board_parity"]
    assert bp["status"] == "passed" and bp["passed"] is True, bp
    assert bp["inputs"] == ["grace_hopper.jpg", *(f"random[{i}]" for i in range(4))]
    assert bp["max_abs_error"] < 1e-3 and bp["cosine_similarity"] > 0.9999 and bp["top1_agreement"] == 1.0
    assert bp["runtime"].endswith("on armv7l") and "ncnn" in bp["runtime"]
    # and the timed run computed what the host's ncnn computes on the runner's input (linspace over [-1, 1])
    x = np.linspace(-1.0, 1.0, 3 * 224 * 224, dtype=np.float32).reshape(1, 3, 224, 224)
    host = NcnnRuntime().load(artifact, threads=1).run(x).reshape(-1)
    out = res["output_summary"]
    scale = float(np.abs(host).max())
    assert scale > 0.1  # a comparison of near-zero outputs would prove nothing
    assert out["head"] == pytest.approx(host[:5].tolist(), abs=1e-5 * scale)
    assert out["sum"] == pytest.approx(float(host.sum()), abs=1e-4 * scale)
    head_err = float(np.abs(np.asarray(out["head"]) - host[:5]).max())
    with capsys.disabled():
        print(
            f"\nncnn {MODEL} on emulated armv7l: load {res['load_ms']:.0f} ms, first {res['first_ms']:.0f} ms, "
            f"samples {[round(v) for v in res['samples_ms']]} ms; board parity max abs {bp['max_abs_error']:.2e}, "
            f"cosine {bp['cosine_similarity']:.9f} ({bp['runtime']}); |board - host ncnn|: head {head_err:.2e}, "
            f"sum {abs(out['sum'] - float(host.sum())):.2e}"
        )
