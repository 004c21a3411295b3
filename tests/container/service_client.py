"""Plain HTTP to the containerized service on 127.0.0.1 (no proxy, whatever the environment)."""

import socket
import time

from tests.httpclient import request


class ServiceClient:
    """Requests to scoresvc on one loopback port, answered as (status, body text)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
        """One request on a fresh connection."""
        return request(self.port, method, path, body)

    def login(self, user_id: int) -> str:
        """A session key for user_id."""
        status, key = self.request("GET", f"/{user_id}/login")
        assert status == 200, key
        return key

    def post_score(self, level_id: int, key: str, score: int) -> int:
        """POST score as `echo` would send it; the status."""
        body = f"{score}\n".encode()
        return self.request("POST", f"/{level_id}/score?sessionkey={key}", body)[0]

    def highscorelist(self, level_id: int) -> str:
        """The level's list, as served."""
        status, text = self.request("GET", f"/{level_id}/highscorelist")
        assert status == 200, text
        return text

    def wait_until_healthy(self, seconds: float) -> None:
        """Poll /healthz until it answers 200."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"/healthz did not answer 200 within {seconds} s")
            time.sleep(0.2)


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, to publish a service at."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
