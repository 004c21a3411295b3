"""64 concurrent clients, thousands of mixed requests: every answer 200, the lists as modelled.

On one process, and on 4 workers over each kind of database: the same service either way.
"""

import http.client
import random
import re
import threading
import time
from collections import defaultdict

import pytest

from tests.databases import empty_database_url
from tests.live.server import LiveServer

CLIENTS = 64
REQUESTS_PER_CLIENT = 60
LEVELS = 5
HIGHSCORE_LIST = re.compile(r"\A(\d+=\d+(,\d+=\d+){0,14})?\Z")
MODES = pytest.mark.parametrize(
    "mode", [[], ["--store-tokens"]], ids=["signed-keys", "stored-keys"]
)


class Client:
    """One player on its own keep-alive connection, sending a random mix of valid requests."""

    def __init__(self, server: LiveServer, user_id: int) -> None:
        self.server = server
        self.user_id = user_id
        self.rng = random.Random(user_id)
        self.best: dict[int, int] = {}  # level -> best score acknowledged
        self.failures: list[str] = []
        self.requests = 0
        self.key = ""

    def run(self) -> None:
        connection = self.server.connection(timeout=10)
        try:
            self.key = self._call(connection, "GET", f"/{self.user_id}/login")
            for _ in range(REQUESTS_PER_CLIENT - 1):
                roll = self.rng.random()
                if roll < 0.5:
                    self._post_score(connection)
                elif roll < 0.85:
                    level = self.rng.randrange(LEVELS)
                    body = self._call(connection, "GET", f"/{level}/highscorelist")
                    if not HIGHSCORE_LIST.match(body):
                        self.failures.append(f"bad list {body!r}")
                elif roll < 0.95:
                    # A new login; in stored mode it ends the previous key, so use the new one.
                    self.key = self._call(connection, "GET", f"/{self.user_id}/login")
                else:
                    self._call(connection, "GET", "/healthz")
        except (OSError, http.client.HTTPException) as error:
            self.failures.append(repr(error))
        finally:
            connection.close()

    def _post_score(self, connection: http.client.HTTPConnection) -> None:
        level = self.rng.randrange(LEVELS)
        # Distinct across users (the low bits are the user), so no two users ever tie and the
        # model's top 15 is exact.
        score = self.rng.randrange(1_000_000) * CLIENTS + self.user_id
        self._call(connection, "POST", f"/{level}/score?sessionkey={self.key}", str(score))
        self.best[level] = max(self.best.get(level, -1), score)

    def _call(self, connection, method: str, path: str, body: str | None = None) -> str:
        self.requests += 1
        connection.request(method, path, body=body)
        response = connection.getresponse()
        text = response.read().decode()
        if response.status != 200:
            self.failures.append(f"{method} {path.split('?')[0]}: {response.status} {text!r}")
        return text


def run_concurrently(targets, timeout: float = 60) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a client hung"


@pytest.fixture(params=["one-process", "memory", "file", "postgresql"])
def deployment(request, tmp_path) -> list[str]:
    """The service's flags: one process in memory, or 4 workers on each kind of database."""
    if request.param == "one-process":
        return []
    return ["--workers", "4", "--database", empty_database_url(request.param, request, tmp_path)]


@MODES
def test_64_clients_get_only_200s_and_the_lists_the_model_predicts(start_server, mode, deployment):
    server = start_server(*mode, *deployment)
    clients = [Client(server, user_id) for user_id in range(CLIENTS)]
    started = time.monotonic()
    run_concurrently(client.run for client in clients)
    elapsed = time.monotonic() - started

    assert [failure for client in clients for failure in client.failures] == []
    requests = sum(client.requests for client in clients)
    assert requests == CLIENTS * REQUESTS_PER_CLIENT
    model: dict[int, dict[int, int]] = defaultdict(dict)
    for client in clients:
        for level, score in client.best.items():
            model[level][client.user_id] = score
    for level in range(LEVELS):
        expected = sorted(model[level].items(), key=lambda entry: -entry[1])[:15]
        assert server.request("GET", f"/{level}/highscorelist") == (
            200,
            ",".join(f"{user}={score}" for user, score in expected),
        )
    print(f"{requests} requests from {CLIENTS} clients in {elapsed:.2f}s")


def test_concurrent_logins_of_one_user_leave_exactly_one_valid_stored_key(start_server):
    server = start_server("--store-tokens")
    keys: list[str] = []
    lock = threading.Lock()

    def log_in_repeatedly() -> None:
        connection = server.connection(timeout=10)
        try:
            for _ in range(5):
                connection.request("GET", "/4242/login")
                response = connection.getresponse()
                key = response.read().decode()
                assert response.status == 200
                with lock:
                    keys.append(key)
        finally:
            connection.close()

    run_concurrently([log_in_repeatedly] * 32)
    assert len(set(keys)) == 32 * 5
    valid = [
        key for key in keys if server.request("POST", f"/1/score?sessionkey={key}", "1")[0] == 200
    ]
    assert len(valid) == 1
    assert server.request("GET", "/1/highscorelist") == (200, "4242=1")
