"""The manifest: a JSON file beside every artifact (``<artifact>.json``) describing what it is and how it was made.

Fields: model, format, precision, input (name, shape, layout, dtype), outputs, exporter and opset, lowering
(mode, rewritten modules, max error of the whole rewrite; ``registered``: module rewrites; ``passes``: per generic
pass its rewrites — module, node, was, now, shape — and check; ``notes``; see
:func:`edgedeploy.export.lowering.lowering_report`), tool versions, sha256 and size (bytes) of the artifact,
op census (op type → count), parity (status, passed, metrics, thresholds), the command line, timings (s).
Formats whose artifact is several files add ``side_files`` (file name → sha256; ncnn's ``.bin``), checked with
the artifact by :func:`read_manifest`. An int8 artifact exported through :func:`edgedeploy.export` carries
``int8_speed`` (:class:`Int8Speed`): its speed measured on the export host against the same module's fp32
artifact of the format (:mod:`edgedeploy.bench.int8_speed`), or why it was not measured.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgedeploy._util import atomic_write_text, sha256_file
from edgedeploy._version import __version__
from edgedeploy.errors import ArtifactError

MANIFEST_VERSION = 1


class TensorSpec(BaseModel):
    name: str
    shape: list[int]
    layout: str = "NCHW"
    dtype: str = "float32"


class Int8Speed(BaseModel):
    """An int8 artifact's speed against the fp32 artifact of the same module and format, measured on the export
    host with the format's host runtime (:func:`edgedeploy.bench.int8_speed.measure_int8_speed`).

    ``ratio`` is fp32 time ÷ int8 time, the median of the per-block paired ratios (each block: median fp32 ms ÷
    median int8 ms of its interleaved runs): > 1 int8 is faster, < 1 slower. ``fp32_ms`` / ``int8_ms``: medians
    of all timed runs (ms per batch-1 inference on ``clock``: ``"cpu"`` process CPU time, ``"wall"``).
    ``measured`` False: ``reason`` says why (runtime absent, an inference too slow for the budget, parity
    failed); the numbers are then None.
    """

    measured: bool
    runtime: str
    reason: str | None = None
    ratio: float | None = Field(None, description="fp32 ms ÷ int8 ms: > 1 int8 faster")
    fp32_ms: float | None = None
    int8_ms: float | None = None
    blocks: int = 0
    runs_per_block: int = 0
    block_ratios: list[float] = Field(default_factory=list)
    clock: str = "cpu"
    threads: int = 1
    elapsed_s: float | None = Field(None, description="seconds spent timing, warm-up included")
    fp32_artifact: str | None = None
    host: str | None = Field(None, description="CPU model, logical cores, architecture of the measuring host")


_CLOCK_NAMES = {"cpu": "CPU time", "wall": "wall clock"}


def int8_speed_line(speed: Int8Speed) -> str:
    """One line for the export summary, worded by the measured ratio: ``int8 is slower than fp32 on mnn here
    (measured 0.70× fp32 speed, 5 blocks, CPU time, this host)``, ``int8 is 1.48× faster than fp32 on onnxruntime
    here (…)`` or ``int8 speed vs fp32 not measured: <reason>``."""
    if not speed.measured or speed.ratio is None:
        return f"int8 speed vs fp32 not measured on {speed.runtime}: {speed.reason or 'unknown reason'}"
    how = f"{speed.blocks} block{'s' * (speed.blocks != 1)}, {_CLOCK_NAMES.get(speed.clock, speed.clock)}, this host"
    if speed.ratio < 1:
        return f"int8 is slower than fp32 on {speed.runtime} here (measured {speed.ratio:.2f}× fp32 speed, {how})"
    return f"int8 is {speed.ratio:.2f}× faster than fp32 on {speed.runtime} here (measured, {how})"


class Manifest(BaseModel):
    """See the module docstring."""

    model_config = ConfigDict(extra="allow")

    manifest_version: int = MANIFEST_VERSION
    model: str
    family: str | None = None
    format: str
    precision: str = "fp32"
    artifact: str = Field(..., description="file name of the artifact, relative to the manifest")
    sha256: str
    size_bytes: int
    input: TensorSpec
    outputs: list[str]
    exporter: str
    opset: int | None = None
    lowering: dict[str, Any] = Field(default_factory=dict)
    tool_versions: dict[str, str] = Field(default_factory=dict)
    op_census: dict[str, int] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)
    status: str = "exported"
    params: int | None = None
    model_fingerprint: str | None = None
    weights: str | None = None
    notes: list[str] = Field(default_factory=list)
    bisection: dict[str, Any] | None = Field(None, description="first drifting module when parity failed")
    int8_speed: Int8Speed | None = Field(None, description="int8 vs fp32 measured at export (int8 artifacts)")
    timings_s: dict[str, float] = Field(default_factory=dict)
    command_line: str = Field(default_factory=lambda: " ".join(["edgedeploy", *sys.argv[1:]]))
    edgedeploy_version: str = __version__
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def manifest_path(artifact: str | Path) -> Path:
    """``model.mnn`` → ``model.mnn.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_manifest(manifest: Manifest, artifact: str | Path) -> Path:
    """Write the manifest beside ``artifact`` atomically; returns its path."""
    path = manifest_path(artifact)
    atomic_write_text(path, manifest.model_dump_json(indent=2) + "\n")
    return path


def read_manifest(artifact: str | Path, verify: bool = True) -> Manifest | None:
    """The manifest beside ``artifact`` or None when there is none.

    With ``verify``, raises :class:`ArtifactError` when the artifact's sha256 differs from the manifest's
    (a corrupted or swapped file). Raises :class:`ArtifactError` when the manifest cannot be read or is not valid.
    """
    path = manifest_path(artifact)
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ArtifactError(f"cannot read manifest {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ArtifactError(f"manifest {path} is not valid: not UTF-8 text") from e
    try:
        manifest = Manifest.model_validate(json.loads(text))
    except (ValueError, ValidationError) as e:
        raise ArtifactError(f"manifest {path} is not valid: {str(e).splitlines()[0]}") from e
    if verify:
        try:
            actual = sha256_file(artifact)
        except OSError as e:
            raise ArtifactError(f"cannot read {artifact}: {e.strerror or e}") from e
        if actual != manifest.sha256:
            raise ArtifactError(
                f"{artifact} does not match its manifest (sha256 {actual[:12]}… vs {manifest.sha256[:12]}…): "
                "the file is corrupt or was replaced; export it again"
            )
        verify_side_files(manifest, Path(artifact))
    return manifest


def verify_side_files(manifest: Manifest, artifact: Path) -> None:
    """Check the files that travel with the artifact (``side_files``: name → sha256, e.g. ncnn's ``.bin``).

    Raises :class:`ArtifactError` for a missing or changed side file.
    """
    side = getattr(manifest, "side_files", None) or {}
    for name, digest in side.items():
        f = artifact.with_name(name)
        if not f.is_file():
            raise ArtifactError(f"{f.name}, which belongs to {artifact.name}, is missing; export it again")
        actual = sha256_file(f)
        if actual != digest:
            raise ArtifactError(
                f"{f} does not match the manifest of {artifact.name} (sha256 {actual[:12]}… vs {digest[:12]}…): "
                "the file is corrupt or was replaced; export it again"
            )
