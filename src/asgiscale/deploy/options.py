"""What `asgiscale deploy` needs beyond the Config: image, namespace, sizes, cluster and
serverless facts, one dataclass per kind of platform, each checked against its platform's limits.

>>> options = DeployOptions(image="registry.example/shop:1.4.2", namespace="shop")
>>> options.name
'shop'
>>> LambdaOptions(memory=100)
Traceback (most recent call last):
...
asgiscale.scaling.ScaleError: --memory 100 is below Lambda's 128 MB minimum
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
        return object_name(self.image, self.app_name)

    @property
    def image_digest_pinned(self) -> bool:
        return "@sha256:" in self.image


@dataclasses.dataclass(frozen=True)
class LambdaOptions:
    """Settings of the AWS SAM template, within Lambda's limits; all have defaults.

    >>> LambdaOptions(memory=1024, reserved_concurrency=20, provisioned_concurrency=5).memory
    1024
    """

    memory: int = 512  # MB; Lambda gives CPU in proportion
    timeout: int = 30  # seconds per invocation
    architecture: str = "x86_64"
    reserved_concurrency: int | None = None  # the most environments at once, set aside for this function
    provisioned_concurrency: int | None = None  # environments kept initialised, on the alias `live`
    code_uri: str = "."  # the app's directory (with requirements.txt), relative to the template

    def __post_init__(self) -> None:
        _within("--memory", self.memory, LAMBDA_MEMORY, "Lambda", " MB")
        _within("--timeout", self.timeout, LAMBDA_TIMEOUT, "Lambda", " s")
        if self.architecture not in ARCHITECTURES:
            raise ScaleError(f"--architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 1:
            raise ScaleError(
                f"--reserved-concurrency {self.reserved_concurrency} would refuse every invocation; give 1 or more"
            )
        if self.provisioned_concurrency is not None and self.provisioned_concurrency < 1:
            raise ScaleError(f"--provisioned-concurrency must be 1 or more, got {self.provisioned_concurrency}")
        reserved, provisioned = self.reserved_concurrency, self.provisioned_concurrency
        if reserved is not None and provisioned is not None and provisioned > reserved:
            raise ScaleError(
                f"--provisioned-concurrency {provisioned} is above --reserved-concurrency {reserved}: Lambda keeps "
                "provisioned environments within the reserved ones; lower it or raise the reservation"
            )


@dataclasses.dataclass(frozen=True)
class CloudRunOptions:
    """Settings of the Cloud Run service, within Cloud Run's limits; the image is required.

    >>> CloudRunOptions(image="europe-docker.pkg.dev/p/r/shop:1.0", cpu_limit="2", memory_limit="2Gi").workers
    2
    """

    image: str = ""
    app_name: str = ""  # default: the image's repository name
    min_instances: int = 0  # 0: scale to zero when idle
    max_instances: int = 100  # Cloud Run's own default
    concurrency: int | None = None  # default: the config's max_concurrency x workers, else 80
    workers_per_instance: int | None = None  # default: one per whole CPU
    cpu_limit: str = "1"
    memory_limit: str = "512Mi"
    timeout: int = 300  # seconds a request may take
    cpu_throttling: bool = True  # CPU only while requests are in flight (request-based billing)
    startup_cpu_boost: bool = True
    health_path: str = ""  # the app's own health endpoint, probed on the serving port

    def __post_init__(self) -> None:
        if not self.image:
            raise ScaleError("give --image (like europe-docker.pkg.dev/PROJECT/REPO/shop:1.0): Cloud Run runs an image")
        if self.app_name and not _DNS_LABEL.match(self.app_name):
            raise ScaleError(f"--name {self.app_name!r} is not a DNS label (lower-case letters, digits, '-')")
        if not self.name:
            raise ScaleError(f"cannot name the service after --image {self.image!r}; give --name")
        if self.min_instances < 0 or self.max_instances < 1:
            raise ScaleError("--min-instances must be 0 or more and --max-instances 1 or more")
        if self.min_instances > self.max_instances:
            raise ScaleError(
                f"--min-instances {self.min_instances} is above --max-instances {self.max_instances}; lower one"
            )
        if self.concurrency is not None:
            _within("--concurrency", self.concurrency, CLOUD_RUN_CONCURRENCY, "Cloud Run", "")
        if self.workers_per_instance is not None and self.workers_per_instance < 1:
            raise ScaleError(f"--workers-per-instance must be 1 or more, got {self.workers_per_instance}")
        _within("--timeout", self.timeout, CLOUD_RUN_TIMEOUT, "Cloud Run", " s")
        if self.health_path and not self.health_path.startswith("/"):
            raise ScaleError(f"--health-path must be a path like /healthz, got {self.health_path!r}")
        self._check_sizes()

    def _check_sizes(self) -> None:
        if not _CPU.match(self.cpu_limit) or not _MEMORY.match(self.memory_limit):
            raise ScaleError(
                f"--cpu-limit {self.cpu_limit!r} or --memory-limit {self.memory_limit!r} is not a quantity "
                "(like 1 or 500m for CPU, 512Mi or 2Gi for memory)"
            )
        cpu, memory = cpu_cores(self.cpu_limit), memory_mib(self.memory_limit)
        if not (0.08 <= cpu <= 1 or cpu in CLOUD_RUN_MEMORY):
            raise ScaleError(f"--cpu-limit {self.cpu_limit}: Cloud Run takes 1, 2, 4, 6 or 8 CPUs, or 0.08 to 1")
        low, high = CLOUD_RUN_MEMORY.get(cpu, (128, 512 if cpu < 0.5 else 1024))
        if not low <= memory <= high:
            raise ScaleError(
                f"--memory-limit {self.memory_limit} does not fit --cpu-limit {self.cpu_limit}: "
                f"Cloud Run allows {low:g} to {high:g} MiB with that CPU"
            )
        if self.fractional_cpu:
            if self.concurrency not in (None, 1):
                raise ScaleError(f"--cpu-limit {self.cpu_limit} (below 1) takes --concurrency 1 on Cloud Run")
            if not self.cpu_throttling:
                raise ScaleError(f"--cpu-limit {self.cpu_limit} (below 1) needs --cpu-throttling on Cloud Run")

    @property
    def name(self) -> str:
        """The service's name: --name, else the last part of the image's repository."""
        return object_name(self.image, self.app_name)

    @property
    def fractional_cpu(self) -> bool:
        return cpu_cores(self.cpu_limit) < 1

    @property
    def workers(self) -> int:
        """asgiscale workers in an instance: --workers-per-instance, else one per whole CPU."""
        return self.workers_per_instance or max(1, int(cpu_cores(self.cpu_limit)))


# Lambda's limits (docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
LAMBDA_MEMORY = (128, 10240)
LAMBDA_TIMEOUT = (1, 900)
LAMBDA_PYTHONS = ("3.11", "3.12", "3.13", "3.14")
ARCHITECTURES = ("x86_64", "arm64")
# Cloud Run's limits (cloud.google.com/run/docs/configuring/services/cpu, .../about-concurrency,
# .../request-timeout): whole CPUs -> (least, most) MiB of memory.
CLOUD_RUN_MEMORY = {1.0: (128, 4096), 2.0: (128, 8192), 4.0: (2048, 16384), 6.0: (4096, 24576), 8.0: (4096, 32768)}
CLOUD_RUN_CONCURRENCY = (1, 1000)
CLOUD_RUN_TIMEOUT = (1, 3600)


def _within(flag: str, value: int, bounds: tuple[int, int], platform: str, unit: str) -> None:
    low, high = bounds
    if value < low:
        raise ScaleError(f"{flag} {value} is below {platform}'s {low}{unit} minimum")
    if value > high:
        raise ScaleError(f"{flag} {value} is above {platform}'s {high}{unit} maximum")


def object_name(image: str, app_name: str) -> str:
    """`app_name`, else the last part of the image's repository as a DNS label."""
    if app_name:
        return app_name
    repository = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return re.sub(r"[^a-z0-9-]+", "-", repository.lower()).strip("-")[:63]


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


_BYTES = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def memory_mib(quantity: str) -> float:
    """A Kubernetes memory quantity (like 512Mi, 2Gi, 1G) in MiB."""
    number = quantity.rstrip("KMGTik")
    return int(number) * _BYTES[quantity[len(number) :]] / 2**20
