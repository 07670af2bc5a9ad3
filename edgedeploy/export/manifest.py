"""The manifest: a JSON file beside every artifact (``<artifact>.json``) describing what it is and how it was made.

Fields: model, format, precision, input (name, shape, layout, dtype), outputs, exporter and opset, lowering
(mode, rewritten modules, max error of the whole rewrite; ``registered``: module rewrites; ``passes``: per generic
pass its rewrites — module, node, was, now, shape — and check; ``notes``; see
:func:`edgedeploy.export.lowering.lowering_report`), tool versions, sha256 and size (bytes) of the artifact,
op census (op type → count), parity (status, passed, metrics, thresholds), the command line, timings (s).
Formats whose artifact is several files add ``side_files`` (file name → sha256; ncnn's ``.bin``), checked with
the artifact by :func:`read_manifest`.
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
