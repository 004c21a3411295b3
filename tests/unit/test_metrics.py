"""The request series counted by Metrics: the values prometheus_client's own calls would give."""

import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from scoresvc.metrics import LATENCY_BUCKETS, Metrics

# On a bound, just past one, past the last, and nothing at all.
LATENCIES = [0.0, 0.0005, 0.00050001, 0.0003, 0.01, 0.7, 10.0, 11.5, 0.0025]
# Sums that come out the same in any order (the processes' sums are added up last): binary
# fractions, four of them on bounds.
EXACT_LATENCIES = [0.0, 0.25, 0.5, 2.5, 10.0, 11.5, 2**-10, 2**-12]
ANSWERS = [
    ("/<levelid>/score", "200 OK"),
    ("/<userid>/login", "200 OK"),
    ("unmatched", "404 Not Found"),
]


def reference_exposition(answers: list[tuple[str, str, float]]) -> str:
    registry = CollectorRegistry()
    requests = Counter(
        "scoresvc_requests",
        "Requests answered, by route pattern and status code",
        ["route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "scoresvc_request_duration_seconds",
        "Time from a request's arrival at the app to its answer, by route pattern",
        ["route"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    for route, status, seconds in answers:
        requests.labels(route, status[:3]).inc()
        latency.labels(route).observe(seconds)
    return generate_latest(registry).decode()


def request_lines(exposition: str) -> list[str]:
    return [
        line
        for line in exposition.splitlines()
        if line.startswith(("scoresvc_requests", "scoresvc_request_duration"))
    ]


def every_answer(latencies: list[float] = LATENCIES) -> list[tuple[str, str, float]]:
    return [(route, status, seconds) for seconds in latencies for route, status in ANSWERS]


def test_answers_are_counted_as_inc_and_observe_count_them():
    metrics = Metrics()
    for route, status, seconds in every_answer():
        metrics.request_answered(route, status, seconds)

    counted = request_lines(metrics.exposition().decode())
    assert counted == request_lines(reference_exposition(every_answer()))
    assert 'scoresvc_request_duration_seconds_bucket{le="0.0005",route="unmatched"} 3.0' in counted


@pytest.mark.parametrize("latency", [0.0005, 0.00050001, 10.0, 10.5])
def test_an_answer_falls_in_the_bucket_observe_puts_it_in(latency):
    metrics = Metrics()
    metrics.request_answered("/healthz", "200 OK", latency)

    expected = reference_exposition([("/healthz", "200 OK", latency)])
    assert request_lines(metrics.exposition().decode()) == request_lines(expected)


def test_answers_counted_by_several_processes_add_up_as_inc_and_observe_would(tmp_path):
    # The multi-process mode is a process's: each child counts half the answers in one
    # directory, as workers do, and a third reads them all.
    count = textwrap.dedent(
        f"""
        import sys
        from scoresvc.metrics import Metrics
        metrics = Metrics({str(tmp_path)!r})
        for route, status, seconds in {every_answer(EXACT_LATENCIES)!r}[int(sys.argv[1])::2]:
            metrics.request_answered(route, status, seconds)
        if sys.argv[1] == "1":
            sys.stdout.write(metrics.exposition().decode())
        """
    )
    subprocess.run([sys.executable, "-c", count, "0"], check=True)
    exposition = subprocess.run(
        [sys.executable, "-c", count, "1"], check=True, capture_output=True, text=True
    ).stdout

    expected = request_lines(reference_exposition(every_answer(EXACT_LATENCIES)))
    # The multi-process collector writes the series in an order of its own.
    assert sorted(request_lines(exposition)) == sorted(expected)
