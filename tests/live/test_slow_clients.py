"""Slow clients against the real `scoresvc` command: one address trickling requests on many
connections locks nobody else out, and its connections are cut off at the header timeout."""

import http.client
import select
import socket
import threading
import time

import pytest

HEADER_TIMEOUT = 3  # seconds: short, to keep the test short
TRICKLING = 150  # connections from one address, 50 over the default cap of 100
EVERY = 2.0  # seconds between the bytes each one sends
# The timeout is checked once a second, in a loop that wakes at least once a second.
CHECK_LATENESS = 2.5
REQUEST = b"GET /1/login HTTP/1.1\r\nHost: scores\r\n\r\n"  # 36 bytes: 72 s at this pace


class Tricklers:
    """Connections from one address, each sending a request a byte every EVERY seconds, with
    the time each was closed by the server (seconds after it opened)."""

    def __init__(self, port: int, count: int, address: str = "127.0.0.1") -> None:
        self.sockets = []
        self.opened: dict[socket.socket, float] = {}
        self.closed_after: dict[socket.socket, float] = {}
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), 5, source_address=(address, 0))
            self.opened[sock] = time.monotonic()
            self._send(sock, 0)
            self.sockets.append(sock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def open(self) -> list[socket.socket]:
        return [sock for sock in self.sockets if sock not in self.closed_after]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()

    def _run(self) -> None:
        sent, next_byte = 1, time.monotonic() + EVERY
        while not self._stop.is_set() and self.open():
            readable, _, _ = select.select(self.open(), [], [], 0.02)
            for sock in readable:
                try:
                    if sock.recv(4096):
                        continue  # an answer: not expected, but not a close either
                except OSError:
                    pass
                self._note_closed(sock)
            if time.monotonic() >= next_byte:
                for sock in self.open():
                    self._send(sock, sent)
                sent, next_byte = sent + 1, next_byte + EVERY

    def _send(self, sock: socket.socket, index: int) -> None:
        try:
            sock.send(REQUEST[index : index + 1])
        except OSError:
            self._note_closed(sock)

    def _note_closed(self, sock: socket.socket) -> None:
        self.closed_after.setdefault(sock, time.monotonic() - self.opened[sock])


def log_in_from(address: str, port: int) -> tuple[int, float]:
    """A login from address: its status and how long it took, connection included."""
    start = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.source_address = (address, 0)
    try:
        connection.request("GET", "/4711/login")
        status = connection.getresponse().status
    finally:
        connection.close()
    return status, time.monotonic() - start


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "2 workers"])
def test_one_address_trickling_on_150_connections_locks_nobody_else_out(start_server, workers):
    server = start_server("--header-timeout", str(HEADER_TIMEOUT), *workers)
    tricklers = Tricklers(server.port, TRICKLING)
    try:
        if not workers:
            # One process counts them all: those over the cap are closed as soon as accepted,
            # long before the header timeout.
            over_the_cap = TRICKLING - 100
            deadline = time.monotonic() + 2.0
            while len(tricklers.closed_after) < over_the_cap and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # and no more than those
            assert len(tricklers.closed_after) == over_the_cap
            assert max(tricklers.closed_after.values()) < HEADER_TIMEOUT - 0.5

        status, seconds = log_in_from("127.0.0.2", server.port)
        assert status == 200
        assert seconds < 2.0

        deadline = time.monotonic() + HEADER_TIMEOUT + CHECK_LATENESS
        while tricklers.open() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tricklers.open() == [], "still open after the header timeout, though trickling"
        cut_off = sorted(tricklers.closed_after.values())[-100:]
        assert cut_off[0] >= HEADER_TIMEOUT - 0.2  # by the timeout, not before it
    finally:
        tricklers.close()
    status, seconds = log_in_from("127.0.0.1", server.port)  # the address itself, once it stops
    assert (status, seconds < 2.0) == (200, True)
