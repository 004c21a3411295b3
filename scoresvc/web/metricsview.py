"""GET /metrics: the service's series, for Prometheus to scrape."""

from contextlib import suppress
from wsgiref.types import WSGIEnvironment

from scoresvc.errors import DatabaseUnavailable
from scoresvc.metrics import CONTENT_TYPE, Metrics
from scoresvc.storage.repository import Repository
from scoresvc.web.responses import Response

_NO_STORE = (("Cache-Control", "no-store"),)


class MetricsView:
    """The metrics of every worker of this machine, in Prometheus's text format."""

    def __init__(self, metrics: Metrics, repository: Repository) -> None:
        self._metrics = metrics
        self._repository = repository

    def __call__(self, environ: WSGIEnvironment) -> Response:
        # Writes deferred (a memory database) are made first, so that the new bests they make
        # are counted in this scrape, as every score answered before it is. The metrics are
        # answered whether or not the database is: that is when they matter most.
        with suppress(DatabaseUnavailable):
            self._repository.finish_writes()
        return Response(self._metrics.exposition(), headers=_NO_STORE, content_type=CONTENT_TYPE)
