"""`asgiscale check DIR`: the mistakes in Kubernetes manifests that no schema can see.

A schema validator checks each object alone; these checks read the objects together:

* a Service, PodDisruptionBudget, NetworkPolicy or ServiceMonitor whose selector matches
  no pod (or Service) labels;
* an HPA or ScaledObject aimed at a Deployment that is not there, or two autoscalers (an
  HPA and a KEDA ScaledObject) on one Deployment, or a Deployment's `spec.replicas` that an
  autoscaler would keep resetting;
* a CPU or memory utilization target on pods with no request for that resource (the HPA
  cannot compute a percentage of nothing);
* probes and Service ports naming a container port that does not exist, or a path the
  asgiscale admin server does not answer;
* a `terminationGracePeriodSeconds` shorter than the `preStop` pause plus asgiscale's
  `--shutdown-delay` and `--graceful-timeout` (the kubelet would kill in-flight requests).

`findings(documents)` is pure: (file, object) pairs in, one line per problem out.

    >>> pods = {"template": {"metadata": {"labels": {"app": "web"}}}}
    >>> deployment = {"kind": "Deployment", "metadata": {"name": "web"}, "spec": pods}
    >>> service = {"kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "wbe"}}}
    >>> findings([("web.yaml", deployment), ("web.yaml", service)])
    ["web.yaml: Service/web: its selector {app: wbe} matches no pod template's labels; make them agree"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]
ADMIN_PATHS = ("/", "/healthz", "/readyz", "/metrics", "/status")
DEFAULT_GRACE = 30  # Kubernetes' default terminationGracePeriodSeconds
DEFAULT_DRAIN = 30.0  # asgiscale's default --graceful-timeout
WORKLOADS = ("Deployment", "StatefulSet")


class CheckError(ValueError):
    """The directory cannot be read as manifests; one line naming the file."""


@dataclasses.dataclass(frozen=True)
class Workload:
    file: str
    obj: Object

    @property
    def name(self) -> str:
        return str(self.obj.get("metadata", {}).get("name", ""))

    @property
    def pod_labels(self) -> dict[str, str]:
        return dict(self.obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {})

    @property
    def pod_spec(self) -> Object:
        return dict(self.obj.get("spec", {}).get("template", {}).get("spec") or {})

    @property
    def containers(self) -> list[Object]:
        return list(self.pod_spec.get("containers") or [])


def load(directory: Path) -> list[tuple[str, Object]]:
    """Every object of every YAML file in `directory` (kustomization files aside)."""
    if not directory.is_dir():
        raise CheckError(f"{directory} is not a directory of manifests")
    documents = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        if path.name in ("kustomization.yaml", "kustomization.yml"):
            continue
        try:
            for obj in yaml.safe_load_all(path.read_text()):
                if isinstance(obj, dict):
                    documents.append((path.name, obj))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise CheckError(f"{path.name}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not documents:
        raise CheckError(f"{directory} holds no Kubernetes objects (*.yaml)")
    return documents


def findings(documents: Iterable[tuple[str, Object]]) -> list[str]:
    documents = list(documents)
    workloads = [Workload(f, o) for f, o in documents if o.get("kind") in WORKLOADS]
    lines: list[str] = []
    for file, obj in documents:
        kind, name = obj.get("kind", "?"), obj.get("metadata", {}).get("name", "?")
        for problem in _problems(obj, workloads, documents):
            lines.append(f"{file}: {kind}/{name}: {problem}")
    return lines


def _problems(obj: Object, workloads: list[Workload], documents: list[tuple[str, Object]]) -> Iterator[str]:
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Service":
        yield from _service(spec, workloads)
    elif kind == "PodDisruptionBudget":
        yield from _selects(spec.get("selector", {}).get("matchLabels"), workloads)
    elif kind == "NetworkPolicy":
        yield from _selects(spec.get("podSelector", {}).get("matchLabels"), workloads, empty_ok=True)
    elif kind == "ServiceMonitor":
        services = [o for _, o in documents if o.get("kind") == "Service"]
        wanted = spec.get("selector", {}).get("matchLabels") or {}
        if services and not any(_matches(wanted, s.get("metadata", {}).get("labels") or {}) for s in services):
            yield f"its selector {_show(wanted)} matches no Service's labels; make them agree"
    elif kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        yield from _autoscaler(obj, workloads, documents)
    elif kind in WORKLOADS:
        yield from _workload(Workload("", obj))


def _selects(wanted: dict[str, str] | None, workloads: list[Workload], empty_ok: bool = False) -> Iterator[str]:
    if not wanted:
        if not empty_ok:
            yield "it has no selector; select the pods by their app.kubernetes.io/name label"
        return
    if workloads and not any(_matches(wanted, w.pod_labels) for w in workloads):
        yield f"its selector {_show(wanted)} matches no pod template's labels; make them agree"


def _service(spec: Object, workloads: list[Workload]) -> Iterator[str]:
    wanted = spec.get("selector") or {}
    if wanted and not workloads:
        return
    if not wanted:
        return  # a Service without selector is managed by hand (EndpointSlices)
    selected = [w for w in workloads if _matches(wanted, w.pod_labels)]
    if not selected:
        yield f"its selector {_show(wanted)} matches no pod template's labels; make them agree"
        return
    for port in spec.get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, str) and not any(target in _port_names(w) for w in selected):
            yield f"port {port.get('name', target)!r} targets container port {target!r}, which no selected pod declares"


def _autoscaler(obj: Object, workloads: list[Workload], documents: list[tuple[str, Object]]) -> Iterator[str]:
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    target = next(
        (w for w in workloads if w.name == ref.get("name") and w.obj.get("kind") == ref.get("kind", "Deployment")), None
    )
    if target is None:
        if workloads:
            yield f"scaleTargetRef {ref.get('kind', 'Deployment')}/{ref.get('name')} is not among these manifests"
        return
    if "replicas" in (target.obj.get("spec") or {}):
        yield (
            f"{target.obj['kind']}/{target.name} also sets spec.replicas: every apply resets what the autoscaler "
            "chose; remove spec.replicas"
        )
    if obj.get("kind") == "HorizontalPodAutoscaler":
        others = [
            o
            for _, o in documents
            if o.get("kind") == "ScaledObject"
            and (o.get("spec") or {}).get("scaleTargetRef", {}).get("name") == target.name
        ]
        if others:
            yield f"a KEDA ScaledObject scales {target.name} too: two autoscalers fight; keep one"
        for metric in spec.get("metrics") or []:
            resource = metric.get("resource") or {}
            if metric.get("type") == "Resource" and (resource.get("target") or {}).get("type") == "Utilization":
                name = resource.get("name")
                missing = [
                    c.get("name", "?")
                    for c in target.containers
                    if name not in ((c.get("resources") or {}).get("requests") or {})
                ]
                if missing:
                    yield (
                        f"a {name} utilization target, but container(s) {', '.join(missing)} request no {name}; "
                        f"set resources.requests.{name}"
                    )


def _workload(workload: Workload) -> Iterator[str]:
    pod = workload.pod_spec
    grace = pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE)
    for container in workload.containers:
        cname = container.get("name", "?")
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        numbers = set(ports.values())
        args = [*(container.get("command") or []), *(container.get("args") or [])]
        admin = _admin_port(args)
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            http = (container.get(probe_name) or {}).get("httpGet")
            if not http:
                continue
            port = http.get("port")
            number = ports.get(port) if isinstance(port, str) else port
            if isinstance(port, str) and port not in ports:
                yield f"container {cname}: {probe_name} uses port {port!r}, which the container does not declare"
                continue
            if isinstance(port, int) and numbers and port not in numbers and port != admin:
                yield f"container {cname}: {probe_name} uses port {port}, which the container does not declare"
                continue
            if admin is not None and number == admin and http.get("path", "/") not in ADMIN_PATHS:
                yield (
                    f"container {cname}: {probe_name} asks the admin server for {http.get('path')!r}; "
                    "it answers /healthz and /readyz"
                )
        if "asgiscale" in " ".join(str(a) for a in args):
            needed = (
                _pre_stop_seconds(container)
                + _flag(args, "--shutdown-delay", 0.0)
                + _flag(args, "--graceful-timeout", DEFAULT_DRAIN)
            )
            if grace <= needed:
                yield (
                    f"terminationGracePeriodSeconds {grace} is not longer than preStop + --shutdown-delay + "
                    f"--graceful-timeout ({needed:g}s): in-flight requests would be killed; raise it above {needed:g}"
                )


def _admin_port(args: list[Any]) -> int | None:
    text = [str(a) for a in args]
    if "asgiscale" not in " ".join(text):
        return None
    for i, arg in enumerate(text):
        value = (
            arg.split("=", 1)[1]
            if arg.startswith("--admin=")
            else text[i + 1]
            if arg == "--admin" and i + 1 < len(text)
            else None
        )
        if value is not None:
            port = value.rpartition(":")[2]
            return int(port) if port.isdigit() else None
    return 9000


def _flag(args: list[Any], flag: str, default: float) -> float:
    text = [str(a) for a in args]
    for i, arg in enumerate(text):
        if arg.startswith(flag + "="):
            return float(arg.split("=", 1)[1])
        if arg == flag and i + 1 < len(text):
            return float(text[i + 1])
    return default


def _pre_stop_seconds(container: Object) -> float:
    hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in hook:
        return float(hook["sleep"].get("seconds", 0))
    command = (hook.get("exec") or {}).get("command") or []
    if len(command) == 2 and command[0] in ("sleep", "/bin/sleep"):
        return float(command[1])
    return 0.0


def _port_names(workload: Workload) -> set[str]:
    return {p.get("name") for c in workload.containers for p in c.get("ports") or [] if p.get("name")}


def _matches(wanted: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def _show(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"
