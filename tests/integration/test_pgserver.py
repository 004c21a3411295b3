"""The PostgreSQL server that the tests start for themselves (tests/pgserver.py)."""

import socket
from collections.abc import Iterator

import psycopg
import pytest

from tests.pgserver import HOST, PostgresServer, psycopg_conninfo

pytestmark = pytest.mark.postgresql


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of the test's own, free to stop and start."""
    with PostgresServer() as server:
        yield server


def execute(url: str, statement: str) -> list[tuple]:
    """Rows of one statement, run in its own connection and committed."""
    with psycopg.connect(psycopg_conninfo(url)) as connection:
        cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


def test_a_new_database_can_be_written_and_read(postgresql_url):
    execute(postgresql_url, "CREATE TABLE scores (level int, score int)")
    execute(postgresql_url, "INSERT INTO scores VALUES (1, 1500)")

    assert execute(postgresql_url, "SELECT level, score FROM scores") == [(1, 1500)]


def test_the_database_is_on_loopback_and_owned_by_a_role_that_is_no_superuser(postgresql_url):
    [(address, owner, superuser)] = execute(
        postgresql_url,
        "SELECT inet_server_addr()::text, pg_get_userbyid(datdba), rolsuper"
        " FROM pg_database, pg_roles"
        " WHERE datname = current_database() AND rolname = current_user",
    )

    assert (address, owner, superuser) == (f"{HOST}/32", "scoresvc", False)


def test_tests_using_the_server_are_marked_postgresql(request, postgresql_url):
    assert request.node.get_closest_marker("postgresql") is not None


def test_two_databases_are_separate(postgresql_server):
    first, second = postgresql_server.create_database(), postgresql_server.create_database()
    execute(first, "CREATE TABLE only_here (x int)")

    assert execute(first, "SELECT to_regclass('only_here') IS NOT NULL") == [(True,)]
    assert execute(second, "SELECT to_regclass('only_here') IS NOT NULL") == [(False,)]


def test_a_dropped_database_is_gone_even_with_a_client_connected(postgresql_server):
    url = postgresql_server.create_database()
    with psycopg.connect(psycopg_conninfo(url)):
        postgresql_server.drop_database(url)

    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        execute(url, "SELECT 1")


def test_stop_fails_connections_and_start_brings_the_data_back_on_the_same_port(own_server):
    url = own_server.create_database()
    execute(url, "CREATE TABLE scores AS SELECT 1500 AS score")
    port = own_server.port
    connected = psycopg.connect(psycopg_conninfo(url))

    own_server.stop()

    with pytest.raises(psycopg.OperationalError):
        connected.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        execute(url, "SELECT 1")

    own_server.start()

    assert own_server.port == port
    assert execute(url, "SELECT score FROM scores") == [(1500,)]


def test_committed_data_survives_an_immediate_stop(own_server):
    url = own_server.create_database()
    execute(url, "CREATE TABLE scores AS SELECT 1500 AS score")

    own_server.stop(immediate=True)  # no shutdown checkpoint: the next start recovers from WAL
    own_server.start()

    assert execute(url, "SELECT score FROM scores") == [(1500,)]


def test_start_raises_with_the_log_when_postgresql_cannot_start(own_server):
    own_server.stop()
    with socket.socket() as squatter:
        # SO_REUSEADDR: the stopped server's closed connections may linger on the port
        # (TIME_WAIT), which would refuse a plain bind; a listening socket still holds it.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((HOST, own_server.port))
        squatter.listen()

        with pytest.raises(RuntimeError, match="could not bind"):
            own_server.start()


def test_close_stops_the_server_and_removes_its_folder():
    server = PostgresServer()
    url = server.create_database()

    server.close()

    assert not server.folder.exists()
    with pytest.raises(psycopg.OperationalError):
        execute(url, "SELECT 1")


def test_a_folder_without_postgresql_is_an_error_not_a_skip(tmp_path):
    with pytest.raises(RuntimeError, match="no PostgreSQL programs"):
        PostgresServer(bin_dir=tmp_path)
