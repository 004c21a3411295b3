"""In-process cost: the WSGI app called directly, per endpoint, beside raw sqlite3 doing its SQL.

`python -m bench.inprocess` prints one JSON object on stdout. The app logs its access lines to
stderr as the server does (the suite sends that to a file).
"""

import io
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

from sqlalchemy import BigInteger, bindparam
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from scoresvc import create_app
from scoresvc.logconfig import configure_logging
from scoresvc.settings import Settings
from scoresvc.storage.schema import banned_users, best_scores
from scoresvc.storage.statements import CompiledStatement, best_score_upsert
from scoresvc.web.accesslog import log_request

PLAYERS = 1000
LIST_LEVEL = 1
TOP_QUERY = (
    "SELECT user_id, score FROM best_scores WHERE level_id = ? "
    "ORDER BY score DESC, reached_at, user_id LIMIT 15"
)
# The service's own score upsert, with the time given rather than from next_reached_at().
UPSERT = CompiledStatement(
    best_score_upsert(sqlite.dialect(), reached_at=bindparam("reached_at", type_=BigInteger)),
    sqlite.dialect(),
)


class Client:
    """Calls a WSGI app the way waitress would, without a socket."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.status = ""

    def _start_response(self, status: str, headers: list, exc_info=None) -> None:
        self.status = status

    def get(self, path: str) -> bytes:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": ""}
        return b"".join(self.app({**_ENVIRON, **environ}, self._start_response))

    def post(self, path: str, query: str, body: bytes) -> bytes:
        environ = {
            **_ENVIRON,
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
        return b"".join(self.app(environ, self._start_response))


_ENVIRON = {
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8080",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SCRIPT_NAME": "",
    "REMOTE_ADDR": "127.0.0.1",
    "CONTENT_LENGTH": "0",
    "wsgi.url_scheme": "http",
    "wsgi.input": io.BytesIO(b""),
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def cost_us(
    call: Callable[[int], object],
    iterations: int,
    repeats: int = 5,
    finish: Callable[[], object] = lambda: None,
) -> float:
    """Median over repeats of the mean time of one call(i), finish() included, in µs."""
    samples = []
    offset = 0
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(offset, offset + iterations):
            call(i)
        finish()
        samples.append((time.perf_counter() - started) / iterations * 1e6)
        offset += iterations
    return statistics.median(samples)


def logged_in_client(
    players: int = PLAYERS, database_url: str = "sqlite://", **create_app_options
) -> tuple[Client, list[str]]:
    """A client of a fresh app (a memory database by default) and the session keys of users
    0..players-1."""
    configure_logging(None)
    settings = Settings(secret=uuid.uuid4().hex, session_ttl=86400, database_url=database_url)
    app = create_app(settings, **create_app_options)
    client = Client(app)
    keys = [client.get(f"/{user}/login").decode() for user in range(players)]
    return client, keys


def piece_costs(client: Client, keys: list[str], iterations: int) -> dict[str, float]:
    """What each piece of a login and of a score POST costs on its own, µs a call: the app's
    own objects, reached through its router (the views hold them)."""
    router = client.app.router
    route, _ = router.resolve("POST", "/2/score")
    views = route.view.__self__  # the ScoreViews every route of the contract is a method of
    post_environ = {
        **_ENVIRON,
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/2/score",
        "QUERY_STRING": f"sessionkey={keys[0]}",
    }
    pieces = {
        "route a POST to its view": lambda i: router.resolve("POST", "/2/score"),
        "check a session key (HMAC)": lambda i: views.session_keys.verify(keys[i % PLAYERS]),
        "issue a session key": lambda i: views.session_keys.issue(i % PLAYERS),
        # A user of its own each call, so that every check takes a token and none is refused.
        "check the post limit (5/20)": lambda i: views.limits.check_post(100_000 + i, "10.0.0.1"),
        "count the answer (metrics)": lambda i: views.metrics.request_answered(
            route.label, "200 OK", 0.0001
        ),
        "write the access line": lambda i: log_request(post_environ, "200 OK", 0.0001),
    }
    costs = {name: cost_us(piece, iterations) for name, piece in pieces.items()}
    # Accepted at once, applied by a thread of its own: a health check applies what is left.
    costs["record a score (the write)"] = cost_us(
        lambda i: views.repository.record_score(3, i % PLAYERS, i),
        iterations,
        finish=lambda: client.get("/healthz"),
    )
    return costs


def raw_floor(rows: list[tuple[int, int, int, int]], path: str | None = None) -> sqlite3.Connection:
    """A raw sqlite3 database with scoresvc's tables and index (without the ranking's counts and
    their triggers) and rows (level, user, score, reached_at): a shared-cache memory database,
    or the file at path (WAL, synchronous=NORMAL, as scoresvc has it)."""
    if path is None:
        connection = sqlite3.connect(
            f"file:floor-{uuid.uuid4().hex}?mode=memory&cache=shared", uri=True
        )
    else:
        connection = sqlite3.connect(path)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    dialect = sqlite.dialect()
    for table in (best_scores, banned_users):
        connection.execute(str(CreateTable(table).compile(dialect=dialect)))
    for index in best_scores.indexes:
        connection.execute(str(CreateIndex(index).compile(dialect=dialect)))
    names = ("level_id", "user_id", "score", "reached_at")
    UPSERT.executemany(connection.cursor(), [dict(zip(names, row, strict=True)) for row in rows])
    connection.commit()
    return connection


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    client, keys = logged_in_client()
    rows = [(LIST_LEVEL, user, user * 7919 % 1_000_003, user) for user in range(PLAYERS)]
    for _, user, score, _ in rows:
        client.post(f"/{LIST_LEVEL}/score", f"sessionkey={keys[user]}", str(score).encode())
    assert client.get(f"/{LIST_LEVEL}/highscorelist").count(b",") == 14

    def post_score(i: int) -> None:
        # A rising score on level 2, rotating through the users: every call improves a best.
        client.post("/2/score", f"sessionkey={keys[i % PLAYERS]}", str(i).encode())

    app = {
        "login": cost_us(lambda i: client.get(f"/{i % PLAYERS}/login"), iterations),
        # Score writes are deferred to a thread of their own: a health check, a unit of work,
        # runs what is still queued, so that the writes' own cost is counted too.
        "score": cost_us(post_score, iterations, finish=lambda: client.get("/healthz")),
        "highscorelist": cost_us(lambda i: client.get(f"/{LIST_LEVEL}/highscorelist"), iterations),
    }
    assert client.status == "200 OK", client.status
    pieces = piece_costs(client, keys, iterations)

    floor_db = raw_floor(rows)

    def floor_upsert(i: int) -> None:
        UPSERT.execute(floor_db, level_id=2, user_id=i % PLAYERS, score=i, reached_at=i)
        floor_db.commit()

    floor = {
        "score": cost_us(floor_upsert, iterations),
        "highscorelist": cost_us(
            lambda i: floor_db.execute(TOP_QUERY, (LIST_LEVEL,)).fetchall(), iterations
        ),
    }
    # A file: each post accepted into the write journal, then applied in batches (a health
    # check applies what is left); raw sqlite3 commits each upsert on its own, as scoresvc did
    # before the journal.
    with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as directory:
        file_client, file_keys = logged_in_client(database_url=f"sqlite:///{directory}/app.db")

        def post_score_to_file(i: int) -> None:
            file_client.post("/2/score", f"sessionkey={file_keys[i % PLAYERS]}", str(i).encode())

        app["score, file"] = cost_us(
            post_score_to_file, iterations, finish=lambda: file_client.get("/healthz")
        )
        assert file_client.status == "200 OK", file_client.status
        floor_file = raw_floor(rows, f"{directory}/floor.db")

        def floor_upsert_to_file(i: int) -> None:
            UPSERT.execute(floor_file, level_id=2, user_id=i % PLAYERS, score=i, reached_at=i)
            floor_file.commit()

        floor["score, file"] = cost_us(floor_upsert_to_file, iterations)
        floor_file.close()
    json.dump(
        {"players": PLAYERS, "app_us": app, "floor_us": floor, "pieces_us": pieces}, sys.stdout
    )


if __name__ == "__main__":
    main()
