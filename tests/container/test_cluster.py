"""docker-compose.cluster.yml run for real: HAProxy, two replicas, migrate, one PostgreSQL."""

import http.client
import itertools
import json
import random
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.container import images
from tests.container.compose import CLUSTER_FILES, Budget, ComposeProject
from tests.container.contract import (
    BAD_REQUESTS,
    check_a_bad_request_gets_its_status,
    check_a_player_logs_in_posts_and_reads_the_list,
)
from tests.container.service_client import ServiceClient, free_loopback_port

pytestmark = pytest.mark.container

REPLICAS = 2
# Building the stand-in images (from cache after the first run), starting, testing, removing.
BUDGET_SECONDS = 300
# The kill test: clients post for this long before one replica is killed, and this long after.
POSTING_BEFORE_KILL_SECONDS = 1.0
POSTING_AFTER_KILL_SECONDS = 2.5
CLIENT_THREADS = 8
# Far longer than a score POST takes here (a few milliseconds): a POST sent this long before the
# kill began was no longer in flight when it did.
IN_FLIGHT_SECONDS = 1.0
# What HAProxy answers for a request that a killed replica never answered.
BALANCER_FAILURES = {502, 503, 504}
# The balancer's cap on one client address's open connections (the compose file's default).
CONNECTIONS_PER_ADDRESS = 100
# The operators' paths, as a client may spell them to slip past a check of the raw path: each
# reaches the admin API or the metrics at a replica, and each is refused at the balancer.
OPERATOR_PATHS = [
    "/admin/levels",
    "/admin",
    "/admin/",
    "/metrics",
    "//admin/levels",
    "/%61dmin/levels",
    "/%2Fadmin/levels",
    "/ADMIN/levels",
    "/metrics?x=1",
]


@pytest.fixture(scope="module")
def cluster(docker_env, scoresvc_build_variables) -> Iterator[ComposeProject]:
    """The cluster, built and up (healthy, per --wait); `down -v` afterwards."""
    # The cluster's own /24, drawn for each run: two runs on one engine must not ask for the
    # same network.
    network = f"172.29.{random.randrange(1, 255)}"
    env = {
        **docker_env,
        "SCORESVC_TEST_PORT": str(free_loopback_port()),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "POSTGRES_OWNER_PASSWORD": secrets.token_urlsafe(16),
        "POSTGRES_APP_PASSWORD": secrets.token_urlsafe(16),
        "SCORESVC_REPLICAS": str(REPLICAS),
        "SCORESVC_WORKERS": "2",
        "SCORESVC_CLUSTER_NETWORK": network,
        "SCORESVC_ADMIN_TOKEN": secrets.token_urlsafe(32),
        # The ops networks: the upper half of the cluster's network, where Docker gives the
        # replicas their addresses, so that a replica's container is an operator's machine.
        # The test reaches the balancer from the network's gateway (.1), outside them. A comma
        # and a space, as a user may write them.
        "SCORESVC_OPS_NETWORKS": f"{network}.128/25, 127.0.0.0/8",
    }
    # No SCORESVC_SECRET: the replicas share the one the first of them keeps in the database.
    env.pop("SCORESVC_SECRET", None)
    name = f"scoresvc-cluster-test-{uuid.uuid4().hex[:8]}"
    project = ComposeProject(name, env, Budget(BUDGET_SECONDS), CLUSTER_FILES)
    try:
        env.update(images.stand_in_images(env, project.budget))
        project.compose("build", at_most=240, extra_env=scoresvc_build_variables)
        project.up(wait_seconds=120)
        yield project
    finally:
        project.down()


@pytest.fixture(scope="module")
def balancer(cluster) -> ServiceClient:
    """HTTP to the balancer, once it sends requests on to the replicas."""
    client = ServiceClient(int(cluster.env["SCORESVC_TEST_PORT"]))
    client.wait_until_healthy(30)
    return client


@pytest.fixture(scope="module")
def replicas(cluster) -> list[ServiceClient]:
    """HTTP to each replica directly, past the balancer."""
    ports = [cluster.published_port("scoresvc", n, 8080) for n in range(1, REPLICAS + 1)]
    return [ServiceClient(port) for port in ports]


def test_a_player_logs_in_posts_and_reads_the_list_through_the_balancer(balancer):
    check_a_player_logs_in_posts_and_reads_the_list(balancer)


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_REQUESTS)
def test_a_bad_request_gets_its_status_through_the_balancer(balancer, method, path, body, status):
    check_a_bad_request_gets_its_status(balancer, method, path, body, status)


def test_the_balancer_spreads_requests_over_the_replicas(cluster, balancer):
    for _ in range(4 * REPLICAS):
        assert balancer.request("GET", "/31337/highscorelist")[0] == 200
    for n in range(1, REPLICAS + 1):
        logs = cluster.compose("logs", "--no-color", "--index", str(n), "scoresvc")
        assert "GET /31337/highscorelist 200" in logs, f"replica {n} got none of the requests"


def test_every_replica_reads_at_once_what_any_replica_wrote(replicas):
    # Each replica in turn logs a player in and takes the score; each reads it right after.
    for round_number, writer in enumerate(replicas * 2):
        level = 100 + round_number
        key = writer.login(9000 + round_number)
        assert writer.post_score(level, key, 10) == 200
        for reader in replicas:
            assert reader.highscorelist(level) == f"{9000 + round_number}=10"


def test_a_key_from_one_replica_works_at_every_other(replicas):
    # No SCORESVC_SECRET is set: the replicas sign with the secret kept in the database.
    for round_number, issuer in enumerate(replicas):
        key = issuer.login(8000)
        for poster in replicas:
            assert poster.post_score(200 + round_number, key, 5) == 200


def test_equal_scores_rank_by_who_reached_them_first_across_replicas(replicas):
    first, second = replicas[0], replicas[1]
    assert first.post_score(300, first.login(11), 700) == 200
    assert second.post_score(300, second.login(22), 700) == 200
    assert first.post_score(300, first.login(33), 700) == 200
    for reader in replicas:
        assert reader.highscorelist(300) == "11=700,22=700,33=700"


def test_no_log_holds_a_session_key(cluster, balancer):
    key = balancer.login(4242)
    assert balancer.post_score(400, key, 1) == 200
    logs = cluster.compose("logs", "--no-color")
    assert "POST /400/score" in logs
    assert key not in logs
    assert "Traceback" not in logs


def request_with_token(client: ServiceClient, path: str, token: str) -> int:
    """GET path on a fresh connection with the admin token; the status."""
    connection = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        return connection.getresponse().status
    finally:
        connection.close()


def run_in(cluster: ComposeProject, container: str, *command: str, **env: str):
    """Run command in a container of the cluster (docker exec); the finished process."""
    variables = [argument for name, value in env.items() for argument in ("-e", f"{name}={value}")]
    return subprocess.run(
        ["docker", "exec", *variables, container, *command],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=cluster.budget.timeout(30),
        check=False,
    )


def gateway_address(cluster: ComposeProject) -> str:
    """The cluster network's gateway: the address the test's connections come from there."""
    network = json.loads(cluster.docker("network", "inspect", f"{cluster.name}_default"))
    return network[0]["IPAM"]["Config"][0]["Gateway"]


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_the_balancer_answers_403_for_the_operators_paths_outside_the_ops_networks(
    cluster, balancer, replicas, path
):
    token = cluster.env["SCORESVC_ADMIN_TOKEN"]
    assert request_with_token(balancer, path, token) == 403
    # The replica itself answers them: the 403 is the balancer's.
    if path.rstrip("/") in ("/admin/levels", "/metrics"):
        assert request_with_token(replicas[0], path, token) == 200


def test_the_balancer_passes_the_operators_paths_from_the_ops_networks(cluster, balancer):
    # From the second replica's container (its address is in the ops networks), through the
    # balancer, with the admin token the replica's environment holds.
    ask = (
        "import http.client, os, sys\n"
        "for path in sys.argv[1:]:\n"
        "    c = http.client.HTTPConnection('balancer', 8080, timeout=10)\n"
        "    token = os.environ['SCORESVC_ADMIN_TOKEN']\n"
        "    c.request('GET', path, headers={'Authorization': 'Bearer ' + token})\n"
        "    print(c.getresponse().status)\n"
    )
    container = cluster.container("scoresvc", 2)
    done = run_in(cluster, container, "python", "-c", ask, "/admin/levels", "/metrics", "/x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "200", "404"]


def test_the_replicas_see_the_client_that_the_balancer_names(cluster, balancer, replicas):
    # Each replica trusts the balancer's X-Forwarded-For, and only the balancer's: the access
    # log (and every per-address limit) sees the client's address, here the gateway the test's
    # connections come from. Not the balancer's own, nor the one a client wrote (HAProxy drops
    # it), nor one sent straight to a replica from elsewhere.
    client = gateway_address(cluster)
    marker = uuid.uuid4().hex[:12]  # too short to be hidden as a key in the log
    forged = {"X-Forwarded-For": "203.0.113.9"}
    for via, target in (("balancer", balancer), ("direct", replicas[0])):
        connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
        try:
            connection.request("GET", f"/31337/highscorelist?{via}={marker}", headers=forged)
            assert connection.getresponse().status == 200
        finally:
            connection.close()
    logs = cluster.compose("logs", "--no-color", "scoresvc")
    lines = [line for line in logs.splitlines() if marker in line]
    assert len(lines) == 2, lines
    for via in ("balancer", "direct"):
        assert any(
            f" {client} GET /31337/highscorelist?{via}={marker} 200" in line for line in lines
        ), lines


def test_the_balancer_closes_connections_over_the_per_address_cap(cluster, balancer):
    # Every connection of the test comes from one address. The first ones are served; those
    # past the cap are closed unanswered; once they are all closed, the address is served again.
    sockets = []
    answered = refused = 0
    try:
        for _ in range(CONNECTIONS_PER_ADDRESS + 20):
            sockets.append(socket.create_connection(("127.0.0.1", balancer.port), timeout=10))
        time.sleep(0.5)  # the balancer has accepted (and refused) them all
        for connection in sockets:
            try:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: scoresvc\r\n\r\n")
                answer = connection.recv(64)
            except OSError:
                answer = b""
            if answer.startswith(b"HTTP/1.1 200"):
                answered += 1
            else:
                assert answer == b"", answer
                refused += 1
    finally:
        for connection in sockets:
            connection.close()
    assert CONNECTIONS_PER_ADDRESS - 5 <= answered <= CONNECTIONS_PER_ADDRESS
    assert refused >= 20
    balancer.wait_until_healthy(10)


def psql(cluster: ComposeProject, statement: str, role: str, password: str | None = None):
    """statement run by psql in the PostgreSQL container: as role over TCP with password, or
    over the Unix socket (the superuser's only way in) without one; the finished process."""
    command = [
        "psql",
        "--no-psqlrc",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-At",
        "-U",
        role,
        "-d",
        "scoresvc",
    ]
    if password is not None:
        command += ["-h", "127.0.0.1"]
    container = cluster.container("postgres", 1)
    env = {} if password is None else {"PGPASSWORD": password}
    return run_in(cluster, container, *command, "-c", statement, **env)


def test_migrate_ran_once_as_the_owner(cluster):
    container = cluster.compose("ps", "--all", "--quiet", "migrate").strip()
    exit_code = cluster.docker("inspect", "--format", "{{.State.ExitCode}}", container).strip()
    assert exit_code == "0"
    owners = psql(
        cluster, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", "postgres"
    )
    assert owners.stdout.split() == ["scoresvc_owner"], owners
    tables = psql(
        cluster, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", "postgres"
    )
    assert {"alembic_version", "best_scores", "service_settings"} <= set(tables.stdout.split())


def test_the_replicas_connect_as_the_role_that_owns_nothing(cluster, replicas):
    for replica in replicas:
        assert replica.request("GET", "/healthz")[0] == 200
    statement = (
        "SELECT DISTINCT usename FROM pg_stat_activity "
        "WHERE datname = 'scoresvc' AND client_addr IS NOT NULL AND pid <> pg_backend_pid()"
    )
    users = psql(cluster, statement, "postgres")
    assert users.stdout.split() == ["scoresvc_app"], users
    owned = psql(
        cluster,
        "SELECT count(*) FROM pg_class WHERE relowner = 'scoresvc_app'::regrole",
        "postgres",
    )
    assert owned.stdout.strip() == "0"


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("DROP TABLE best_scores", "must be owner of table best_scores"),
        ("ALTER TABLE best_scores ADD COLUMN x int", "must be owner of table best_scores"),
        ("TRUNCATE best_scores", "permission denied for table best_scores"),
        ("CREATE TABLE intruder (i int)", "permission denied for schema public"),
        ("CREATE TEMPORARY TABLE intruder (i int)", "permission denied to create temporary"),
        ("CREATE SCHEMA intruder", "permission denied for database scoresvc"),
    ],
)
def test_the_replicas_role_cannot_change_the_schema(cluster, statement, error):
    done = psql(cluster, statement, "scoresvc_app", cluster.env["POSTGRES_APP_PASSWORD"])
    assert done.returncode != 0
    assert error in done.stderr, done.stderr


def test_a_table_a_later_migration_makes_is_the_replicas_to_read_and_write(cluster):
    owner, app = cluster.env["POSTGRES_OWNER_PASSWORD"], cluster.env["POSTGRES_APP_PASSWORD"]
    made = psql(
        cluster, "CREATE TABLE later (id serial PRIMARY KEY, n int)", "scoresvc_owner", owner
    )
    assert made.returncode == 0, made.stderr
    try:
        used = psql(
            cluster,
            "INSERT INTO later (n) VALUES (7); UPDATE later SET n = 8; SELECT n FROM later; "
            "DELETE FROM later",
            "scoresvc_app",
            app,
        )
        assert used.returncode == 0, used.stderr
        assert used.stdout.split() == ["8"]
    finally:
        psql(cluster, "DROP TABLE later", "scoresvc_owner", owner)


def test_the_superuser_cannot_log_in_over_the_network(cluster):
    done = psql(cluster, "SELECT 1", "postgres", cluster.env["POSTGRES_PASSWORD"])
    assert done.returncode != 0
    assert "pg_hba.conf rejects connection" in done.stderr, done.stderr


@dataclass
class Post:
    """One score POST of the kill test and how it ended (status None: no answer at all)."""

    level: int
    user: int
    score: int
    sent: float
    status: int | None = None


def test_when_a_replica_is_killed_the_others_answer_and_no_answered_score_is_lost(
    cluster, balancer
):
    keys = {thread: balancer.login(5000 + thread) for thread in range(CLIENT_THREADS)}
    posts: list[Post] = []
    stop = threading.Event()

    def post_scores(thread: int) -> None:
        # Each thread posts once to each level in turn, a score no other POST sends: every
        # level's list then holds each thread's score on it (up to 15 players), so one list
        # read checks the POSTs of all the threads.
        for round_number in itertools.count():
            if stop.is_set():
                return
            score = round_number * CLIENT_THREADS + thread + 1
            post = Post(1_000_000 + round_number, 5000 + thread, score, time.monotonic())
            try:
                post.status = balancer.post_score(post.level, keys[thread], post.score)
            except OSError:
                post.status = None
            posts.append(post)

    clients = [threading.Thread(target=post_scores, args=(n,)) for n in range(CLIENT_THREADS)]
    for client in clients:
        client.start()
    try:
        time.sleep(POSTING_BEFORE_KILL_SECONDS)
        killing = time.monotonic()
        cluster.docker("kill", cluster.container("scoresvc", 1))
        killed = time.monotonic()
        time.sleep(POSTING_AFTER_KILL_SECONDS)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=30)

    failed = [post for post in posts if post.status != 200]
    after_kill = [post for post in posts if post.sent > killed]
    # Only requests in flight while the replica was being killed may fail (its processes take
    # a few tens of milliseconds to die, and a client can have two requests cut off in that
    # time), and only as the balancer reports a replica that never answered: a 4xx would be a
    # replica refusing a valid request.
    assert all(killing - IN_FLIGHT_SECONDS < post.sent < killed for post in failed), failed
    assert all(post.status in BALANCER_FAILURES | {None} for post in failed), failed
    # The other replica kept answering: every request sent after the kill got its 200.
    assert len(after_kill) > 50
    assert all(post.status == 200 for post in after_kill)

    answered = [post for post in posts if post.status == 200]
    levels = sorted({post.level for post in answered})
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        lists = dict(zip(levels, pool.map(balancer.highscorelist, levels), strict=True))
    entries = {level: set(text.split(",")) for level, text in lists.items()}
    lost = [post for post in answered if f"{post.user}={post.score}" not in entries[post.level]]
    assert not lost, f"{len(lost)} of {len(answered)} answered scores are not in their lists"
