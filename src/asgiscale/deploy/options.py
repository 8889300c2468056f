"""What `asgiscale deploy` needs beyond the Config: image, namespace, sizes, cluster facts.

>>> options = DeployOptions(image="registry.example/shop:1.4.2", namespace="shop")
>>> options.name
'shop'
"""

from __future__ import annotations

import dataclasses
import re

from asgiscale.scaling import ScaleError

AUTOSCALERS = ("hpa", "keda", "knative")
# Kubernetes minor versions the manifests are written for (and validated against in the tests).
KUBERNETES_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33")
DEFAULT_KUBERNETES = "1.31"
APP_PORT = 8000
ADMIN_PORT = 9000
UID = 10001  # non-root, above the range of system users (checkov CKV_K8S_40 asks for > 10000)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")
_MEMORY = re.compile(r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$")


@dataclasses.dataclass(frozen=True)
class DeployOptions:
    """Settings of the rendered manifests; every field has a safe default except the image."""

    image: str = ""
    namespace: str = ""
    app_name: str = ""  # default: the image's repository name
    kubernetes_version: str = DEFAULT_KUBERNETES
    autoscaler: str = "hpa"
    min_replicas: int | None = None  # default: the config's min_workers (or 2)
    max_replicas: int | None = None  # default: the config's max_workers (or 10)
    workers: int = 1  # workers per pod
    cpu_request: str = "500m"
    cpu_limit: str = "1"
    memory_request: str = "256Mi"
    memory_limit: str = "512Mi"
    pre_stop: int = 5  # seconds the pod keeps serving while the endpoints forget it
    service_monitor: bool = False
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"  # for the KEDA trigger
    monitoring_namespace: str = "monitoring"  # who may scrape the admin port

    def __post_init__(self) -> None:
        if self.autoscaler not in AUTOSCALERS:
            raise ScaleError(f"--autoscaler must be one of {', '.join(AUTOSCALERS)}, got {self.autoscaler!r}")
        if self.kubernetes_version not in KUBERNETES_VERSIONS:
            raise ScaleError(
                f"--kubernetes-version must be one of {', '.join(KUBERNETES_VERSIONS)}, got {self.kubernetes_version!r}"
            )
        for label, value in (("--namespace", self.namespace), ("--name", self.app_name)):
            if value and not _DNS_LABEL.match(value):
                raise ScaleError(f"{label} {value!r} is not a DNS label (lower-case letters, digits, '-'; 63 at most)")
        if not self.name:
            raise ScaleError("give --image (like registry.example/shop:1.0) or --name, so the objects can be named")
        for label, value, pattern in (
            ("--cpu-request", self.cpu_request, _CPU),
            ("--cpu-limit", self.cpu_limit, _CPU),
            ("--memory-request", self.memory_request, _MEMORY),
            ("--memory-limit", self.memory_limit, _MEMORY),
        ):
            if not pattern.match(value):
                raise ScaleError(f"{label} {value!r} is not a Kubernetes quantity (like 500m or 1 for CPU, 256Mi)")
        if self.workers < 1 or self.pre_stop < 0:
            raise ScaleError("--workers-per-pod must be 1 or more and --pre-stop 0 or more seconds")
        if cpu_cores(self.cpu_request) > cpu_cores(self.cpu_limit):
            raise ScaleError(f"--cpu-request {self.cpu_request} is above --cpu-limit {self.cpu_limit}; raise the limit")

    @property
    def name(self) -> str:
        """The objects' name: --name, else the last part of the image's repository."""
        if self.app_name:
            return self.app_name
        repository = self.image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
        cleaned = re.sub(r"[^a-z0-9-]+", "-", repository.lower()).strip("-")[:63]
        return cleaned

    @property
    def image_digest_pinned(self) -> bool:
        return "@sha256:" in self.image


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
