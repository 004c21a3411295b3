"""Connections spread over the workers: one well ahead of the others leaves them the next ones.

Every worker accepts from the one listening socket its supervisor made, and whichever the
kernel wakes first takes a new connection. Keep-alive connections opened together (a load
generator's, a proxy's pool) could so all land on one worker, which then served them alone while
the other idled: measured with wrk's 16 connections posting scores to 2 workers, all 16 went to
one worker in 2 runs of 6, and those runs answered 4,500 posts a second against 6,600 to 7,500
for the split ones.

So each worker says how many connections it holds, in memory its supervisor shared with every
worker before the fork, at each pass of its main loop; one holding more than SLACK above the
fewest any other holds pauses: it stops listening until the others catch up. The one with the
fewest always listens, so a connection always has a worker to take it. A paused worker's loop
may sleep (an idle one passes once a second), so the worker whose pass finds it no longer
ahead wakes it, through an eventfd of the paused one's made before the fork. A worker that has
not said anything for STALE_SECONDS (stopped, stuck, or killed and not yet replaced) is not
waited for, and a dead one's count is dropped as soon as its supervisor reaps it.
"""

import mmap
import os
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, cast

from waitress import wasyncore
from waitress.server import BaseWSGIServer

# How many connections a worker may hold beyond the fewest another holds and still accept one.
SLACK = 1
# A worker not heard from for this long is not waited for. An idle worker's loop passes once a
# second (waitress's asyncore_loop_timeout), a busy one's at every request.
STALE_SECONDS = 2.5
_STALE_NS = int(STALE_SECONDS * 1e9)
# A slot: the worker's pid, its open connections, when it said so (time.monotonic_ns(), which
# every process of a machine reads from the same clock), and whether it is paused and waits to
# be woken. A pid of 0: no worker.
_FIELDS = 4
_PID, _CONNECTIONS, _SAID_AT, _PAUSED = range(_FIELDS)


class ConnectionCounts:
    """Each worker's open connections, in memory shared by the supervisor and its workers.

    An anonymous shared mapping, and an eventfd for each worker, made by the supervisor before
    the fork; worker number n alone writes slot n - 1 while it lives (others only clear its
    pause when they wake it), and the supervisor clears it once the worker has died.
    """

    def __init__(self, workers: int) -> None:
        self._map = mmap.mmap(-1, workers * _FIELDS * 8)  # MAP_SHARED: one copy over forks
        self._slots = memoryview(self._map).cast("q")
        self._wakers = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(workers)]

    def share(self, number: int) -> "ConnectionShare":
        """Worker number's side of the counts (1 for the first worker)."""
        return ConnectionShare(self._slots, number - 1, self._wakers)

    def forget(self, pid: int) -> None:
        """Clear the slot of the worker that was pid, which has ended."""
        slots = self._slots
        for at in range(0, len(slots), _FIELDS):
            if slots[at + _PID] == pid:
                slots[at + _PID] = 0

    def close(self) -> None:
        """Release the mapping and the eventfds (the workers' copies stay theirs)."""
        self._slots.release()
        self._map.close()
        for waker in self._wakers:
            os.close(waker)


class ConnectionShare:
    """One worker's slot, and its view of the others'."""

    def __init__(self, slots: memoryview, index: int, wakers: list[int]) -> None:
        self._slots = slots
        self._at = index * _FIELDS
        self.waker = wakers[index]  # written to wake this worker
        self._wakers = wakers

    def may_accept(self, connections: int) -> bool:
        """Say that this worker holds connections; whether it may take one more.

        A worker it finds paused, and no longer ahead, is woken. Both say before they look, so
        that one of the two sees the other; should the processor reorder the stores past the
        loads, a paused worker sleeps on until its loop's next pass, at most a second.
        """
        slots, at, now = self._slots, self._at, time.monotonic_ns()
        slots[at + _PID] = os.getpid()
        slots[at + _CONNECTIONS] = connections
        slots[at + _SAID_AT] = now
        fewest = connections
        for other in range(0, len(slots), _FIELDS):
            if slots[other + _PID] and now - slots[other + _SAID_AT] < _STALE_NS:
                fewest = min(fewest, slots[other + _CONNECTIONS])
        allowed = connections <= fewest + SLACK
        slots[at + _PAUSED] = not allowed
        for other in range(0, len(slots), _FIELDS):
            if slots[other + _PAUSED] and slots[other + _CONNECTIONS] <= fewest + SLACK:
                slots[other + _PAUSED] = 0
                os.eventfd_write(self._wakers[other // _FIELDS], 1)
        return allowed

    def leave(self) -> None:
        """Say that this worker no longer accepts (it is stopping)."""
        self._slots[self._at + _PID] = 0


class _Waker(wasyncore.file_dispatcher):
    """The worker's eventfd in its waitress loop: a write to it ends the loop's wait."""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        with suppress(BlockingIOError):  # another pass has read it already
            self.recv(8)


def accept_in_turn(socket_map: Mapping[int, Any], share: ConnectionShare) -> None:
    """Make the listening servers of a waitress socket map accept only while share allows."""
    servers = [d for d in socket_map.values() if isinstance(d, BaseWSGIServer)]
    # Each server's channels by descriptor (types-waitress says one HTTPChannel).
    channels = [cast(dict[int, Any], server.active_channels) for server in servers]

    def connections() -> int:
        return sum(map(len, channels))

    for server in servers:
        server.readable = _readable_in_turn(server.readable, connections, share)  # type: ignore[method-assign]
    _Waker(share.waker, map=socket_map)  # type: ignore[arg-type]  # (a descriptor will do)


def _readable_in_turn(
    waitress_readable: Callable[[], bool], connections: Callable[[], int], share: ConnectionShare
) -> Callable[[], bool]:
    # waitress asks readable() of every dispatcher at each pass of its loop: a listening server
    # that answers False is not polled, and its connections wait for another worker's accept().
    def readable() -> bool:
        allowed = share.may_accept(connections())
        return waitress_readable() and allowed  # waitress's runs either way: its maintenance

    return readable
