"""docker-compose.cluster.yml built and run for real: HAProxy, two replicas, one PostgreSQL."""

import itertools
import secrets
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


@pytest.fixture(scope="module")
def cluster(docker_env, scoresvc_build_variables) -> Iterator[ComposeProject]:
    """The cluster, built and up (healthy, per --wait); `down -v` afterwards."""
    env = {
        **docker_env,
        "SCORESVC_TEST_PORT": str(free_loopback_port()),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "SCORESVC_REPLICAS": str(REPLICAS),
        "SCORESVC_WORKERS": "2",
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
