"""Raw HTTP/1.1 over a socket, for requests that no HTTP client library would send."""

import re
import socket
import time
from contextlib import suppress
from typing import NamedTuple

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


class RawResponse(NamedTuple):
    """A parsed response: status code, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:port whose every operation times out after timeout."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send data, then read until the server closes the connection or timeout passes."""
    with connect(port, timeout) as sock:
        # The server may answer and hang up before reading it all: then read the answer.
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return read_until_closed(sock, timeout)


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes, or until timeout passes in all."""
    received, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


def read_response(sock: socket.socket, timeout: float = 5.0) -> RawResponse:
    """Read one response (with a Content-Length body) from a kept-alive connection."""
    buffer, deadline = b"", time.monotonic() + timeout
    while b"\r\n\r\n" not in buffer:
        buffer += _recv_some(sock, deadline)
    head, _, body = buffer.partition(b"\r\n\r\n")
    status, headers = _parse_head(head)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += _recv_some(sock, deadline)
    return RawResponse(status, headers, body[:length])


def parse(raw: bytes) -> list[RawResponse]:
    """Every response in raw bytes read from one connection, in order."""
    responses = []
    while raw:
        head, separator, rest = raw.partition(b"\r\n\r\n")
        if not separator:
            raise ValueError(f"incomplete response: {raw[:200]!r}")
        status, headers = _parse_head(head)
        length = int(headers.get("content-length", "0"))
        responses.append(RawResponse(status, headers, rest[:length]))
        raw = rest[length:]
    return responses


def status_of(raw: bytes) -> int:
    """The status code of the first response in raw; ValueError if there is none."""
    return parse(raw)[0].status


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    found = _STATUS_LINE.match(head)
    if not found:
        raise ValueError(f"not an HTTP response: {head[:200]!r}")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(found.group(1)), headers


def _recv_some(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no complete response in time")
    sock.settimeout(remaining)
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection mid-response")
    return chunk
