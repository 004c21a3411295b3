"""Metrics and limits on real servers: one scrape over both workers, one burst shared by them,
and a scrape that a killed worker does not break."""

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.live.load import login
from tests.live.server import LiveServer
from tests.live.test_workers import workers_that_answered

LIST = "/<levelid>/highscorelist"
SCORE = "/<levelid>/score"
METRICS_DIRECTORY = r"metrics of the workers in (\S+)"
# An empty variable is an unset one: the limit at its default, 5/20.
DEFAULT_POST_LIMIT = {"SCORESVC_POST_LIMIT": ""}


def scrape(server: LiveServer) -> dict[tuple[str, tuple], float]:
    """One scrape, on a connection of its own (either worker may answer it)."""
    status, text = server.request("GET", "/metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests(samples: dict, route: str, status: str) -> float:
    return samples.get(("scoresvc_requests_total", (("route", route), ("status", status))), 0)


def until_both_workers_answer(server: LiveServer, path: str) -> int:
    """GET path, each on a new connection, until both workers have answered; how many times.

    The supervisor says it serves before its workers are ready: the first requests may all
    go to the one that is.
    """
    sent = 0
    while sent < 2_000:
        for _ in range(20):
            assert server.request("GET", path)[0] == 200
        sent += 20
        if workers_that_answered(server) == {"worker 1", "worker 2"}:
            return sent
    raise AssertionError(f"{sent} requests, all answered by one worker")


def posts_by_worker(server: LiveServer) -> Counter:
    """(worker, status) of every score post in the access log."""
    found = re.findall(r"\[(worker \d)\] \S+ POST /\d+/score\S* (\d{3}) ", server.log_text())
    return Counter(found)


def test_one_scrape_sees_the_requests_of_both_workers(start_server):
    server = start_server("--workers", "2")
    sent = until_both_workers_answer(server, "/7/highscorelist")
    for _ in range(4):  # whichever worker answers the scrape
        samples = scrape(server)
        assert requests(samples, LIST, "200") == sent
        assert samples[("scoresvc_request_duration_seconds_count", (("route", LIST),))] == sent
        assert samples[("scoresvc_workers", ())] == 2


def test_logins_scores_and_new_bests_are_counted_over_both_workers(start_server):
    server = start_server("--workers", "2")
    keys = [login(server, user) for user in range(20)]
    for user, key in enumerate(keys):
        assert server.request("POST", f"/3/score?sessionkey={key}", str(100 + user))[0] == 200
        assert server.request("POST", f"/3/score?sessionkey={key}", "1")[0] == 200
    samples = scrape(server)
    assert samples[("scoresvc_logins_total", ())] == 20
    assert samples[("scoresvc_scores_received_total", ())] == 40
    assert samples[("scoresvc_scores_new_best_total", ())] == 20
    assert requests(samples, SCORE, "200") == 40


def test_one_users_burst_is_shared_by_both_workers(start_server):
    server = start_server("--workers", "2", "--post-limit", "0.01/10")
    until_both_workers_answer(server, "/9/highscorelist")
    key = login(server, 4711)
    answers = [server.request("POST", f"/1/score?sessionkey={key}", str(n))[0] for n in range(60)]
    assert Counter(answers) == {200: 10, 429: 50}
    by_worker = posts_by_worker(server)
    assert {worker for worker, _ in by_worker} == {"worker 1", "worker 2"}
    assert server.request("GET", "/1/highscorelist") == (200, "4711=9")
    assert requests(scrape(server), SCORE, "429") == 50


def test_the_default_limit_holds_across_two_workers(start_server):
    server = start_server("--workers", "2", env=DEFAULT_POST_LIMIT)
    until_both_workers_answer(server, "/9/highscorelist")
    key = login(server, 4711)
    started = time.monotonic()
    answers = [server.request("POST", f"/1/score?sessionkey={key}", str(n))[0] for n in range(40)]
    elapsed = time.monotonic() - started
    accepted = answers.count(200)
    # A burst of 20, and 5 more a second while the posts went on.
    assert 20 <= accepted <= 20 + 5 * elapsed + 1, (accepted, elapsed)
    assert answers[:20] == [200] * 20
    assert set(answers) == {200, 429}


def test_a_429_says_when_to_try_again(start_server):
    server = start_server("--post-limit", "0.5/1")
    key = login(server, 1)
    assert server.request("POST", f"/1/score?sessionkey={key}", "1")[0] == 200
    connection = server.connection()
    try:
        connection.request("POST", f"/1/score?sessionkey={key}", body="2")
        response = connection.getresponse()
        assert response.status == 429
        assert response.getheader("Retry-After") == "2"
        response.read()
    finally:
        connection.close()


def test_a_killed_workers_metrics_do_not_break_the_scrape(start_server):
    server = start_server("--workers", "2")
    sent = until_both_workers_answer(server, "/7/highscorelist")
    assert requests(scrape(server), LIST, "200") == sent
    killed = server.worker_pids()[1]
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.worker_pids()[1] == killed:
        assert time.monotonic() < deadline, "worker 1 was not replaced"
        time.sleep(0.05)
    server.wait_for_log(rf"\[worker 1\] ready, pid {server.worker_pids()[1]}")
    for _ in range(6):
        samples = scrape(server)
        assert requests(samples, LIST, "200") == sent  # what the dead worker counted stays
        assert samples[("scoresvc_workers", ())] == 2  # the dead one is no longer counted


def test_the_metrics_directory_goes_when_the_service_stops(start_server):
    server = start_server("--workers", "2")
    directory = Path(server.wait_for_log(METRICS_DIRECTORY)[1])
    assert directory.is_dir()
    scrape(server)
    assert server.stop() == 0
    assert not directory.exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_turned_off_are_a_404(start_server, workers):
    server = start_server("--workers", workers, env={"SCORESVC_METRICS": "off"})
    assert server.request("GET", "/metrics")[0] == 404
    assert re.search(METRICS_DIRECTORY, server.log_text()) is None


def test_logins_per_address_behind_a_trusted_proxy(start_server):
    server = start_server(
        "--workers", "2", "--login-limit", "0.01/2", "--trusted-proxies", "127.0.0.0/8"
    )

    def login_as(client: str) -> int:
        connection = server.connection()
        try:
            connection.request("GET", "/1/login", headers={"X-Forwarded-For": client})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    assert [login_as("198.51.100.1") for _ in range(6)] == [200, 200, 429, 429, 429, 429]
    assert login_as("198.51.100.2") == 200
    assert re.search(r"\] 198\.51\.100\.1 GET /1/login 429 ", server.log_text())
