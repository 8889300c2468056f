"""Each validator helper catches a real mistake and passes a correct minimal object: the deploy tests rely on it."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy import tools
from tests.utils import free_port, wait_for

IMAGE = "registry.example/shop/web:1.0@sha256:" + "0" * 64
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def deployment() -> dict[str, Any]:
    """A minimal Deployment that passes kubernetes-validate --strict and every checkov check."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": dict(POD_SECURITY),
                    "containers": [
                        {
                            "name": "web",
                            "image": IMAGE,
                            "imagePullPolicy": "Always",
                            "ports": [{"containerPort": 8000}],
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8001}},
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8001}},
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "1", "memory": "256Mi"},
                            },
                            "securityContext": copy.deepcopy(CONTAINER_SECURITY),
                        }
                    ],
                },
            },
        },
    }


NETWORK_POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"port": 8000}]}],
    },
}
SCALED_OBJECT = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "scaleTargetRef": {"name": "web"},
        "minReplicaCount": 2,
        "maxReplicaCount": 10,
        "triggers": [
            {
                "type": "prometheus",
                "metadata": {
                    "serverAddress": "http://prometheus.monitoring:9090",
                    "query": "sum(rate(http_server_request_duration_seconds_count[1m]))",
                    "threshold": "100",
                },
            }
        ],
    },
}
SERVICE_MONITOR = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "endpoints": [{"port": "admin", "path": "/metrics", "interval": "15s"}],
    },
}
KNATIVE_SERVICE = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "template": {
            "metadata": {"annotations": {"autoscaling.knative.dev/target": "10"}},
            "spec": {
                "containerConcurrency": 20,
                "containers": [
                    {
                        "image": IMAGE,
                        "ports": [{"containerPort": 8000}],
                        "readinessProbe": {"httpGet": {"path": "/readyz"}},
                        "securityContext": {
                            k: v for k, v in CONTAINER_SECURITY.items() if k != "readOnlyRootFilesystem"
                        },
                    }
                ],
            },
        }
    },
}


def write(path: Path, *objects: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


# -- kubernetes-validate -------------------------------------------------------------------------------------------


def test_kubernetes_validate_ships_several_versions() -> None:
    versions = tools.kubernetes_versions()
    assert {"1.29.0", "1.33.0"} <= set(versions) and len(versions) >= 5


def test_kubernetes_validate_passes_a_correct_deployment_on_every_version(tmp_path: Path) -> None:
    path = write(tmp_path / "app.yaml", deployment(), NETWORK_POLICY)
    for version in tools.kubernetes_versions():
        tools.kubernetes_validate([path], version)


def test_kubernetes_validate_rejects_a_misspelt_field(tmp_path: Path) -> None:
    bad = deployment()
    bad["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 40
    with pytest.raises(tools.ValidatorError, match="'terminationGracePeriodSecond' was unexpected"):
        tools.kubernetes_validate([write(tmp_path / "app.yaml", bad)], "1.33.0")


def test_kubernetes_validate_fails_on_schema_not_found_for_a_built_in_kind(tmp_path: Path) -> None:
    # autoscaling/v2beta2 was removed in Kubernetes 1.26: the tool only warns, the helper fails.
    hpa = {
        "apiVersion": "autoscaling/v2beta2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3},
    }
    with pytest.raises(tools.ValidatorError, match="Couldn't find schema for kind HorizontalPodAutoscaler"):
        tools.kubernetes_validate([write(tmp_path / "hpa.yaml", hpa)], "1.33.0")


def test_kubernetes_validate_leaves_crd_kinds_to_their_own_schemas(tmp_path: Path) -> None:
    tools.kubernetes_validate([write(tmp_path / "so.yaml", SCALED_OBJECT, SERVICE_MONITOR, KNATIVE_SERVICE)], "1.33.0")


def test_kubernetes_validate_refuses_a_version_it_has_no_schemas_for(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no schemas for '1.20.0'"):
        tools.kubernetes_validate([write(tmp_path / "app.yaml", deployment())], "1.20.0")


# -- CRD schemas ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("obj", [SCALED_OBJECT, SERVICE_MONITOR, KNATIVE_SERVICE], ids=lambda o: o["kind"])
def test_validate_crd_object_passes_a_correct_object(obj: dict[str, Any]) -> None:
    tools.validate_crd_object(obj)


def test_validate_crd_object_rejects_a_misspelt_service_monitor_field() -> None:
    bad = copy.deepcopy(SERVICE_MONITOR)
    bad["spec"]["endpoints"][0]["scrapeInterval"] = bad["spec"]["endpoints"][0].pop("interval")
    with pytest.raises(tools.ValidatorError, match=r"spec\.endpoints\.0: .*'scrapeInterval' was unexpected"):
        tools.validate_crd_object(bad)


def test_validate_crd_object_rejects_a_bad_service_monitor_interval() -> None:
    bad = copy.deepcopy(SERVICE_MONITOR)
    bad["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(tools.ValidatorError, match=r"spec\.endpoints\.0\.interval: '15 seconds' does not match"):
        tools.validate_crd_object(bad)


def test_validate_crd_object_rejects_a_scaled_object_trigger_without_metadata() -> None:
    bad = copy.deepcopy(SCALED_OBJECT)
    del bad["spec"]["triggers"][0]["metadata"]
    with pytest.raises(tools.ValidatorError, match=r"spec\.triggers\.0: 'metadata' is a required property"):
        tools.validate_crd_object(bad)


def test_validate_crd_object_rejects_a_container_field_knative_does_not_allow() -> None:
    bad = copy.deepcopy(KNATIVE_SERVICE)
    bad["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 5}}}
    with pytest.raises(tools.ValidatorError, match="'lifecycle' was unexpected"):
        tools.validate_crd_object(bad)


def test_validate_crd_object_checks_metadata_as_object_meta() -> None:
    bad = copy.deepcopy(SCALED_OBJECT)
    bad["metadata"]["lables"] = {"app": "web"}
    with pytest.raises(tools.ValidatorError, match="metadata: .*'lables' was unexpected"):
        tools.validate_crd_object(bad)


def test_validate_crd_object_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="no CRD schema"):
        tools.validate_crd_object({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {"name": "x"}})


# -- checkov -------------------------------------------------------------------------------------------------------


def test_checkov_passes_a_hardened_deployment_and_fails_a_root_container(tmp_path: Path) -> None:
    write(tmp_path / "hardened" / "app.yaml", deployment(), NETWORK_POLICY)
    root = deployment()
    root["spec"]["template"]["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    container = root["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"].update(runAsNonRoot=False, runAsUser=0)
    write(tmp_path / "root" / "app.yaml", root, NETWORK_POLICY)
    # Both in one checkov run: each directory's findings are its own.
    assert tools.checkov_each(tmp_path, "kubernetes") == {"hardened": [], "root": ["CKV_K8S_23", "CKV_K8S_40"]}


def test_checkov_checks_a_dockerfile(tmp_path: Path) -> None:
    good = 'FROM python:3.11-slim\nUSER 10001:10001\nHEALTHCHECK CMD ["python3", "-c", "1"]\nCMD ["python3"]\n'
    (tmp_path / "Dockerfile").write_text(good)
    assert tools.checkov(tmp_path, "dockerfile") == []
    (tmp_path / "Dockerfile").write_text(good.replace("USER 10001:10001\n", ""))
    assert tools.checkov(tmp_path, "dockerfile") == ["CKV_DOCKER_3"]


def test_checkov_refuses_to_pass_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no manifests here\n")
    with pytest.raises(tools.ValidatorError, match="nothing to check|no resources"):
        tools.checkov(tmp_path, "kubernetes")


# -- hadolint ------------------------------------------------------------------------------------------------------


def test_hadolint_passes_exec_form_and_flags_shell_form_cmd(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM python:3.11-slim\nUSER 10001\nCMD ["asgiscale", "run", "main:app"]\n')
    assert tools.hadolint(dockerfile) == []
    dockerfile.write_text("FROM python:3.11-slim\nUSER 10001\nCMD asgiscale run main:app\n")
    assert [f.split()[0] for f in tools.hadolint(dockerfile)] == ["DL3025"]


# -- cfn-lint ------------------------------------------------------------------------------------------------------

SAM_FUNCTION = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Transform": "AWS::Serverless-2016-10-31",
    "Resources": {
        "Function": {
            "Type": "AWS::Serverless::Function",
            "Properties": {"CodeUri": ".", "Handler": "main.handler", "Runtime": "python3.12", "MemorySize": 256},
        }
    },
}


def test_cfn_lint_passes_a_correct_sam_function(tmp_path: Path) -> None:
    assert tools.cfn_lint(write(tmp_path / "template.yaml", SAM_FUNCTION)) == []


def test_cfn_lint_reports_errors_and_warnings(tmp_path: Path) -> None:
    broken = copy.deepcopy(SAM_FUNCTION)
    broken["Resources"]["Function"]["Properties"].update(MemorySize=100, Runtime="python3.8")
    findings = tools.cfn_lint(write(tmp_path / "template.yaml", broken))
    assert [f.split()[0] for f in findings] == ["W2531", "E3034"]  # a deprecated runtime, too little memory
    assert findings[1].endswith("100 is less than the minimum of 128")


def test_cfn_lint_refuses_to_pass_a_template_without_resources(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text("AWSTemplateFormatVersion: '2010-09-09'\n")
    with pytest.raises(tools.ValidatorError, match="could not read"):
        tools.cfn_lint(tmp_path / "template.yaml")


# -- podman --------------------------------------------------------------------------------------------------------

SERVER = """\
import http.server, os, signal, sys, threading, time

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            print("slow request started", flush=True)
            time.sleep(2)
        body = f"uid={os.getuid()}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler)
server.daemon_threads = False
def handle_sigterm(*_):
    print("SIGTERM", flush=True)
    threading.Thread(target=server.shutdown).start()

signal.signal(signal.SIGTERM, handle_sigterm)
server.serve_forever()
server.server_close()
print("drained", flush=True)
"""


@pytest.fixture(scope="module")
def server_image(engine: tools.Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    context = tmp_path_factory.mktemp("server")
    (context / "server.py").write_text(SERVER)
    (context / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\nCOPY server.py /server.py\nRUN python3 -m venv /venv\n"
        'USER 10001:10001\nCMD ["python3", "/server.py", "8000"]\n'
    )
    tag = f"localhost/asgiscale-tools-test:{uuid.uuid4().hex[:8]}"
    engine.build(context, tag, build_args={"BASE": tools.base_image()})
    yield tag
    engine.run("rmi", "--force", tag, check=False)


def test_base_image_runs_python_3_11(engine: tools.Podman) -> None:
    out = engine.run(
        "run", "--rm", "--network=none", tools.base_image(), "python3", "-c", "import sys; print(sys.version)"
    )
    assert out.stdout.startswith("3.11.")


def test_podman_stop_delivers_sigterm_and_in_flight_requests_finish(engine: tools.Podman, server_image: str) -> None:
    name, port = f"asgiscale-tools-{uuid.uuid4().hex[:8]}", free_port()
    try:
        engine.start(server_image, name, publish=[f"127.0.0.1:{port}:8000"])
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(url + "/"), timeout=30, what="the container to answer")
        slow: list[httpx.Response] = []
        request = threading.Thread(target=lambda: slow.append(httpx.get(url + "/slow", timeout=10)))
        request.start()
        wait_for(lambda: "slow request started" in engine.logs(name), timeout=10, what="the slow request to arrive")
        assert engine.stop(name, timeout=20) == 0
        request.join(10)
        assert slow and slow[0].status_code == 200
        assert "SIGTERM" in engine.logs(name) and "drained" in engine.logs(name)
    finally:
        engine.remove(name)


def test_kube_play_applies_the_security_context(engine: tools.Podman, server_image: str, tmp_path: Path) -> None:
    port = free_port()
    pod = deployment()
    pod["metadata"]["name"] = name = f"asgiscale-tools-{uuid.uuid4().hex[:8]}"
    spec = pod["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    container = spec["containers"][0]
    container.update(image=server_image, imagePullPolicy="Never", args=["/server.py", str(port)])
    container["command"] = ["python3"]
    container["ports"] = [{"containerPort": port, "hostIP": "127.0.0.1", "hostPort": port}]
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    for probe in ("readinessProbe", "livenessProbe"):
        del container[probe]
    manifest = write(tmp_path / "pod.yaml", pod)
    try:
        engine.kube_play(manifest)
        assert (
            wait_for(lambda: _get(f"http://127.0.0.1:{port}/"), timeout=30, what="the pod to answer") == "uid=10001\n"
        )
        ctr = f"{name}-pod-0-web"
        check = (
            "touch /readonly 2>/dev/null && echo writable || echo read-only; touch /tmp/x && echo tmp-ok; "
            "grep -E 'CapEff|NoNewPrivs|Seccomp:' /proc/1/status"
        )
        out = engine.run("exec", ctr, "sh", "-c", check).stdout
        assert "read-only" in out and "tmp-ok" in out
        assert "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    finally:
        engine.kube_down(manifest)


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None
