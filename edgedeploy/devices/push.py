"""Pushing files to a device by content: each file lands in a folder named by its sha256, once.

Used by the remote bench (the runner, the artifact and its side files) and by board-side parity (the inputs).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from edgedeploy._util import sha256_file

if TYPE_CHECKING:
    from edgedeploy.devices.transport import Transport


def artifact_digest(files: list[Path]) -> str:
    """sha256 naming the cache folder: the artifact's own hash, or a hash of all files' hashes and names."""
    if len(files) == 1:
        return sha256_file(files[0])
    import hashlib

    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode() + b"\0")
    return h.hexdigest()


def push_cached(transport: Transport, files: list[Path], remote_dir: str) -> tuple[list[str], bool]:
    """Push ``files`` into ``remote_dir`` unless the device has them with the same sha256; returns the remote paths
    and whether anything was copied. Each file goes to a temporary name first, then ``mv`` (atomic)."""
    transport.makedirs(remote_dir)
    paths, pushed = [], False
    for f in files:
        dst = f"{remote_dir}/{f.name}"
        paths.append(dst)
        if transport.remote_sha256(dst) == sha256_file(f):
            continue
        tmp = f"{dst}.part-{uuid.uuid4().hex[:8]}"
        transport.push(f, tmp)
        transport.run(["mv", "-f", tmp, dst], timeout=60)
        pushed = True
    return paths, pushed
