"""A Cloud Run service for a Config: the Knative `Service` `gcloud run services replace` takes.

`render` returns the service as a plain dict (no I/O). What makes it right:

* the port: `asgiscale run` listens on all interfaces on the one `containerPort` (8000,
  named `http1`); Cloud Run sends requests to that port and sets `$PORT` to it, so the
  command line and `$PORT` agree by construction;
* the concurrency: `containerConcurrency` is what the instance's workers admit together
  (the config's per-worker `max_concurrency` times the workers), so Cloud Run never sends
  an instance more than asgiscale would run at once; 80, Cloud Run's default, without it;
* probes on the serving port, the only one Cloud Run probes: a TCP startup probe within
  the config's `startup_timeout`, or, given the app's own health path, HTTP startup and
  liveness probes on it. The admin server stays on loopback;
* a drain that fits the 10 s Cloud Run leaves between SIGTERM and SIGKILL;
* with CPU throttled between requests, no heartbeat watchdog: a throttled event loop
  cannot beat on time, and healthy workers would be replaced;
* non-root through the image: Cloud Run does not take a `securityContext`, so the
  container runs as the image's user (`USER 10001` in `asgiscale deploy docker`'s image).

    >>> service = render(Config(app="main:app"), CloudRunOptions(image="europe-docker.pkg.dev/p/r/shop:1"))
    >>> service["spec"]["template"]["spec"]["containerConcurrency"]
    80
"""

from __future__ import annotations

import math
from typing import Any

from asgiscale.config import Config
from asgiscale.deploy.kubernetes import FIXED_WORKERS_ENV, serve_args
from asgiscale.deploy.options import APP_PORT, CLOUD_RUN_CONCURRENCY, CloudRunOptions

Object = dict[str, Any]
DEFAULT_CONCURRENCY = 80
# Seconds between SIGTERM and SIGKILL (cloud.google.com/run/docs/container-contract).
SHUTDOWN_GRACE = 10
# A startup probe's failureThreshold x periodSeconds may not exceed 600 s.
STARTUP_LIMIT = 600
STARTUP_PERIOD = 2


def render(config: Config, options: CloudRunOptions) -> Object:
    """The service for `config.app` under `options`."""
    if not config.app:
        raise ValueError("no app to deploy: give APP like 'main:app'")
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": options.name},
        "spec": {
            "template": {
                "metadata": {"annotations": revision_annotations(options)},
                "spec": {
                    "containerConcurrency": container_concurrency(config, options),
                    "timeoutSeconds": options.timeout,
                    "containers": [container(config, options)],
                },
            }
        },
    }


def revision_annotations(options: CloudRunOptions) -> dict[str, str]:
    return {
        "autoscaling.knative.dev/minScale": str(options.min_instances),
        "autoscaling.knative.dev/maxScale": str(options.max_instances),
        "run.googleapis.com/cpu-throttling": _bool(options.cpu_throttling),
        "run.googleapis.com/startup-cpu-boost": _bool(options.startup_cpu_boost),
        # Less than one CPU runs only in the first generation.
        "run.googleapis.com/execution-environment": "gen1" if options.fractional_cpu else "gen2",
    }


def container_concurrency(config: Config, options: CloudRunOptions) -> int:
    """Requests Cloud Run may send one instance at once: --concurrency, else what its workers admit."""
    if options.concurrency is not None:
        return options.concurrency
    if options.fractional_cpu:
        return 1
    if config.max_concurrency is None:
        return DEFAULT_CONCURRENCY
    total = config.max_concurrency * options.workers
    if total > CLOUD_RUN_CONCURRENCY[1]:
        raise ValueError(
            f"max_concurrency {config.max_concurrency} x {options.workers} worker(s) is {total} requests per "
            f"instance, above Cloud Run's {CLOUD_RUN_CONCURRENCY[1]}; pass --concurrency"
        )
    return total


def args(config: Config, options: CloudRunOptions) -> list[str]:
    """`asgiscale run` on the serving port with a fixed worker count (Cloud Run scales instances)."""
    drain = min(config.graceful_timeout, SHUTDOWN_GRACE - 1)
    command = [
        *serve_args(config, admin_host="127.0.0.1"),
        "--workers",
        str(options.workers),
        "--graceful-timeout",
        f"{drain:g}",
        "--shutdown-delay",
        "0",
    ]
    if options.cpu_throttling:
        command += ["--worker-timeout", "0"]
    return command


def container(config: Config, options: CloudRunOptions) -> Object:
    spec: Object = {
        "name": "app",
        "image": options.image,
        "command": ["asgiscale"],
        "args": args(config, options),
        "ports": [{"name": "http1", "containerPort": APP_PORT}],
        "env": [dict(variable) for variable in FIXED_WORKERS_ENV],
        "resources": {"limits": {"cpu": options.cpu_limit, "memory": options.memory_limit}},
    }
    spec.update(probes(config, options))
    return spec


def probes(config: Config, options: CloudRunOptions) -> Object:
    budget = min(math.ceil(config.startup_timeout or 120), STARTUP_LIMIT)
    startup: Object = {
        "periodSeconds": STARTUP_PERIOD,
        "timeoutSeconds": 1,
        "failureThreshold": max(1, math.ceil(budget / STARTUP_PERIOD)),
    }
    if not options.health_path:
        return {"startupProbe": {"tcpSocket": {"port": APP_PORT}, **startup}}
    return {
        "startupProbe": {**_http_get(options), **startup},
        "livenessProbe": {**_http_get(options), "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
    }


def _http_get(options: CloudRunOptions) -> Object:
    return {"httpGet": {"path": options.health_path, "port": APP_PORT}}


def _bool(value: bool) -> str:
    return "true" if value else "false"
