"""Metrics: the service's Prometheus series, one view over every worker process of a machine."""

import os
import threading
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

# The text format generate_latest() writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Requests that matched no route (404, 405) are counted under this route.
UNMATCHED_ROUTE = "unmatched"
# From half a millisecond (a cached list, in process) to 10 s (a database that hangs).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# What counts one answer of a route and status: called with its latency in seconds.
_Answer = Callable[[float], None]


class Metrics:
    """The series the service keeps: counted in this process, exposed for the whole machine.

    With a directory, the series are prometheus_client's multi-process values: each process
    writes its own into files there, and any process's exposition() reads them all, so one
    scrape of any worker sees every worker (the supervisor gives its workers a fresh directory,
    and marks the gauges of a worker that died as gone). That mode is a process's, not an
    object's: prometheus_client chooses its value class per process. Without a directory,
    the series are this object's own, in memory. A process that answers no request (the
    applier) is made with serving=False: it is not counted in scoresvc_workers.

    Labels hold route patterns ('/<levelid>/score'), status codes and nothing a client wrote:
    no key, secret or user id, and a bounded number of series.
    """

    def __init__(self, directory: str | None = None, *, serving: bool = True) -> None:
        if directory is not None:
            _use_multiprocess_values(directory)
        # The multi-process mode has no *_created series: neither has this one, so that a
        # scrape shows the same series whatever the number of workers.
        disable_created_metrics()
        self._registry = CollectorRegistry()
        own = None if directory is not None else self._registry
        self._requests = Counter(
            "scoresvc_requests",
            "Requests answered, by route pattern and status code",
            ["route", "status"],
            registry=own,
        )
        self._latency = Histogram(
            "scoresvc_request_duration_seconds",
            "Time from a request's arrival at the app to its answer, by route pattern",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self._logins = Counter("scoresvc_logins", "Session keys issued", registry=own)
        self._scores = Counter(
            "scoresvc_scores_received",
            "Score posts accepted (answered 200), whether or not they beat the user's best",
            registry=own,
        )
        self._new_bests = Counter(
            "scoresvc_scores_new_best",
            "Scores that became their user's new best on their level",
            registry=own,
        )
        self._rejected = Counter(
            "scoresvc_scores_rejected",
            "Score posts a level's rules refused: below_min_score, above_max_score (422), "
            "server_only (403)",
            ["reason"],
            registry=own,
        )
        self._database_errors = Counter(
            "scoresvc_database_errors",
            "Requests answered 503 because the database could not answer",
            registry=own,
        )
        workers = Gauge(
            "scoresvc_workers",
            "Worker processes serving (1 for a service of one process)",
            registry=own,
            multiprocess_mode="livesum",
        )
        if serving:  # the applier serves nothing: it counts the new bests it applies alone
            workers.set(1)
        if directory is not None:
            multiprocess.MultiProcessCollector(self._registry, path=directory)
        self.logged_in = self._logins.inc
        self.score_received = self._scores.inc
        self.database_error = self._database_errors.inc
        # (route, status line): what counts an answer of theirs. Made once for each pair:
        # labels() costs more than the counting itself.
        self._per_answer: dict[tuple[str, str], _Answer] = {}
        self._lock = threading.Lock()
        # Taken for the three values an answer adds to (in memory): see _counting().
        self._answer_lock = threading.Lock()

    def request_answered(self, route: str, status: str, seconds: float) -> None:
        """Count one answer: route is the route's pattern, status the status line."""
        try:
            count = self._per_answer[route, status]
        except KeyError:
            count = self._answer_of(route, status)
        count(seconds)

    def new_bests(self, count: int) -> None:
        """Count scores that became new bests."""
        self._new_bests.inc(count)

    def score_rejected(self, reason: str) -> None:
        """Count a score post a level's rules refused, by reason (a few fixed words)."""
        self._rejected.labels(reason).inc()

    def exposition(self) -> bytes:
        """Every series, of every process sharing the directory, in Prometheus's text format."""
        return generate_latest(self._registry)

    def _answer_of(self, route: str, status: str) -> _Answer:
        with self._lock:
            count = self._per_answer.get((route, status))
            if count is None:
                count = self._counting(
                    self._requests.labels(route, status[:3]), self._latency.labels(route)
                )
                self._per_answer[route, status] = count
        return count

    def _counting(self, requests: Counter, latency: Histogram) -> _Answer:
        # An answer adds 1 to its counter, its latency to the histogram's sum and 1 to the
        # bucket it falls in: the three values themselves, reached once here, rather than
        # inc() and observe(), which check their arguments and walk the buckets each time and
        # take a lock per value. Nothing else writes these values (labels() of the same
        # series is only ever called here), so in memory one lock keeps all three; the values
        # of the multi-process mode take theirs (each writes to the process's file).
        # The bucket is the first whose bound is at least the latency, as observe() finds it.
        bounds = tuple(latency._upper_bounds)  # ends with +Inf: every latency has a bucket
        count: Any = requests._value
        total: Any = latency._sum
        buckets: list[Any] = list(latency._buckets)
        if type(count) is not values.MutexValue:  # the multi-process mode's (see __init__)

            def count_shared(seconds: float) -> None:
                count.inc(1.0)
                total.inc(seconds)
                buckets[bisect_left(bounds, seconds)].inc(1.0)

            return count_shared
        lock = self._answer_lock

        def count_here(seconds: float) -> None:
            bucket = buckets[bisect_left(bounds, seconds)]
            with lock:
                count._value += 1.0
                total._value += seconds
                bucket._value += 1.0

        return count_here


class NoMetrics:
    """Metrics turned off (SCORESVC_METRICS=off): nothing counted, and no /metrics."""

    def request_answered(self, route: str, status: str, seconds: float) -> None:
        pass

    def logged_in(self) -> None:
        pass

    def score_received(self) -> None:
        pass

    def new_bests(self, count: int) -> None:
        pass

    def score_rejected(self, reason: str) -> None:
        pass

    def database_error(self) -> None:
        pass


def _use_multiprocess_values(directory: str) -> None:
    # prometheus_client's documented switch is PROMETHEUS_MULTIPROC_DIR, read when it is first
    # imported; a worker learns its directory later, so it sets both the variable (where the
    # values' files go) and the value class the series made from now on use.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def mark_process_dead(pid: int, directory: str) -> None:
    """Drop a dead worker's live gauges (its counts stay: they happened)."""
    multiprocess.mark_process_dead(pid, directory)
