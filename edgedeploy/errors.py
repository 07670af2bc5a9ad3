"""One small error hierarchy for the whole toolkit.

Every error the toolkit raises on bad input or a failed step is an :class:`EdgeDeployError`.  The CLI prints
``str(error)`` as one line and exits with :attr:`EdgeDeployError.exit_code`; ``--debug`` shows the traceback.

Exit codes (stable, scripts may rely on them):

* 1 — a verdict the user asked about came out negative (parity failed, latency regression);
* 2 — bad input: unknown model / format / runtime / device, bad configuration, corrupt or mismatched file, and
  whatever the user's own code raised (:class:`UserCodeError`: an exception, ``SystemExit``, ``KeyboardInterrupt``);
* 3 — a missing optional package (the message names the extra to install);
* 4 — an export failed (the message names the op and node where known);
* 5 — a device problem: unreachable, authentication, dropped connection, failed remote command;
* 70 — an internal error: an exception the toolkit did not foresee (a bug). The CLI prints
  ``internal error: <type>: <message> (run with --debug for the traceback)``; see :mod:`edgedeploy.clierrors`;
* 130 / 143 — interrupted by SIGINT (Ctrl-C) / SIGTERM (128 + the signal number). A benchmark interrupted while
  timing prints / stores the samples measured so far first; a suite prints its table, the case in progress
  ``partial`` (:mod:`edgedeploy.bench.interrupt`).

A bad or unwritable output path is exit code 2 (:class:`OutputError`); when a benchmark's result cannot be
written, the message says where its samples were saved instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: exit code of an unexpected exception (BSD ``EX_SOFTWARE``)
INTERNAL_ERROR_EXIT = 70


class EdgeDeployError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class ConfigError(EdgeDeployError):
    """A bad option value or a bad YAML file (the message names the file and field)."""


class UnknownNameError(EdgeDeployError):
    """A name that is not in a registry; the message suggests close names."""

    kind = "name"

    def __init__(self, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {self.kind} '{name}'{hint} (known: {', '.join(known)})")
        self.name = name
        self.known = known
        self.suggestions = close


class UnknownModelError(UnknownNameError):
    kind = "model"


class UnknownFormatError(UnknownNameError):
    kind = "format"


class UnknownRuntimeError(UnknownNameError):
    kind = "runtime"


class UnknownDeviceError(UnknownNameError):
    kind = "device"


class MissingExtraError(EdgeDeployError):
    """An optional package is not installed; names the pip extra that provides it."""

    exit_code = 3

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"the optional package '{package}' is not installed{what}; "
            f"install it with: pip install 'edgedeploy[{extra}]'"
        )
        self.package = package
        self.extra = extra


class OutputError(EdgeDeployError):
    """An output file or folder cannot be written (read-only, full disk, a file in the way)."""


class ArtifactError(EdgeDeployError):
    """A missing, unreadable, corrupt or mismatched model file."""


class WeightsError(EdgeDeployError):
    """A checkpoint that does not match the model (missing / unexpected / mismatched keys)."""


class ExportError(EdgeDeployError):
    """An export step failed; ``op`` and ``node`` name the offending operator where known."""

    exit_code = 4

    def __init__(self, message: str, op: str | None = None, node: str | None = None) -> None:
        where = ""
        if op or node:
            where = f" (op {op or '?'} at node {node or '?'})"
        super().__init__(f"{message}{where}")
        self.op = op
        self.node = node


class UnsupportedOpError(ExportError):
    """A target runtime or converter does not support an operator."""


class DeviceError(EdgeDeployError):
    """Base class of device and transport failures."""

    exit_code = 5


class DeviceUnreachableError(DeviceError):
    """The device did not answer (timeout, refused connection, no such serial)."""


class DeviceAuthError(DeviceError):
    """Authentication or host-key verification failed."""


class ConnectionDroppedError(DeviceError):
    """The connection went away in the middle of a run; samples already measured are kept."""


class RemoteCommandError(DeviceError):
    """A command on the device exited non-zero; the message carries its stderr."""

    def __init__(self, command: str, exit_status: int, stderr: str) -> None:
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else "(no stderr)"
        super().__init__(f"remote command failed with exit status {exit_status}: {command}: {tail}")
        self.command = command
        self.exit_status = exit_status
        self.stderr = stderr


class DeviceBusyError(DeviceError):
    """Another bench holds the device's lock."""


class RuntimeUnavailableError(EdgeDeployError):
    """The runtime exists but cannot run here (e.g. CoreML prediction needs macOS); parity is "not run"."""

    exit_code = 3


class UserCodeError(ConfigError):
    """The user's own code (a ``file.py:callable``, its module, its model's ``forward``) raised: any exception,
    ``SystemExit`` or a ``KeyboardInterrupt`` that was not a signal. Bad input: exit code 2, one line
    ``<spec>: your callable raised <type>: <message>`` (see :mod:`edgedeploy.usercode`)."""
