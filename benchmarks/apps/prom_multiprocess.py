"""The reference for scrape.py: prometheus_client's multiprocess mode, as users of a pre-fork server set it up.

Each worker process writes its metrics to files in $PROMETHEUS_MULTIPROC_DIR; the scrape
endpoint (`app`, served by uvicorn) merges every worker's files with MultiProcessCollector on
each request. The families mirror the request families of asgiscale's /metrics: the duration
histogram by method and status with the same buckets, requests in flight, requests started,
body bytes both ways, and one per-worker request count.

    PROMETHEUS_MULTIPROC_DIR=DIR python prom_multiprocess.py GET:200 POST:404 ...   # one worker's files
    PROMETHEUS_MULTIPROC_DIR=DIR uvicorn prom_multiprocess:app                      # the scrape endpoint
"""

from __future__ import annotations

import random
import sys

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app, multiprocess

# The OpenTelemetry HTTP buckets, as asgiscale uses them.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def _scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


app = make_asgi_app(_scrape_registry())


def record(kinds: list[tuple[str, int]], requests_each: int = 3) -> None:
    """What one worker's instrumentation leaves in its files after serving every kind of request."""
    labels = ["http_request_method", "http_response_status_code"]
    duration = Histogram(
        "http_server_request_duration_seconds", "Request duration.", labels, buckets=BUCKETS, registry=None
    )
    active = Gauge("http_server_active_requests", "In flight.", multiprocess_mode="livesum", registry=None)
    started = Counter("asgiscale_http_requests_started", "Requests started.", registry=None)
    received = Counter("asgiscale_http_request_body_bytes", "Request body bytes.", registry=None)
    sent = Counter("asgiscale_http_response_body_bytes", "Response body bytes.", registry=None)
    served = Gauge("asgiscale_worker_http_requests", "Per worker.", multiprocess_mode="all", registry=None)
    for method, status in kinds:
        child = duration.labels(method, str(status))
        for _ in range(requests_each):
            child.observe(random.uniform(0.0001, 0.003))
            started.inc()
            sent.inc(12)
            served.inc()
    received.inc(0)
    active.set(0)


if __name__ == "__main__":
    record([(kind.split(":")[0], int(kind.split(":")[1])) for kind in sys.argv[1:]])
