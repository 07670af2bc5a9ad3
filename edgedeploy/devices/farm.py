"""A board farm on labgrid: reserve the places matching a profile's tags, acquire them, reach each board over SSH.

A farm profile (``transport: labgrid``) names a labgrid coordinator and a tag filter, plus the SSH profile's
board-access fields, in which ``{board}`` stands for the place name::

    name: rk3288-farm
    transport: labgrid
    coordinator: labgrid.lab.example:20408
    tags: {device: rk3288}
    user: root                                  # default: the NetworkService's username
    key_file: ~/.ssh/farm_ed25519
    known_hosts: ~/.ssh/known_hosts             # host keys are verified as for any SSH board
    workdir: /tmp/edgedeploy/{board}
    python: python3
    runtimes: [onnxruntime, mnn]

:class:`LabgridFarm` (a context manager) does what ``labgrid-client reserve --wait device=rk3288`` and
``labgrid-client -p +TOKEN acquire`` do, through labgrid's own client (:class:`labgrid.remote.client.ClientSession`
over gRPC): one reservation per matching place with the tag filter (labgrid allocates one place per reservation),
polled until allocated (polling also refreshes it, so it does not time out), then the allocated place acquired.
Places still busy :data:`GRACE_S` after the first one was acquired are left to their holders (their reservations
cancelled); a place that cannot be acquired or has no available ``NetworkService`` is skipped.
Each acquired place's ``NetworkService`` resource (``address``, ``port``, ``username``, published by the exporter of
the host the board hangs off) becomes an SSH :class:`~edgedeploy.devices.profile.DeviceProfile`. On exit — success,
error or Ctrl-C — every acquired place is released and every reservation cancelled.

Errors: :class:`~edgedeploy.errors.MissingExtraError` without labgrid (extra ``farm``),
:class:`~edgedeploy.errors.DeviceUnreachableError` when the coordinator does not answer,
:class:`~edgedeploy.errors.DeviceBusyError` when no matching place is allocated within ``reserve_timeout_s``,
:class:`~edgedeploy.errors.DeviceError` when no place matches or an acquired place has no ``NetworkService``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from edgedeploy.devices.profile import BOARD_FIELDS, DeviceProfile
from edgedeploy.errors import DeviceBusyError, DeviceError, DeviceUnreachableError, MissingExtraError

T = TypeVar("T")
#: how often a waiting reservation is polled (s); each poll also refreshes it on the coordinator (60 s timeout)
POLL_S = 0.5
#: once one board is acquired, how long the other reservations may still wait for a place (s)
GRACE_S = 5.0
#: fields of a farm profile that describe the farm itself, not a board
FARM_FIELDS = ("coordinator", "tags", "max_boards", "reserve_timeout_s")


@dataclass
class Board:
    """One acquired place: its name, the SSH profile that reaches it, and its NetworkService's parameters."""

    name: str
    profile: DeviceProfile
    service: dict[str, Any]


def board_profile(farm: DeviceProfile, place: str, service: dict[str, Any]) -> DeviceProfile:
    """The SSH profile of board ``place``: address and port from its ``NetworkService``, user from the farm profile
    (else the service's ``username``), ``{board}`` in :data:`BOARD_FIELDS` replaced by the place name. The profile
    keeps the farm's ``name``, so results of every board share one device key (``board`` tells them apart)."""
    data = farm.model_dump(exclude={"path", *FARM_FIELDS})
    data["transport"] = "ssh"
    data["host"] = str(service["address"])
    data["port"] = int(service.get("port") or 22)
    data["user"] = farm.user or service.get("username") or None
    data["description"] = f"{farm.description or farm.name}: labgrid place {place}".strip()
    for f in BOARD_FIELDS:
        if isinstance(data.get(f), str):
            data[f] = data[f].replace("{board}", place)
    return DeviceProfile(**data)


class LabgridFarm:
    """Reserve, acquire and release the places of a ``transport: labgrid`` profile (see the module docstring).

    ``log`` receives one-line progress messages. Use as a context manager; :attr:`boards` lists what was acquired.
    """

    def __init__(self, profile: DeviceProfile, log: Callable[[str], None] | None = None) -> None:
        if profile.transport != "labgrid":
            raise DeviceError(f"device {profile.name} is not a labgrid farm (transport {profile.transport})")
        self.profile = profile
        self.log = log or (lambda msg: None)
        self.boards: list[Board] = []
        self.tokens: list[str] = []
        self.acquired: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: Any = None

    # -- event loop in a thread: labgrid's client is asyncio, edgedeploy's boards are driven from threads --------
    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def _rpc(self, method: str, request: Any, timeout: float = 30.0) -> Any:
        """Call the coordinator's gRPC ``method`` from the loop thread (the aio stub must be used there)."""
        stub = self._session.stub

        async def call() -> Any:
            return await getattr(stub, method)(request)

        import grpc

        try:
            return self._run(call(), timeout)
        except grpc.aio.AioRpcError as e:
            raise DeviceError(f"{self.profile.name}: labgrid coordinator refused {method}: {e.details()}") from e

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="labgrid-client", daemon=True)
        self._thread.start()

    # -- open / close ---------------------------------------------------------------------------------------------
    def open(self) -> list[Board]:
        """Connect, reserve every matching place (at most ``max_boards``), wait for allocations (at most
        ``reserve_timeout_s``), acquire them and read their NetworkServices. Returns the boards."""
        try:
            from labgrid.remote.client import ClientSession
            from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2
        except ImportError as e:
            raise MissingExtraError("labgrid", "farm", "labgrid board farms") from e
        self._pb2 = pb2
        p = self.profile
        self._start_loop()

        async def connect() -> Any:
            s = ClientSession(str(p.coordinator), asyncio.get_running_loop())
            await s.start()
            return s

        try:
            self._session = self._run(connect(), timeout=p.connect_timeout_s + 5)
        except Exception as e:  # grpc / labgrid raise many kinds; all mean: no coordinator
            self.close()
            raise DeviceUnreachableError(f"{p.name}: labgrid coordinator {p.coordinator} does not answer: {e}") from e
        try:
            return self._reserve_and_acquire()
        except BaseException:
            self.close()
            raise

    def _matching_places(self) -> list[str]:
        want = set(self.profile.tags.items())
        places = self._session.places
        return sorted(n for n, pl in places.items() if want <= (set(pl.tags.items()) | {("name", n)}))

    def _reserve_and_acquire(self) -> list[Board]:
        from labgrid.remote.common import Reservation, ReservationState

        p, pb2, s = self.profile, self._pb2, self._session
        names = self._matching_places()
        if not names:
            known = ", ".join(f"{n} {dict(pl.tags)}" for n, pl in sorted(s.places.items())) or "none"
            raise DeviceError(f"{p.name}: no labgrid place on {p.coordinator} matches tags {p.tags} (places: {known})")
        n = min(len(names), p.max_boards or len(names))
        fltr = {"main": pb2.Reservation.Filter(filter=dict(p.tags))}
        for _ in range(n):
            r = self._rpc("CreateReservation", pb2.CreateReservationRequest(filters=fltr, prio=0.0))
            self.tokens.append(r.reservation.token)
        self.log(f"reserved {n} place(s) matching {p.tags} on {p.coordinator}; waiting for allocation")
        deadline = time.monotonic() + p.reserve_timeout_s
        pending = list(self.tokens)
        skipped: list[str] = []
        while pending:
            for token in list(pending):
                reply = self._rpc("PollReservation", pb2.PollReservationRequest(token=token))
                res = Reservation.from_pb2(reply.reservation)
                if res.state is ReservationState.allocated and res.allocations.get("main"):
                    place = res.allocations["main"][0]
                    pending.remove(token)
                    try:
                        self._acquire(place)
                    except DeviceError as e:  # this board is broken (exporter gone, no NetworkService): skip it
                        self.log(f"skipping place {place}: {e}")
                        skipped.append(f"{place}: {e}")
                        self._release(place)
                    if self.boards:  # the others get a short grace, not the whole timeout (they may be busy)
                        deadline = min(deadline, time.monotonic() + GRACE_S)
                elif res.state in (ReservationState.expired, ReservationState.invalid):
                    pending.remove(token)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        for token in pending:  # not allocated in time: give them back so they do not grab a place later
            with contextlib.suppress(Exception):
                self._rpc("CancelReservation", pb2.CancelReservationRequest(token=token))
            self.tokens.remove(token)
        if not self.boards and skipped:
            raise DeviceError(f"{p.name}: no usable labgrid place: {'; '.join(skipped)}")
        if not self.boards:
            raise DeviceBusyError(
                f"{p.name}: none of the {len(names)} labgrid place(s) matching {p.tags} was allocated within "
                f"{p.reserve_timeout_s:g} s (all acquired by others?)"
            )
        self.log(f"acquired {', '.join(b.name for b in self.boards)}")
        return self.boards

    def _acquire(self, place: str) -> None:
        pb2, s = self._pb2, self._session
        self._rpc("AcquirePlace", pb2.AcquirePlaceRequest(placename=place))
        self.acquired.append(place)
        self._run(s.sync_with_coordinator())
        service = self.network_service(place)
        if service is None:
            raise DeviceError(f"{self.profile.name}: labgrid place {place} has no NetworkService resource")
        self.boards.append(Board(place, board_profile(self.profile, place, service), service))

    def _release(self, place: str) -> None:
        if place in self.acquired:
            try:
                self._rpc("ReleasePlace", self._pb2.ReleasePlaceRequest(placename=place), timeout=10)
                self.log(f"released {place}")
            except Exception as e:  # noqa: BLE001 - keep releasing the others
                self.log(f"could not release {place}: {e}")
            self.acquired.remove(place)

    def network_service(self, place: str) -> dict[str, Any] | None:
        """Parameters (``address``, ``port``, ``username`` …) of ``place``'s acquired, available NetworkService, or
        ``None`` (not acquired, no such resource, or its exporter went away)."""
        s = self._session
        pl = s.places.get(place)
        if pl is None:
            return None
        for exporter, group, cls, name in pl.acquired_resources:
            if cls != "NetworkService":
                continue
            entry = s.resources.get(exporter, {}).get(group, {}).get(name)
            if entry is not None and entry.avail:
                return dict(entry.args)
        return None

    def close(self) -> None:
        """Release every acquired place and cancel every reservation (idempotent, best effort, bounded)."""
        s, pb2 = self._session, getattr(self, "_pb2", None)
        if s is not None and pb2 is not None:
            for place in list(self.acquired):
                self._release(place)
            for token in list(self.tokens):
                with contextlib.suppress(Exception):
                    self._rpc("CancelReservation", pb2.CancelReservationRequest(token=token), timeout=10)
                self.tokens.remove(token)
            with contextlib.suppress(Exception):
                self._run(s.stop(), timeout=10)
            with contextlib.suppress(Exception):
                self._run(s.close(), timeout=10)
            self._session = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            if not self._loop.is_running():
                self._loop.close()
            self._loop = None

    def __enter__(self) -> LabgridFarm:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
