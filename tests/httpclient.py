"""The one-request HTTP client that live and container tests share."""

import http.client


def request(
    port: int, method: str, path: str, body: bytes | str | None = None, timeout: float = 10.0
) -> tuple[int, str]:
    """One request to 127.0.0.1:port on its own connection: (status, body text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()
