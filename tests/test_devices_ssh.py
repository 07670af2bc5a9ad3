"""SSH transport and remote bench against a real OpenSSH server on loopback (root; skipped otherwise)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgedeploy.devices.lock import LocalDeviceLock
from edgedeploy.devices.profile import load_profile
from edgedeploy.devices.remote import bench_on_device
from edgedeploy.devices.request import RemoteBench
from edgedeploy.devices.ssh import SSHTransport
from edgedeploy.devices.state import read_device_state
from edgedeploy.errors import DeviceAuthError, DeviceBusyError, DeviceUnreachableError, RemoteCommandError
from tests.testbed.models import tiny_convnet_onnx
from tests.testbed.sshd import SSHServer, free_port, skip_reason

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
    pytest.mark.usefixtures("private_locks"),
]

# a workdir with spaces and shell metacharacters: every remote argument must be quoted
NASTY = "/tmp/edgedeploy test $(touch /tmp/PWNED-edgedeploy) ; 'q' `x` &"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SSHServer]:
    s = SSHServer(tmp_path).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_convnet_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _bench(profile_path: Path, artifact: Path, iterations: int = 20, **kw: object):
    req = RemoteBench(artifact, "onnxruntime", "tiny", "onnx", "fp32", [1, 3, 32, 32], iterations, 2, 1, **kw)
    return bench_on_device(load_profile(str(profile_path)), req)


def test_exec_exit_codes_stderr_and_sftp(server: SSHServer, tmp_path: Path) -> None:
    prof = load_profile(str(server.profile_yaml(tmp_path / "b.yaml", NASTY, sys.executable)))
    with SSHTransport(prof) as t:
        r = t.run(["sh", "-c", "echo out; echo err >&2; exit 7"], check=False)
        assert (r.exit_status, r.stdout, r.stderr) == (7, "out\n", "err\n")
        with pytest.raises(RemoteCommandError, match=r"exit status 3.*boom"):
            t.sh("echo boom >&2; exit 3")
        t.makedirs(NASTY)
        src = tmp_path / "f.bin"
        src.write_bytes(b"\x00\x01 payload")
        t.push(src, NASTY + "/f.bin")
        assert t.run(["cat", NASTY + "/f.bin"]).stdout == "\x00\x01 payload"
        assert t.remote_sha256(NASTY + "/f.bin") is not None
        back = tmp_path / "back.bin"
        t.pull(NASTY + "/f.bin", back)
        assert back.read_bytes() == src.read_bytes()
        state = read_device_state(t)
        assert state["arch"] and state["nproc"] >= 1 and len(state["loadavg"]) == 3
        t.run(["rm", "-rf", NASTY])
    assert not Path("/tmp/PWNED-edgedeploy").exists()


def test_wrong_host_key_refused(server: SSHServer, tmp_path: Path) -> None:
    prof = load_profile(str(server.profile_yaml(tmp_path / "b.yaml", "/tmp/x", sys.executable,
                                                known_hosts=server.wrong_known_hosts)))  # fmt: skip
    with pytest.raises(DeviceAuthError, match="host key verification failed"):
        SSHTransport(prof)


def test_unknown_host_key_refused_then_tofu(server: SSHServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    p = server.profile_yaml(tmp_path / "b.yaml", "/tmp/x", sys.executable, known_hosts=empty)
    with pytest.raises(DeviceAuthError, match="not in"):
        SSHTransport(load_profile(str(p)))
    p = server.profile_yaml(tmp_path / "b.yaml", "/tmp/x", sys.executable, known_hosts=empty, trust_on_first_use=True)
    with SSHTransport(load_profile(str(p))) as t:
        assert t.sh("echo hi").stdout == "hi\n"
    assert f"[127.0.0.1]:{server.port}" in empty.read_text()  # recorded: the next connection verifies it


def test_bad_client_key_and_unreachable(server: SSHServer, tmp_path: Path) -> None:
    from tests.testbed.sshd import keygen

    keygen(tmp_path / "stranger")
    p = server.profile_yaml(tmp_path / "b.yaml", "/tmp/x", sys.executable, key_file=str(tmp_path / "stranger"))
    with pytest.raises(DeviceAuthError, match="authentication failed"):
        SSHTransport(load_profile(str(p)))
    p = server.profile_yaml(tmp_path / "c.yaml", "/tmp/x", sys.executable, port=free_port(), connect_timeout_s=2)
    t0 = time.monotonic()
    with pytest.raises(DeviceUnreachableError, match="cannot connect"):
        SSHTransport(load_profile(str(p)))
    assert time.monotonic() - t0 < 5


@pytest.mark.slow
def test_bench_over_ssh_pushes_once_and_returns_samples(server: SSHServer, tmp_path: Path, tiny_onnx: Path) -> None:
    workdir = NASTY
    prof_path = server.profile_yaml(tmp_path / "board.yaml", workdir, sys.executable)
    r1 = _bench(prof_path, tiny_onnx)
    assert r1.status == "complete" and len(r1.samples_ms) == 20 and all(s > 0 for s in r1.samples_ms)
    assert r1.source == "python-runner" and r1.device == "board" and r1.runtime == "onnxruntime"
    assert r1.env["artifact_pushed"] is True and r1.env["transport"] == "ssh"
    remote = Path(r1.artifact["remote_path"])
    assert remote.is_file() and remote.read_bytes() == tiny_onnx.read_bytes()  # sshd is on this machine
    assert str(remote).startswith(workdir + "/artifacts/" + r1.artifact["sha256"])
    assert r1.device_state["before"]["arch"] == r1.env["arch"]
    assert r1.output_summary["shape"] == [1, 10]  # type: ignore[attr-defined]
    r2 = _bench(prof_path, tiny_onnx, iterations=5)
    assert r2.env["artifact_pushed"] is False  # cached on the device by sha256
    json.loads(r2.to_json())
    import shutil

    shutil.rmtree(workdir)
    assert not Path("/tmp/PWNED-edgedeploy").exists()


@pytest.mark.slow
def test_failed_remote_command_shows_stderr(server: SSHServer, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx model")
    prof_path = server.profile_yaml(tmp_path / "board.yaml", str(tmp_path / "wd"), sys.executable)
    with pytest.raises(RemoteCommandError, match="onnxruntime cannot load"):
        _bench(prof_path, bad)


@pytest.mark.slow
def test_drop_mid_run_keeps_samples_and_retries(server: SSHServer, tmp_path: Path, tiny_onnx: Path) -> None:
    workdir = tmp_path / "wd"
    prof_path = server.profile_yaml(tmp_path / "board.yaml", str(workdir), sys.executable, retries=3)
    dropped: list[int] = []

    def dropper() -> None:  # bounded: 60 s
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            files = list((workdir / "runs").glob("*.samples")) if (workdir / "runs").is_dir() else []
            if files and len(files[0].read_text().splitlines()) >= 50:
                dropped.append(server.drop_connections())
                return
            time.sleep(0.01)

    th = threading.Thread(target=dropper, daemon=True)
    th.start()
    res = _bench(prof_path, tiny_onnx, iterations=3000)
    th.join(timeout=5)
    assert dropped and dropped[0] >= 1
    assert res.status == "partial"
    assert len(res.samples_ms) == 3000
    assert any("connection dropped" in w for w in res.warnings)
    assert any("reconnected" in x for x in res.env["retries"])


@pytest.mark.slow
def test_device_lock(server: SSHServer, tmp_path: Path, tiny_onnx: Path) -> None:
    prof_path = server.profile_yaml(tmp_path / "board.yaml", str(tmp_path / "wd"), sys.executable)
    prof = load_profile(str(prof_path))
    with LocalDeviceLock(prof), pytest.raises(DeviceBusyError, match="busy"):
        _bench(prof_path, tiny_onnx)
    # the device-side lock (another machine's bench) also stops us, naming the holder
    lockdir = tmp_path / "wd" / ".lock"
    lockdir.mkdir(parents=True)
    (lockdir / "owner").write_text(json.dumps({"host": "ci-runner-7", "pid": 4242, "time": time.time()}))
    with pytest.raises(DeviceBusyError, match="ci-runner-7"):
        _bench(prof_path, tiny_onnx)
    lockdir.joinpath("owner").unlink()
    lockdir.rmdir()
    assert _bench(prof_path, tiny_onnx, iterations=3).status == "complete"
    assert not lockdir.exists()  # released


@pytest.mark.slow
def test_cli_bench_edgeformer_over_ssh(server: SSHServer, tmp_path: Path) -> None:
    """The issue's acceptance check: the real CLI, a fresh sshd on loopback, the profile given as a YAML path."""
    from tests.conftest import run_cli

    workdir = str(tmp_path / "board work dir")
    prof = server.profile_yaml(tmp_path / "loopback-board.yaml", workdir, sys.executable)
    locks = {"EDGEDEPLOY_LOCK_DIR": str(tmp_path / "locks")}
    p = run_cli("bench", "edgeformer_s", "--device", str(prof), "--runtime", "onnxruntime", "--iterations", "3",
                "--warmup", "1", "--threads", "1", "--json", env=locks)  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert len(res["samples_ms"]) == 3 and res["device"] == "loopback-board" and res["source"] == "python-runner"
    remote = Path(res["artifact"]["remote_path"])
    assert remote.is_file() and str(remote).startswith(workdir + "/artifacts/")
    wrong = server.profile_yaml(tmp_path / "wrong.yaml", workdir, sys.executable, known_hosts=server.wrong_known_hosts)
    p = run_cli("bench", "edgeformer_s", "--device", str(wrong), "--runtime", "onnxruntime", "--iterations", "1")
    assert p.returncode == 5 and "host key verification failed" in p.stderr


@pytest.mark.slow
def test_cli_board_parity_over_ssh(server: SSHServer, tmp_path: Path) -> None:
    """`parity ARTIFACT --device` and `bench --parity`: the device computes the outputs, the host compares."""
    import shutil

    from edgedeploy.export.pipeline import cached_export
    from tests.conftest import run_cli

    prof = server.profile_yaml(tmp_path / "loopback-board.yaml", str(tmp_path / "wd"), sys.executable)
    locks = {"EDGEDEPLOY_LOCK_DIR": str(tmp_path / "locks")}
    art = cached_export("mobilevit_xxs", "onnx").artifact
    p = run_cli("parity", str(art), "--device", str(prof), "--json", env=locks)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["device"] == "loopback-board" and out["parity"]["passed"] is True
    assert out["parity"]["max_abs_error"] < 1e-4 and out["parity"]["runtime"].startswith("onnxruntime ")
    # the wrong reference (another model's PyTorch outputs): the board's outputs fail the gates -> exit 1, one line
    lone = tmp_path / "lone" / "model.onnx"
    lone.parent.mkdir()
    shutil.copy(art, lone)  # no manifest beside it: the model is named on the command line
    p = run_cli("parity", str(lone), "--device", str(prof), "--model", "edgeformer_s", env=locks)
    assert p.returncode == 1
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "board-side parity failed on loopback-board" in errors[0], p.stderr
    assert "max abs error" in errors[0] and "cosine" in errors[0]
    p = run_cli("bench", "mobilevit_xxs", "--device", str(prof), "--runtime", "mnn", "--parity", "--json",
                "--iterations", "3", "--warmup", "1", "--threads", "1", env=locks)  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert len(res["samples_ms"]) == 3 and res["board_parity"]["passed"] is True
    assert res["board_parity"]["runtime"].startswith("mnn 3.6") and res["board_parity"]["cosine_similarity"] > 0.9999
    assert not any("different outputs" in w for w in res["warnings"])
