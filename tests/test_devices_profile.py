"""Device profiles: schema, loader, lookup by name or path, errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgedeploy.devices.profile import DeviceProfile, list_profiles, load_profile
from edgedeploy.errors import ConfigError, UnknownDeviceError

SHIPPED = {"local", "rk3288", "rk3288-linux", "rpi4", "rpi5", "pixel4"}


def test_shipped_profiles_validate() -> None:
    names = {p.name for p in list_profiles()}
    assert names >= SHIPPED
    rk = load_profile("rk3288")
    assert (rk.transport, rk.os, rk.arch) == ("adb", "android", "armv7l")
    assert rk.clusters[0].core_type == "Cortex-A17" and rk.clusters[0].max_freq_mhz == 1800
    assert load_profile("rk3288-linux").transport == "ssh"
    assert {load_profile(n).arch for n in ("rpi4", "rpi5")} == {"aarch64"}
    phone = load_profile("pixel4")
    assert len(phone.clusters) == 3 and phone.pin_mask == "0xf0"
    assert load_profile("local").transport == "local"


def test_file_name_matches_profile_name() -> None:
    for p in list_profiles():
        assert p.path is not None and p.path.stem == p.name


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownDeviceError, match="did you mean rk3288"):
        load_profile("rk328")


def test_path_and_defaults(tmp_path: Path) -> None:
    f = tmp_path / "board.yaml"
    f.write_text("name: b\ntransport: ssh\nhost: 127.0.0.1\n")
    p = load_profile(str(f))
    assert p.workdir == "/tmp/edgedeploy" and p.port == 22 and p.os == "linux" and p.pin_mask is None
    assert not p.trust_on_first_use
    f.write_text("name: a\ntransport: adb\nserial: 127.0.0.1:15555\n")
    a = load_profile(str(f))
    assert a.os == "android" and a.workdir == "/data/local/tmp/edgedeploy"


def test_big_cluster_mask() -> None:
    p = DeviceProfile(
        name="x",
        transport="local",
        clusters=[{"name": "LITTLE", "cores": [0, 1, 2, 3], "max_freq_mhz": 1400}, {"name": "big", "cores": [4, 5]}],
    )
    assert p.big_cores == [0, 1, 2, 3]  # the big cluster has no frequency listed: the known fastest wins
    p = DeviceProfile(name="x", transport="local", clusters=[{"name": "big", "cores": [4, 5], "max_freq_mhz": 2000}])
    assert p.pin_mask == "0x30"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: b\ntransport: ssh\n", "host"),
        ("name: b\ntransport: adb\n", "serial"),
        ("name: b\ntransport: telnet\n", "transport"),
        ("name: b\ntransport: local\nport: 99999\n", "port"),
        ("name: b\ntransport: local\ncore_mask: zz\n", "core_mask"),
        ("name: b\ntransport: local\nclusters: [{name: big, cores: []}]\n", "clusters.0.cores"),
        ("name: b\ntransport: local\nruntimes: [tensorrt]\n", "runtimes"),
        ("name: b\ntransport: local\nbogus: 1\n", "bogus"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_profile(str(f))
    assert str(f) in str(e.value)
    assert field in str(e.value)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_profile(str(f))
    with pytest.raises(ConfigError, match="no such file"):
        load_profile(str(tmp_path / "missing.yaml"))


def test_user_devices_folder_shadows_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "rpi4.yaml").write_text("name: rpi4\ntransport: ssh\nhost: 127.0.0.1\nport: 2222\n")
    monkeypatch.chdir(tmp_path)
    assert load_profile("rpi4").port == 2222


def test_rk3288_profiles_match_what_runs_there() -> None:
    """Issue 11: Android (bionic) runs native binaries only; armv7l Linux has tflite-runtime and ncnn wheels, and
    MNN only as native tools (PyPI has no armv7l wheel of MNN, onnxruntime or ai-edge-litert)."""
    android = load_profile("rk3288")
    assert android.python is None and "mnn-runner" in android.native_tools
    linux = load_profile("rk3288-linux")
    assert linux.python == "python3" and linux.runtimes == ["tflite", "ncnn"]
    assert {"mnn-runner", "mnn-benchmark"} <= set(linux.native_tools)
    assert set(load_profile("rpi4").runtimes) >= {"onnxruntime", "mnn", "tflite"}
