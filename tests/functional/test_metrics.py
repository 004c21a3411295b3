"""GET /metrics: the Prometheus text, parsed, after traffic whose counts the test knows."""

from prometheus_client.parser import text_string_to_metric_families
from webtest import TestApp

from scoresvc import create_app
from scoresvc.settings import Settings
from scoresvc.startup import open_ready_database
from tests.functional.conftest import login, post_score

SCORE = "/<levelid>/score"
LOGIN = "/<userid>/login"
LIST = "/<levelid>/highscorelist"


def scrape(client: TestApp) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: {(name, sorted labels): value}."""
    response = client.get("/metrics", status=200)
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests(samples: dict, route: str, status: str) -> float:
    return samples.get(("scoresvc_requests_total", (("route", route), ("status", status))), 0)


def requests_timed(samples: dict, route: str) -> float:
    return samples.get(("scoresvc_request_duration_seconds_count", (("route", route),)), 0)


def counter(samples: dict, name: str) -> float:
    return samples[(name, ())]


def test_the_counts_follow_known_traffic(make_client):
    client = make_client()
    first = scrape(client)
    assert counter(first, "scoresvc_workers") == 1
    assert counter(first, "scoresvc_logins_total") == 0
    key = login(client, 4711)
    other = login(client, 131)
    post_score(client, 2, key, "1500")  # a new best
    post_score(client, 2, key, "1400")  # not: lower
    post_score(client, 2, key, "1500")  # not: equal
    post_score(client, 2, other, "1220")  # a new best
    post_score(client, 3, key, "1")  # a new best, on another level
    post_score(client, 2, "forged", "1", status=401)
    post_score(client, 2, key, "x", status=400)
    client.get("/2/highscorelist", status=200)
    client.head("/2/highscorelist", status=200)
    client.get("/nowhere/at/all", status=404)
    client.post("/1/login", status=405)

    samples = scrape(client)
    assert requests(samples, LOGIN, "200") == 2
    assert requests(samples, SCORE, "200") == 5
    assert requests(samples, SCORE, "401") == 1
    assert requests(samples, SCORE, "400") == 1
    assert requests(samples, LIST, "200") == 2
    assert requests(samples, "unmatched", "404") == 1
    assert requests(samples, "unmatched", "405") == 1
    assert requests(samples, "/metrics", "200") == 1  # the first scrape; this one is counting
    assert requests_timed(samples, SCORE) == 7
    assert requests_timed(samples, LOGIN) == 2
    assert (
        samples[("scoresvc_request_duration_seconds_bucket", (("le", "+Inf"), ("route", SCORE)))]
        == 7
    )
    assert counter(samples, "scoresvc_logins_total") == 2
    assert counter(samples, "scoresvc_scores_received_total") == 5
    assert counter(samples, "scoresvc_scores_new_best_total") == 3
    assert counter(samples, "scoresvc_database_errors_total") == 0
    assert counter(samples, "scoresvc_workers") == 1


def test_the_latency_histogram_is_cumulative_and_sums_the_times(make_client):
    client = make_client()
    for _ in range(3):
        client.get("/5/highscorelist", status=200)
    samples = scrape(client)
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "scoresvc_request_duration_seconds_bucket" and ("route", LIST) in labels
    )
    counts = [value for _, value in buckets]
    assert counts == sorted(counts) and counts[-1] == 3
    total = samples[("scoresvc_request_duration_seconds_sum", (("route", LIST),))]
    assert 0 < total < 3


def test_no_key_user_id_or_path_of_a_client_appears_in_the_metrics(make_client):
    client = make_client(secret="s" * 32)
    key = login(client, 987654321)
    post_score(client, 123456789, key, "2147483647")
    client.get(f"/{key}/login", status=400)
    client.get("/123456789/rank/987654321", status=200)
    client.get(f"/1/score?sessionkey={key}", status=405)
    client.get("/wp-admin/setup-config.php", status=404)
    text = client.get("/metrics", status=200).text
    for secret in (key, "987654321", "123456789", "wp-admin", "s" * 32):
        assert secret not in text
    routes = {
        labels["route"]
        for family in text_string_to_metric_families(text)
        for labels in (sample.labels for sample in family.samples)
        if "route" in labels
    }
    assert routes == {LOGIN, SCORE, "/<levelid>/rank/<userid>", "unmatched"}


def test_metrics_turned_off_are_a_404_and_count_nothing(make_client):
    client = make_client(metrics=False)
    client.get("/metrics", status=404)
    client.head("/metrics", status=404)


def test_metrics_are_get_only(make_client):
    client = make_client()
    response = client.post("/metrics", "", status=405)
    assert response.headers["Allow"] == "GET, HEAD"
    assert client.head("/metrics", status=200).body == b""


def test_a_scrape_counts_every_new_best_answered_before_it(make_client):
    # In memory, writes are made a few ms after their 200: the scrape makes them first.
    client = make_client()
    keys = [login(client, user) for user in range(50)]
    for user, key in enumerate(keys):
        post_score(client, 9, key, str(user))
    assert counter(scrape(client), "scoresvc_scores_new_best_total") == 50


def test_requests_the_database_cannot_answer_are_counted(clock, tmp_path):
    database = open_ready_database(Settings(database_url=f"sqlite:///{tmp_path}/scores.db"))
    app = create_app(Settings(), database=database, clock=clock)
    client = TestApp(app, lint=True)
    key = login(client, 1)
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE best_scores")
    client.get("/1/highscorelist", status=503)
    # A post is answered once it is in the write journal; once the database has failed to
    # take it (the health check tries), later posts are refused.
    post_score(client, 1, key, "10")
    client.get("/healthz", status=503)
    post_score(client, 1, key, "20", status=503)
    samples = scrape(client)  # answered, though the database is not
    assert counter(samples, "scoresvc_database_errors_total") == 3
    assert requests(samples, SCORE, "503") == 1
    assert requests(samples, SCORE, "200") == 1
    app.close()


def test_posts_a_levels_rules_refuse_are_counted_by_reason(make_client):
    token = "t" * 32
    client = make_client(admin_token=token, writer_token="w" * 32)
    admin = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    client.put("/admin/levels/3/rules", '{"min_score": 10, "max_score": 20}', headers=admin)
    client.put("/admin/levels/4/rules", '{"writes": "server"}', headers=admin)
    key = login(client, 1)
    post_score(client, 3, key, "9", status=422)
    post_score(client, 3, key, "21", status=422)
    post_score(client, 3, key, "22", status=422)
    post_score(client, 4, key, "5", status=403)
    post_score(client, 3, key, "15")
    samples = scrape(client)
    rejected = "scoresvc_scores_rejected_total"
    assert samples[(rejected, (("reason", "below_min_score"),))] == 1
    assert samples[(rejected, (("reason", "above_max_score"),))] == 2
    assert samples[(rejected, (("reason", "server_only"),))] == 1
    assert counter(samples, "scoresvc_scores_received_total") == 1
