"""Kubernetes manifests for a Config: right by construction, from the same scaling policy.

`render` returns file name -> objects (plain dicts, no I/O). What makes them right:

* probes on the admin server: startup and readiness on `/readyz`, liveness on `/healthz`;
* a `preStop` pause before SIGTERM (the endpoints and load balancers forget the pod
  first), then asgiscale's own drain, inside a `terminationGracePeriodSeconds` longer than
  both together;
* rolling updates that never take a ready pod away first (`maxUnavailable: 0`);
* no `spec.replicas` when an autoscaler owns the count, and the HPA's `behavior` and
  metrics taken from the config's `scale` section: the policy `asgiscale run` executes;
* the restricted Pod Security profile: non-root, no privilege escalation, no
  capabilities, RuntimeDefault seccomp, read-only root with an `emptyDir` on /tmp, no
  service-account token.

    >>> files = render(Config(app="main:app", max_workers=8), DeployOptions(image="r.example/shop:1.0"))
    >>> sorted(files)  # doctest: +NORMALIZE_WHITESPACE
    ['deployment.yaml', 'hpa.yaml', 'kustomization.yaml', 'networkpolicy.yaml', 'pdb.yaml', 'service.yaml']
"""

from __future__ import annotations

import math
from typing import Any

from asgiscale import __version__
from asgiscale.config import Config
from asgiscale.deploy.options import ADMIN_PORT, APP_PORT, UID, DeployOptions, cpu_cores
from asgiscale.scaling import Target, capacity, hpa_spec, quantity

Object = dict[str, Any]
# Seconds beyond preStop + drain before the kubelet kills the container.
GRACE_MARGIN = 5
KEDA_QUERIES = {
    "concurrency": 'sum(http_server_active_requests{{namespace="{ns}",service="{name}"}})',
    "rps": 'sum(rate(http_server_request_duration_seconds_count{{namespace="{ns}",service="{name}"}}[1m]))',
}


def render(config: Config, options: DeployOptions) -> dict[str, list[Object]]:
    """The manifests for `config.app` under `options`, as file name -> objects."""
    files: dict[str, list[Object]] = {}
    if options.autoscaler == "knative":
        files["knative-service.yaml"] = [knative_service(config, options)]
    else:
        files["deployment.yaml"] = [deployment(config, options)]
        files["service.yaml"] = [service(options)]
        if options.autoscaler == "keda":
            files["scaledobject.yaml"] = [scaled_object(config, options)]
        else:
            files["hpa.yaml"] = [horizontal_pod_autoscaler(config, options)]
        files["pdb.yaml"] = [pod_disruption_budget(options)]
        files["networkpolicy.yaml"] = [network_policy(options)]
        if options.service_monitor:
            files["servicemonitor.yaml"] = [service_monitor(options)]
    files["kustomization.yaml"] = [kustomization(options, sorted(files))]
    return files


# --- shared pieces -------------------------------------------------------------------------


def labels(options: DeployOptions) -> dict[str, str]:
    """The recommended app.kubernetes.io labels; the first two select the pods."""
    return {
        "app.kubernetes.io/name": options.name,
        "app.kubernetes.io/instance": options.name,
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/managed-by": "asgiscale",
    }


def selector(options: DeployOptions) -> dict[str, str]:
    return {k: v for k, v in labels(options).items() if k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def metadata(options: DeployOptions, name: str | None = None) -> Object:
    meta: Object = {"name": name or options.name, "labels": labels(options)}
    if options.namespace:
        meta["namespace"] = options.namespace
    return meta


def replica_bounds(config: Config, options: DeployOptions) -> tuple[int, int]:
    """--min/--max-replicas, else the config's worker bounds, else the pods a measured peak needs
    (`asgiscale bench --peak-rps … --write-config`), else 2 to 10."""
    peak = capacity(config.scale).get("replicas_at_peak")
    measured = max(2, math.ceil(peak / options.workers)) if peak else None
    low = options.min_replicas or (config.min_workers if config.autoscale else None) or 2
    high = options.max_replicas or (config.max_workers if config.autoscale else None) or measured or 10
    if low > high:
        raise ValueError(f"--min-replicas {low} is above --max-replicas {high}; lower one of them")
    return low, high


def pod_targets(config: Config, options: DeployOptions) -> list[Target]:
    """The config's per-worker targets as per-pod ones, so a pod decides as its workers would.

    CPU: the runtime measures % of one core per worker; the HPA measures % of the pod's CPU
    request. Requests in flight and request rates add up over the pod's workers.
    """
    targets = []
    for target in config.targets:
        if target.metric == "cpu":
            percent = target.value * options.workers / cpu_cores(options.cpu_request)
            targets.append(Target("cpu", float(max(1, round(percent)))))
        else:
            targets.append(Target(target.metric, target.value * options.workers))
    return targets


def serve_args(config: Config, admin_host: str = "0.0.0.0", *, port: bool = True) -> list[str]:
    """`asgiscale run` in a container: the app and the addresses; the image's asgiscale.toml
    (or `[tool.asgiscale]`) and `ASGISCALE_*` variables give the rest. Without `port`, the
    port is the default one unless the platform names another in `$PORT`."""
    return [
        "run",
        config.app or "",
        "--host",
        "0.0.0.0",
        *(("--port", str(APP_PORT)) if port else ()),
        "--admin",
        f"{admin_host}:{ADMIN_PORT}",
    ]


def pod_args(config: Config, options: DeployOptions, admin_host: str = "0.0.0.0") -> list[str]:
    """In a pod the drain time is fixed here, since the grace period is computed from it, and
    the worker count is fixed: the cluster's autoscaler scales pods, not workers."""
    return [
        *serve_args(config, admin_host),
        "--workers",
        str(options.workers),
        "--graceful-timeout",
        f"{config.graceful_timeout:g}",
    ]


# A self-scaling config file in the image would clash with the fixed --workers of a pod.
FIXED_WORKERS_ENV = [
    {"name": "ASGISCALE_MIN_WORKERS", "value": "none"},
    {"name": "ASGISCALE_MAX_WORKERS", "value": "none"},
]


def grace_period(config: Config, options: DeployOptions) -> int:
    return options.pre_stop + math.ceil(config.graceful_timeout) + GRACE_MARGIN


def pre_stop(options: DeployOptions) -> Object:
    # The kubelet's own sleep action (1.30+) needs no `sleep` binary in the image.
    if tuple(int(p) for p in options.kubernetes_version.split(".")) >= (1, 30):
        return {"sleep": {"seconds": options.pre_stop}}
    return {"exec": {"command": ["sleep", str(options.pre_stop)]}}


def container(config: Config, options: DeployOptions, *, admin: bool = True) -> Object:
    probe_port = "admin"
    spec: Object = {
        "name": "app",
        "image": options.image,
        "imagePullPolicy": "Always",
        "command": ["asgiscale"],
        "args": pod_args(config, options, "0.0.0.0" if admin else "127.0.0.1"),
        "env": FIXED_WORKERS_ENV,
        "ports": [{"name": "http", "containerPort": APP_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": options.cpu_request, "memory": options.memory_request},
            "limits": {"cpu": options.cpu_limit, "memory": options.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if admin:
        spec["ports"].append({"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"})
        startup_checks = max(1, math.ceil(config.startup_timeout or 120))
        spec["startupProbe"] = _probe("/readyz", probe_port, period=1, failures=startup_checks)
        spec["readinessProbe"] = _probe("/readyz", probe_port, period=2, failures=1)
        spec["livenessProbe"] = _probe("/healthz", probe_port, period=10, failures=3)
    if options.pre_stop:
        spec["lifecycle"] = {"preStop": pre_stop(options)}
    return spec


def _probe(path: str, port: str, *, period: int, failures: int) -> Object:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def pod_spec(config: Config, options: DeployOptions) -> Object:
    return {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": grace_period(config, options),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(options)},
            }
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
        ],
        "containers": [container(config, options)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }


# --- objects ---------------------------------------------------------------------------------


def deployment(config: Config, options: DeployOptions) -> Object:
    spec: Object = {
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector(options)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "template": {
            "metadata": {"labels": labels(options), "annotations": {"asgiscale.dev/version": __version__}},
            "spec": pod_spec(config, options),
        },
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(options), "spec": spec}


def service(options: DeployOptions) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(options),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(options),
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "admin", "port": ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"},
            ],
        },
    }


def horizontal_pod_autoscaler(config: Config, options: DeployOptions) -> Object:
    low, high = replica_bounds(config, options)
    spec = hpa_spec(min_replicas=low, max_replicas=high, targets=pod_targets(config, options), table=config.scale or {})
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": options.name}, **spec}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(options),
        "spec": spec,
    }


def pod_disruption_budget(options: DeployOptions) -> Object:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(options),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(options)}},
    }


def network_policy(options: DeployOptions) -> Object:
    """Anyone may reach the app's port; only the monitoring namespace the admin port (the
    kubelet's probes come from the node and are not filtered by NetworkPolicy)."""
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": options.monitoring_namespace}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(options),
        "spec": {
            "podSelector": {"matchLabels": selector(options)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"port": "http", "protocol": "TCP"}]},
                {"from": [monitoring], "ports": [{"port": "admin", "protocol": "TCP"}]},
            ],
        },
    }


def service_monitor(options: DeployOptions) -> Object:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(options),
        "spec": {
            "selector": {"matchLabels": selector(options)},
            "endpoints": [{"port": "admin", "path": "/metrics", "interval": "15s"}],
        },
    }


def scaled_object(config: Config, options: DeployOptions) -> Object:
    """KEDA in place of the HPA: a Prometheus trigger on in-flight requests or request rate,
    with the same bounds and the same `behavior` handed to the HPA KEDA creates."""
    low, high = replica_bounds(config, options)
    targets = [t for t in pod_targets(config, options) if t.metric in KEDA_QUERIES]
    if not targets:
        raise ValueError("the keda autoscaler needs a concurrency=N or rps=N scale target (KEDA reads Prometheus)")
    namespace = options.namespace or "default"
    triggers = [
        {
            "type": "prometheus",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": options.prometheus_url,
                "query": KEDA_QUERIES[t.metric].format(ns=namespace, name=options.name),
                "threshold": quantity(t.value),
            },
        }
        for t in targets
    ]
    spec: Object = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": options.name},
        "pollingInterval": 15,
        "minReplicaCount": low,
        "maxReplicaCount": high,
        "triggers": triggers,
    }
    behavior = (config.scale or {}).get("behavior")
    if behavior:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": dict(behavior)}}
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": metadata(options), "spec": spec}


def knative_service(config: Config, options: DeployOptions) -> Object:
    """Knative Serving in place of Deployment, Service and HPA: the KPA with the same target.

    Knative routes one port per container and probes it itself, so the admin server stays
    on loopback and the container has no probes of its own; its queue-proxy drains the pod,
    so there is no preStop hook or grace period either (Knative's schema allows neither)."""
    low, high = replica_bounds(config, options)
    target = next((t for t in pod_targets(config, options) if t.metric in ("concurrency", "rps")), None)
    annotations = {
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/min-scale": str(low),
        "autoscaling.knative.dev/max-scale": str(high),
    }
    if target is not None:
        annotations["autoscaling.knative.dev/metric"] = target.metric
        annotations["autoscaling.knative.dev/target"] = f"{target.value:g}"
    for key, value in ((config.scale or {}).get("kpa") or {}).items():
        annotations[f"autoscaling.knative.dev/{key}"] = str(value)
    spec = pod_spec(config, options)
    app = container(config, options, admin=False)
    app["ports"] = [{"name": "http1", "containerPort": APP_PORT}]
    app.pop("lifecycle", None)
    spec = {k: v for k, v in spec.items() if k not in ("topologySpreadConstraints", "terminationGracePeriodSeconds")}
    spec["containers"] = [app]
    spec["timeoutSeconds"] = 300
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": metadata(options),
        "spec": {"template": {"metadata": {"labels": labels(options), "annotations": annotations}, "spec": spec}},
    }


def kustomization(options: DeployOptions, resources: list[str]) -> Object:
    kustomization: Object = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [name for name in resources if name != "kustomization.yaml"],
    }
    if options.namespace:
        kustomization["namespace"] = options.namespace
    return kustomization
