"""The API's Prometheus metrics (a registry per app) and the log of answered predict requests.

The monitoring page's traffic and latency come from the review store, not from these counters: every
answered /v1/predict request is written (off the request path, like the prediction log) with its latency
to `api_requests`, so the numbers are the same whichever uvicorn worker answered, survive restarts and
can be bucketed by time. A per-process counter or latency window answered only for the worker that
happened to serve GET /v1/monitoring, and started from zero at every restart; Prometheus counters give
only totals since the server started, and the stack runs no Prometheus server to turn them into
percentiles over time.

/metrics itself is for a Prometheus scraper. Under `reviewops serve --workers N` the server sets
`PROMETHEUS_MULTIPROC_DIR` (`serving.server.run`): each worker's values go to files there and /metrics
sums every worker's (`MultiProcessCollector`), so a scrape does not depend on which worker it reached.
"""

from __future__ import annotations

import os

from reviewops.serving.models import LoadedModel
from reviewops.store.models import utcnow

PREDICT_ROUTE = "/v1/predict"
LOGGED_ROUTES = frozenset({PREDICT_ROUTE})  # requests written to the store, for the monitoring page
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's switch to multiprocess mode


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry = CollectorRegistry()
        self.requests = Counter("reviewops_api_requests", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("reviewops_api_request_seconds", "Request latency", ["route"],
                                 registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.batch = Histogram("reviewops_api_batch_size", "Texts per model call", registry=registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000))
        self.predictions = Counter("reviewops_api_predictions", "Predictions served", ["label"],
                                   registry=registry)
        self.request_log = None  # a PredictionLog of ApiRequest rows, while the app runs (start_log)

    def start_log(self, session_factory) -> None:
        """Write answered requests of `LOGGED_ROUTES` to the store from now on (the app's lifespan)."""
        from reviewops.serving.runtime import PredictionLog
        from reviewops.store.models import ApiRequest

        self.request_log = PredictionLog(session_factory, table=ApiRequest)

    def close(self) -> None:
        """Write what is queued and stop the request log."""
        if self.request_log is not None:
            self.request_log.close()
            self.request_log = None

    def observe_request(self, scope: dict, status: int, elapsed: float) -> None:
        """Count a finished request (the `Observe` middleware calls this)."""
        path = getattr(scope.get("route"), "path", "unmatched")
        self.requests.labels(scope.get("method", ""), path, str(status)).inc()
        self.latency.labels(path).observe(elapsed)
        if path in LOGGED_ROUTES and self.request_log is not None:
            self.request_log.add([{"route": path, "status": status, "latency_ms": elapsed * 1000,
                                   "created_at": utcnow()}])

    def exposition(self, served: LoadedModel | None) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text exposition, naming the model served now; with
        `PROMETHEUS_MULTIPROC_DIR` set, the counts of every worker of the server."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.core import GaugeMetricFamily

        info = GaugeMetricFamily("reviewops_api_model_info", "The model being served",
                                 labels=["name", "version", "backend"])
        if served is not None:  # this worker's model (a gauge in the files would outlive a model swap)
            info.add_metric([served.name, served.version, served.backend], 1)
        model = CollectorRegistry()
        model.register(_Collected([info]))
        return generate_latest(_counts(self.registry)) + generate_latest(model), CONTENT_TYPE_LATEST


class _Collected:
    """A collector of ready metric families."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return self.families


def _counts(registry):
    """The registry to expose: the app's own, or in multiprocess mode one summing every worker's files."""
    if not os.environ.get(MULTIPROC_ENV):
        return registry
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    merged = CollectorRegistry()
    MultiProcessCollector(merged)
    return merged
