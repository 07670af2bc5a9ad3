"""Fault injection with real child processes (issue 12): full disks, read-only folders, SIGINT / SIGTERM / SIGKILL.

* a full file system is a 64 KiB tmpfs filled to the last byte, mounted in a private mount namespace
  (``unshare -m``; root only, skipped with the reason otherwise);
* a read-only folder is a read-only tmpfs in such a namespace (root), or a chmod 555 folder (not root);
* interrupts are real signals sent to a real ``edgedeploy`` process at a known moment: its stderr is a pseudo
  terminal, so its progress display shows how far it got (``12/100000`` timed runs, ``checking parity``).

Each case checks the exit code, one line on stderr, that the samples measured are printed or stored (or saved to
the fallback file the message names), and that nothing under an artifact's final name is incomplete.
"""

from __future__ import annotations

import json
import os
import pty
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.robust_util import one_line, snapshot, tiny_onnx, write_manifest_for


def _can_unshare() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount a tmpfs in a private mount namespace)"
    if shutil.which("unshare") is None:
        return "unshare(1) not installed"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return None if probe.returncode == 0 else f"cannot mount a tmpfs in a mount namespace: {probe.stderr.strip()}"


NS_SKIP = _can_unshare()
needs_ns = [pytest.mark.root, pytest.mark.skipif(NS_SKIP is not None, reason=NS_SKIP or "")]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "EDGEDEPLOY_CACHE": str(tmp / "cache"),
        "EDGEDEPLOY_LOCK_DIR": str(tmp / "locks"),
    }  # device locks of its own, never the user's
    env.pop("EDGEDEPLOY_DEBUG", None)
    env.update(extra)
    return env


def in_namespace(
    mount: Path, opts: str, fill: bool, argv: list[str], env: dict[str, str], timeout: float = 300
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``argv`` in a private mount namespace where ``mount`` is a fresh tmpfs (``opts``), filled to the last
    byte when ``fill`` (a ``store`` folder is made first). Returns the process (stdout without the listing) and the
    names in ``mount/store`` afterwards (the tmpfs vanishes with the namespace)."""
    mount.mkdir(parents=True, exist_ok=True)
    script = (
        'set -e; mount -t tmpfs -o "$2" tmpfs "$1"; '
        'if [ "$3" = fill ]; then mkdir "$1/store"; dd if=/dev/zero of="$1/fill" bs=1k 2>/dev/null || true; fi; '
        'm="$1"; shift 3; set +e; "$@"; rc=$?; echo "@@store"; ls -A "$m/store" 2>/dev/null; exit $rc'
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(mount), opts, "fill" if fill else "no", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    out, _, listing = proc.stdout.rpartition("@@store\n")
    proc.stdout = out
    return proc, listing.split()


CLI = [sys.executable, "-m", "edgedeploy.cli"]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_onnx(tmp_path / "tiny.onnx")


# ------------------------------------------------------------------------------------------------ threads
def test_threads_9999_is_refused_in_under_a_second_before_any_runtime(tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *CLI[1:], "bench", "mobilevit_xxs", "--threads", "9999"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(tmp_path),
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    imports = [ln for ln in proc.stderr.splitlines() if ln.startswith("import time:")]
    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    assert proc.returncode == 2
    assert "--threads must be between 1 and 256 (got 9999)" in one_line("\n".join(errors))
    for engine in ("onnxruntime", "MNN", "torch", "ai_edge_litert", "scipy", "numpy"):  # nothing heavy, no runtime
        assert not any(re.search(rf"\|\s+{engine}$", ln) for ln in imports), engine
    # CPU time is what this process controls; wall time also counts the machine's load (recorded in the message)
    assert cpu < 1.0, f"{cpu:.2f} s CPU (wall {wall:.2f} s, load {os.getloadavg()})"
    print(f"\n--threads 9999 refused: {cpu:.2f} s CPU, {wall:.2f} s wall, load {os.getloadavg()[0]:.1f}")


# ------------------------------------------------------------------------------------------------ full / read-only
@pytest.mark.parametrize("as_json", [True, False])
@pytest.mark.parametrize("out", ["r.json", "store"])
def test_bench_out_on_a_full_disk_keeps_every_sample(tmp_path: Path, tiny: Path, out: str, as_json: bool) -> None:
    if NS_SKIP:
        pytest.skip(NS_SKIP)
    mnt = tmp_path / "full"
    argv = [*CLI, "bench", str(tiny), "--iterations", "300", "--warmup", "0", "--out", str(mnt / out)]
    proc, listing = in_namespace(mnt, "size=64k", True, argv + (["--json"] if as_json else []), _env(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert listing == []  # nothing half-written (the atomic write removed its temp file)
    line = one_line(proc.stderr)
    assert f"cannot write the result to {mnt / out}: No space left on device" in line
    m = re.search(r"the 300 samples were saved to (\S+\.json)$", line)
    assert m, line
    saved = json.loads(Path(m.group(1)).read_text())
    assert Path(m.group(1)).is_relative_to(tmp_path / "cache" / "unsaved-results")
    assert len(saved["samples_ms"]) == 300 and saved["status"] == "complete"
    if as_json:
        assert json.loads(proc.stdout)["samples_ms"] == saved["samples_ms"]  # printed before the write failed
    else:
        assert "300 runs" in proc.stdout


def test_bench_out_on_a_full_disk_with_no_fallback_prints_the_samples(tmp_path: Path, tiny: Path) -> None:
    if NS_SKIP:
        pytest.skip(NS_SKIP)
    mnt = tmp_path / "full"
    env = _env(tmp_path, EDGEDEPLOY_CACHE=str(mnt / "cache"), TMPDIR=str(mnt))
    argv = [*CLI, "bench", str(tiny), "--iterations", "50", "--warmup", "0", "--out", str(mnt / "r.json")]
    proc, _ = in_namespace(mnt, "size=64k", True, argv, env)
    assert proc.returncode == 2
    assert "no fallback file could be written either" in one_line(proc.stderr)
    doc = json.loads(proc.stdout[proc.stdout.index("\n{") :])
    assert len(doc["samples_ms"]) == 50


@pytest.mark.slow
def test_export_to_a_full_disk_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    if NS_SKIP:
        pytest.skip(NS_SKIP)
    mnt = tmp_path / "full"
    argv = [*CLI, "export", "mobilevit_xxs", "--to", "onnx", "--input-size", "128", "--no-parity"]
    proc, listing = in_namespace(mnt, "size=64k", True, [*argv, "--out", str(mnt / "store")], _env(tmp_path), 600)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert f"cannot write {mnt / 'store' / 'mobilevit_xxs.128.onnx'}: No space left on device" in line, line
    assert listing == []  # no artifact, no manifest, no staging folder left


def test_read_only_output_folder(tmp_path: Path, tiny: Path) -> None:
    good = tmp_path / "good.json"
    from tests.robust_util import lognormal, write_result

    write_result(good, lognormal(1, 20))
    if os.geteuid() == 0:
        if NS_SKIP:
            pytest.skip(NS_SKIP)
        mnt = tmp_path / "ro"

        def run(*args: str) -> subprocess.CompletedProcess:
            return in_namespace(mnt, "ro,size=64k", False, [*CLI, *args], _env(tmp_path))[0]
    else:
        mnt = tmp_path / "ro"
        mnt.mkdir()
        mnt.chmod(0o555)

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env=_env(tmp_path))

    for args, expect in (
        (["bench", str(tiny), "--iterations", "5", "--out", str(mnt / "r.json")], "not writable"),
        (["bench", str(tiny), "--iterations", "5", "--out", str(mnt / "store")], "output folder"),
        (["compare", str(good), str(good), "--markdown", str(mnt / "c.md")], "not writable"),
        (["report", str(good), "--html", str(mnt / "r.html")], "not writable"),
        (["baseline", "save", str(good), "--dir", str(mnt / "b")], "cannot write the baseline"),
        (["export", "mobilevit_xxs", "--to", "onnx", "--out", str(mnt / "arts")], "output folder"),
    ):
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expect in one_line(proc.stderr), args


# ------------------------------------------------------------------------------------------------ interrupts
def spawn_on_pty(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """Start ``argv`` with stderr on a pseudo terminal (so its progress display renders); stdout is a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env={**env, "TERM": "xterm"}
    )
    os.close(slave)
    return proc, master


def read_until(master: int, pattern: str, timeout: float) -> tuple[str, re.Match | None]:
    """Read the terminal until ``pattern`` matches (or ``timeout`` s pass); returns what was read."""
    buf = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536).decode("utf-8", "replace")
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        m = re.search(pattern, buf)
        if m:
            return buf, m
    return buf, None


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def drain(master: int) -> str:
    """What is left to read on the terminal, without colour and cursor codes."""
    return ANSI.sub("", _drain(master))


def signal_and_collect(proc: subprocess.Popen, master: int, sig: signal.Signals) -> tuple[str, str]:
    """Send ``sig`` to the child on the pty ``master``; its stdout and the pty's remaining output (the child is
    killed if it does not end within 120 s; the pty is closed)."""
    proc.send_signal(sig)
    try:
        stdout, _ = proc.communicate(timeout=120)
        tail = drain(master)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return stdout.decode() if isinstance(stdout, bytes) else stdout, tail


def _drain(master: int) -> str:
    out = ""
    while True:
        try:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                return out
            chunk = os.read(master, 65536)
        except OSError:
            return out
        if not chunk:
            return out
        out += chunk.decode("utf-8", "replace")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_bench_prints_and_stores_the_samples_measured(tmp_path: Path, sig: signal.Signals) -> None:
    store = tmp_path / "store"
    argv = [*CLI, "bench", "mobilevit_xxs", "--runtime", "torch", "--threads", "1", "--iterations", "100000"]
    proc, master = spawn_on_pty([*argv, "--warmup", "0", "--json", "--out", str(store)], _env(tmp_path))
    try:
        seen, m = read_until(master, r"\b([3-9]|\d\d+)/100000", timeout=240)
        assert m, f"the bench never reached 3 timed runs:\n{seen[-2000:]}"
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        raise
    stdout, tail = signal_and_collect(proc, master, sig)
    assert proc.returncode == 128 + sig, tail
    doc = json.loads(stdout)
    assert doc["status"] == "partial" and len(doc["samples_ms"]) >= 3
    assert any(f"interrupted after {len(doc['samples_ms'])} of 100000" in w for w in doc["warnings"])
    stored = json.loads(next(store.glob("*.json")).read_text())["results"][0]
    assert stored["samples_ms"] == doc["samples_ms"]  # stored too, not only printed
    assert "Traceback" not in tail


@pytest.mark.slow
def test_interrupted_export_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    """SIGINT and SIGKILL while the artifact is written and parity runs; an older artifact of the same name (with
    its manifest) must come out untouched, and a later bench of the folder must find only complete artifacts."""
    runs = {}
    try:
        # one export at a time: spawned together, the second one finished its (short) parity check while the
        # first was being signalled, and there was nothing left to interrupt
        for name, sig in (("sigint", signal.SIGINT), ("sigkill", signal.SIGKILL)):
            out = tmp_path / name
            out.mkdir()
            old = tiny_onnx(out / "mobilevit_xxs.128.onnx")  # "the previous export": must survive intact
            write_manifest_for(old, model="mobilevit_xxs", shape=[1, 3, 32, 32])
            argv = [*CLI, "export", "mobilevit_xxs", "--to", "onnx", "--input-size", "128", "--out", str(out)]
            runs[name] = (sig, out, snapshot(out), *spawn_on_pty(argv, _env(tmp_path)))
            proc, master = runs[name][3:]
            seen, m = read_until(master, r"checking parity", timeout=400)
            assert m, f"{name}: the export never reached parity:\n{seen[-2000:]}"
            # the new artifact is complete in the staging folder, its manifest not yet written
            staged = [p for p in out.glob(".edgedeploy-staging-*/mobilevit_xxs.128.onnx")]
            assert staged, list(out.rglob("*"))
            proc.send_signal(sig)
        for sig, out, before, proc, master in runs.values():
            proc.wait(timeout=120)
            tail = drain(master)
            if sig == signal.SIGINT:
                assert proc.returncode == 130, tail
                assert "interrupted (SIGINT)" in tail and "Traceback" not in tail
                assert not list(out.glob(".edgedeploy-staging-*"))  # cleaned up
            else:
                assert proc.returncode == -signal.SIGKILL
            visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
            assert visible == ["mobilevit_xxs.128.onnx", "mobilevit_xxs.128.onnx.json"]
            assert {k: v for k, v in snapshot(out).items() if "/.edgedeploy-staging-" not in k} == before
    finally:
        for _sig, _out, _before, proc, master in runs.values():
            if proc.poll() is None:
                proc.kill()
            os.close(master)
