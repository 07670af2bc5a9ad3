"""Stored per-device A/B calibrations: the rule settings ``edgedeploy calibrate`` chose and the power it measured.

A calibration is a JSON file (``<dir>/<device>.json``; the folder is ``$EDGEDEPLOY_CALIBRATION`` or
``./.edgedeploy/calibration``) holding the device's name and identity, the chosen ``block_ms`` (inference time
per side per block, ms), ``confidence``, ``threshold_pct`` and ``min_blocks``, the measured A/A false-alarm rate
and the detection power per slowdown. :func:`load` refuses (:class:`~edgedeploy.errors.ConfigError`, exit 2) a
file whose device is not the one asked for: the noise of one machine says nothing about another's.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgedeploy._util import atomic_write_text, cpuinfo_model_name
from edgedeploy.errors import ConfigError

CALIBRATION_ENV = "EDGEDEPLOY_CALIBRATION"
DEFAULT_DIR = Path(".edgedeploy") / "calibration"
KIND = "edgedeploy.ab-calibration"


class Calibration(BaseModel):
    """One device's calibration (see the module doc); ``power`` maps a measured slowdown label (``"+5%"``) to
    ``{"nominal_pct", "achieved_pct", "trials", "detected", "rate"}``; ``false_alarm`` is the A/A share flagged."""

    model_config = ConfigDict(extra="allow")
    kind: str = KIND
    device: str
    device_id: str
    created: str
    block_ms: float = Field(..., gt=0)
    confidence: float = Field(..., gt=0.5, lt=1)
    threshold_pct: float = Field(..., gt=0, lt=100)
    min_blocks: int = Field(6, ge=3)
    false_alarm: dict[str, Any] = Field(default_factory=dict)
    power: dict[str, dict[str, Any]] = Field(default_factory=dict)
    candidates: list[dict[str, Any]] = Field(default_factory=list)


def calibration_dir() -> Path:
    """``$EDGEDEPLOY_CALIBRATION`` or ``./.edgedeploy/calibration``."""
    env = os.environ.get(CALIBRATION_ENV)
    return Path(env) if env else DEFAULT_DIR


def default_path(device: str) -> Path:
    """Where ``device``'s calibration is stored."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in device)
    return calibration_dir() / f"{safe}.json"


def device_id(profile: Any) -> str:
    """The identity a calibration is bound to: this host's name and CPU for ``local``, else the profile's name and
    address (an SSH host:port or an ADB serial)."""
    if profile.transport == "local":
        cpu = cpuinfo_model_name() or platform.processor() or platform.machine()
        return f"local:{platform.node()}:{cpu}:{os.cpu_count()}"
    where = profile.serial or f"{profile.host}:{profile.port}"
    return f"{profile.name}:{profile.transport}:{where}"


def load(path: Path, profile: Any) -> Calibration:
    """Read ``path`` and check it belongs to ``profile``'s device; :class:`ConfigError` otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        cal = Calibration.model_validate(data)
    except OSError as e:
        raise ConfigError(f"cannot read calibration {path}: {e.strerror or e}") from e
    except (ValueError, ValidationError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"calibration {path} is not an edgedeploy A/B calibration: {first}") from e
    if cal.kind != KIND:
        raise ConfigError(f"calibration {path} is not an edgedeploy A/B calibration (kind {cal.kind!r})")
    here = device_id(profile)
    if cal.device != profile.name or cal.device_id != here:
        raise ConfigError(
            f"calibration {path} is of device {cal.device} ({cal.device_id}), not of {profile.name} ({here}); "
            f"run `edgedeploy calibrate --device {profile.name}`"
        )
    return cal


def save(cal: Calibration, path: Path | None = None) -> Path:
    """Write ``cal`` (atomically) to ``path`` or its device's default path; returns the path."""
    target = Path(path) if path else default_path(cal.device)
    atomic_write_text(target, json.dumps(cal.model_dump(), indent=2) + "\n")
    return target
