"""Device profiles: one YAML file per device under ``devices/`` (or any path given with ``--device``).

Only ``name``, ``transport`` and the transport's address fields are required; everything else defaults or is
discovered on the device (``edgedeploy devices check NAME`` shows what was found). Example
(``devices/rpi4.yaml``)::

    name: rpi4
    description: Raspberry Pi 4 Model B, 4x Cortex-A72 @ 1.8 GHz
    transport: ssh
    host: raspberrypi.local
    user: pi
    key_file: ~/.ssh/id_ed25519     # default: the SSH agent and ~/.ssh/id_*
    known_hosts: ~/.ssh/known_hosts # the host key must be in here (trust_on_first_use: true to add it once)
    arch: aarch64
    os: linux
    workdir: /tmp/edgedeploy bench  # created on first use; artifacts cached there by sha256
    python: python3
    clusters:
      - {name: big, cores: [0, 1, 2, 3], core_type: Cortex-A72, max_freq_mhz: 1800}
    core_mask: "0xf"                 # default: the cluster with the highest max frequency
    runtimes: [onnxruntime, tflite]  # Python modules the runner may import; default: probe all it knows
    native_tools: {mnn-benchmark: /home/pi/MNN/build/benchmark.out}

A ``transport: labgrid`` profile stands for every board of a labgrid farm whose place matches ``tags``: it names the
``coordinator`` (HOST:PORT) instead of a ``host``, and its ``user``, ``key_file``, ``known_hosts``, ``python`` and
``workdir`` may contain ``{board}`` (the place name); see :mod:`edgedeploy.devices.farm`.

Raises :class:`~edgedeploy.errors.ConfigError` naming the file and the field for a malformed profile, and
:class:`~edgedeploy.errors.UnknownDeviceError` (with close-name suggestions) for an unknown profile name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgedeploy import registry
from edgedeploy._paths import find_yaml_files, load_yaml_config
from edgedeploy.errors import ConfigError, UnknownDeviceError

#: Runtime names the device-side runner knows how to import (see :mod:`edgedeploy.devices.runner`), read from the
#: registry (``RuntimeSpec.device_name``).
PYTHON_RUNTIMES = tuple(registry.device_runtime_names())
#: Native tools :mod:`edgedeploy.devices.native` runs (registry: ``RuntimeSpec.native_tools``): benchmark tools whose
#: output it parses, and ``mnn-runner`` (edgedeploy's own static MNN runner, driven like the Python runner).
NATIVE_TOOLS = tuple(registry.native_tools())
#: Native tools that speak the Python runner's protocol (raw samples, board-side parity), with the runtime they run.
RUNNER_TOOLS = {"mnn-runner": "mnn"}

DEFAULT_WORKDIR = {
    "local": "~/.cache/edgedeploy/device",
    "ssh": "/tmp/edgedeploy",
    "adb": "/data/local/tmp/edgedeploy",
    "labgrid": "/tmp/edgedeploy/{board}",
}
#: profile fields of a labgrid farm profile in which ``{board}`` stands for the place name (see devices/farm.py)
BOARD_FIELDS = ("user", "key_file", "known_hosts", "python", "workdir")


class Cluster(BaseModel):
    """A group of identical cores (big / LITTLE / prime)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="big, LITTLE, prime, ...")
    cores: list[int] = Field(..., min_length=1, description="logical CPU numbers, as in /sys/devices/system/cpu")
    core_type: str | None = Field(None, description="e.g. Cortex-A17")
    max_freq_mhz: float | None = Field(None, gt=0, description="maximum frequency (MHz)")

    @field_validator("cores")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if any(c < 0 for c in v):
            raise ValueError("core numbers must be >= 0")
        return v


class Cooldown(BaseModel):
    """Wait before a run until every thermal zone is at or below ``max_temp_c`` (bounded by ``timeout_s``)."""

    model_config = ConfigDict(extra="forbid")
    max_temp_c: float = Field(..., description="target temperature (degrees C)")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="give up waiting after this long (s)")
    poll_s: float = Field(2.0, gt=0, le=60, description="polling period (s)")


class DeviceProfile(BaseModel):
    """One device: how to reach it and what it is. See the module docstring for the file layout."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1)
    transport: Literal["local", "ssh", "adb", "labgrid"]
    description: str = ""
    os: Literal["linux", "android"] | None = Field(None, description="default: android for adb, linux otherwise")
    arch: str | None = Field(None, description="uname -m of the device (armv7l, aarch64, x86_64); discovered if unset")
    # ssh
    host: str | None = None
    port: int = Field(22, ge=1, le=65535)
    user: str | None = None
    key_file: str | None = Field(None, description="private key; default: the SSH agent and ~/.ssh/id_*")
    known_hosts: str | None = Field(None, description="known_hosts file; default: ~/.ssh/known_hosts")
    trust_on_first_use: bool = Field(False, description="accept and record an unknown host key (never a changed one)")
    connect_timeout_s: float = Field(10.0, gt=0, le=300)
    # adb
    serial: str | None = Field(None, description="USB serial or host:port of the device")
    adb_host: str = Field("127.0.0.1", description="address of the adb server")
    adb_port: int = Field(5037, ge=1, le=65535, description="port of the adb server")
    # labgrid farm: every place matching ``tags`` on the coordinator is a board reached over SSH (devices/farm.py)
    coordinator: str | None = Field(None, description="labgrid coordinator HOST:PORT")
    tags: dict[str, str] = Field(default_factory=dict, description="place filter, e.g. {device: rk3288}")
    max_boards: int | None = Field(None, ge=1, description="reserve at most this many places (default: all matching)")
    reserve_timeout_s: float = Field(300.0, gt=0, le=86400, description="wait this long for places to be allocated")
    # what runs there
    workdir: str | None = Field(None, description="folder on the device for runner, artifacts and locks")
    python: str | None = Field(
        "python3",
        description="Python interpreter on the device (for the stdlib-only runner); null: none (Android boards: "
        "the glibc armv7l / aarch64 wheels cannot load on bionic), native tools only",
    )
    clusters: list[Cluster] = Field(default_factory=list)
    core_mask: str | None = Field(None, description="taskset mask in hex, e.g. 0xf0; default: the fastest cluster")
    runtimes: list[str] = Field(default_factory=list, description="Python runtimes present; default: probe all")
    native_tools: dict[str, str] = Field(default_factory=dict, description="tool name -> path on the device")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment for commands on the device")
    fixed_performance: bool = Field(False, description="Android: ask for sustained-performance mode during runs")
    cooldown: Cooldown | None = None
    retries: int = Field(2, ge=0, le=10, description="reconnect attempts after a dropped connection")
    retry_backoff_s: float = Field(1.0, ge=0, le=60, description="first back-off (s); doubles each attempt")
    path: Path | None = Field(None, exclude=True, description="the file this profile was read from")

    @field_validator("core_mask")
    @classmethod
    def _hex_mask(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            n = int(v, 16)
        except ValueError:
            raise ValueError(f"core_mask must be hexadecimal like 0xf0 (got {v!r})") from None
        if n <= 0:
            raise ValueError("core_mask must select at least one core")
        return hex(n)

    @field_validator("runtimes")
    @classmethod
    def _known_runtimes(cls, v: list[str]) -> list[str]:
        bad = [r for r in v if r not in PYTHON_RUNTIMES]
        if bad:
            raise ValueError(f"unknown runtime(s) {bad}; the runner knows {list(PYTHON_RUNTIMES)}")
        return v

    @field_validator("native_tools")
    @classmethod
    def _known_tools(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [t for t in v if t not in NATIVE_TOOLS]
        if bad:
            raise ValueError(f"unknown native tool(s) {bad}; known: {list(NATIVE_TOOLS)}")
        return v

    @model_validator(mode="after")
    def _transport_fields(self) -> DeviceProfile:
        if self.transport == "ssh" and not self.host:
            raise ValueError("field 'host' is required for transport ssh")
        if self.transport == "adb" and not self.serial:
            raise ValueError("field 'serial' is required for transport adb")
        if self.transport == "labgrid":
            if not self.coordinator or ":" not in self.coordinator:
                raise ValueError("field 'coordinator' (HOST:PORT) is required for transport labgrid")
            if self.host:
                raise ValueError("field 'host' is not used by transport labgrid (each place's NetworkService says)")
        elif self.coordinator or self.tags:
            raise ValueError("fields 'coordinator' and 'tags' belong to transport labgrid")
        if self.os is None:
            object.__setattr__(self, "os", "android" if self.transport == "adb" else "linux")
        if self.workdir is None:
            object.__setattr__(self, "workdir", DEFAULT_WORKDIR[self.transport])
        return self

    @property
    def big_cores(self) -> list[int]:
        """Cores of the fastest cluster (highest ``max_freq_mhz``; the last one listed on a tie), or ``[]``."""
        if not self.clusters:
            return []
        best = max(enumerate(self.clusters), key=lambda ic: (ic[1].max_freq_mhz or 0.0, ic[0]))[1]
        return sorted(best.cores)

    @property
    def pin_mask(self) -> str | None:
        """The taskset mask to pin runs to: ``core_mask``, else the fastest cluster's, else ``None`` (discover)."""
        if self.core_mask:
            return self.core_mask
        cores = self.big_cores
        return hex(sum(1 << c for c in cores)) if cores else None

    @property
    def address(self) -> str:
        """A human-readable address (``user@host:port``, the ADB serial, or ``local``)."""
        if self.transport == "ssh":
            return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"
        if self.transport == "adb":
            return f"adb:{self.serial}"
        if self.transport == "labgrid":
            tags = ",".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
            return f"labgrid:{self.coordinator}[{tags}]"
        return "local"


def load_profile_file(path: str | Path) -> DeviceProfile:
    """Read and validate one profile file.

    Raises :class:`ConfigError` naming the file (and the field) when it cannot be read, is not YAML, or does
    not validate.
    """
    return load_yaml_config(path, DeviceProfile, "device profile")


def load_profile(name_or_path: str) -> DeviceProfile:
    """The profile called ``name_or_path``, or the profile in the YAML file at that path.

    Names are looked up with :func:`edgedeploy._paths.find_yaml_files` (``./devices`` first, then the copy in the
    wheel, then the checkout). Raises :class:`UnknownDeviceError` (with suggestions) for an unknown name and
    :class:`ConfigError` (naming file and field) for a malformed file.
    """
    p = Path(name_or_path).expanduser()
    if name_or_path.endswith((".yaml", ".yml")) or p.is_file():
        if not p.is_file():
            raise ConfigError(f"device profile {p}: no such file")
        return load_profile_file(p)
    files = find_yaml_files("devices")
    if name_or_path not in files:
        raise UnknownDeviceError(name_or_path, files)
    return load_profile_file(files[name_or_path])


def list_profiles(on_error: Callable[[ConfigError], None] | None = None) -> list[DeviceProfile]:
    """Every profile found, sorted by name.

    A malformed file raises :class:`ConfigError` naming it, unless ``on_error`` is given: then it is called with
    that error and the file is skipped (``edgedeploy devices`` prints it as a warning and lists the others).
    """
    profiles = []
    for p in find_yaml_files("devices").values():
        try:
            profiles.append(load_profile_file(p))
        except ConfigError as e:
            if on_error is None:
                raise
            on_error(e)
    return sorted(profiles, key=lambda d: d.name)
