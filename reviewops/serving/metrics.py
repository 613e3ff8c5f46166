"""The API's Prometheus metrics (a registry per app) and the latency window of /v1/predict."""

from __future__ import annotations

from reviewops.serving.models import LoadedModel
from reviewops.serving.runtime import LatencyWindow

PREDICT_ROUTE = "/v1/predict"


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.model = Gauge("reviewops_api_model_info", "The model being served",
                           ["name", "version", "backend"], registry=registry)
        self.predict_latency = LatencyWindow()  # for the monitoring page's percentiles

    def observe_request(self, scope: dict, status: int, elapsed: float) -> None:
        """Count a finished request (the `Observe` middleware calls this)."""
        path = getattr(scope.get("route"), "path", "unmatched")
        self.requests.labels(scope.get("method", ""), path, str(status)).inc()
        self.latency.labels(path).observe(elapsed)
        if path == PREDICT_ROUTE:
            self.predict_latency.add(elapsed)

    def exposition(self, served: LoadedModel | None) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text exposition, naming the model served now."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.model.clear()
        if served is not None:
            self.model.labels(served.name, served.version, served.backend).set(1)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
