"""The transport factory: :func:`connect` opens the transport a device profile names.

The one module that knows the concrete transports (``local``, ``ssh``, ``adb``); :mod:`.transport` holds only the
interface they share, so no transport imports its siblings. Measurement layer: the harness, the remote bench,
suites and commands import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgedeploy.devices.profile import DeviceProfile
    from edgedeploy.devices.transport import Transport


def connect(profile: DeviceProfile) -> Transport:
    """Open the transport the profile names (``local``, ``ssh`` or ``adb``).

    Raises :class:`~edgedeploy.errors.MissingExtraError` when paramiko / adbutils is missing (extra ``remote``),
    and the transport's connection errors.
    """
    if profile.transport == "local":
        from edgedeploy.devices.local import LocalTransport

        return LocalTransport(profile)
    if profile.transport == "labgrid":
        from edgedeploy.errors import ConfigError

        raise ConfigError(
            f"device {profile.name} is a labgrid farm (many boards): run `edgedeploy bench --device {profile.name}`; "
            "edgedeploy reserves its places and connects to each board over SSH"
        )
    if profile.transport == "ssh":
        from edgedeploy.devices.ssh import SSHTransport

        return SSHTransport(profile)
    from edgedeploy.devices.adb import ADBTransport

    return ADBTransport(profile)
