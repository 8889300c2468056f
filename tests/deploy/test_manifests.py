"""The rendered Dockerfile and manifests against the real validators: kubernetes-validate --strict on
every supported Kubernetes version, the published CRD schemas, checkov (zero failed checks) and hadolint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asgiscale.config import Config
from asgiscale.deploy import render, write
from asgiscale.deploy.options import KUBERNETES_VERSIONS, DeployOptions
from tests.deploy import tools

IMAGE = "registry.example/shop:1.4.2@sha256:" + "5" * 64
BEHAVIOR = {
    "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}]}
}
VARIANTS = {
    "hpa": ({"scale_targets": ("cpu=70", "concurrency=16")}, {}),
    "hpa+servicemonitor": ({"scale_targets": ("rps=40",)}, {"service_monitor": True}),
    "keda": ({"scale_targets": ("concurrency=16",)}, {"autoscaler": "keda"}),
    "knative": ({"scale_policy": "kpa", "scale_targets": ("concurrency=16",)}, {"autoscaler": "knative"}),
}


def rendered(tmp_path: Path, variant: str, version: str = "1.31") -> Path:
    settings, options = VARIANTS[variant]
    config = Config(app="main:app", min_workers=2, max_workers=20, scale={"behavior": BEHAVIOR}, **settings)  # type: ignore[arg-type]
    out = tmp_path / variant / version
    files = render(
        "kubernetes",
        config,
        DeployOptions(image=IMAGE, namespace="shop", kubernetes_version=version, **options),  # type: ignore[arg-type]
    )
    write(files, out, force=False)
    return out


def objects(directory: Path) -> list[dict]:  # type: ignore[type-arg]
    return [o for path in sorted(directory.glob("*.yaml")) for o in yaml.safe_load_all(path.read_text()) if o]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_passes_strict_schema_validation(tmp_path: Path, variant: str, version: str) -> None:
    out = rendered(tmp_path, variant, version)
    manifests = [p for p in out.glob("*.yaml") if p.name != "kustomization.yaml"]
    tools.kubernetes_validate(manifests, f"{version}.0")
    custom = [
        o for o in objects(out) if o["apiVersion"].split("/")[0] in tools.NOT_BUILT_IN - {"kustomize.config.k8s.io"}
    ]
    for obj in custom:
        tools.validate_crd_object(obj)
    expected = {"keda": {"ScaledObject"}, "knative": {"Service"}, "hpa+servicemonitor": {"ServiceMonitor"}}
    assert {o["kind"] for o in custom} == expected.get(variant, set())


def test_checkov_finds_nothing_to_fail_in_any_variant(tmp_path: Path) -> None:
    for variant in VARIANTS:
        (rendered(tmp_path, variant) / "kustomization.yaml").unlink()  # not a cluster object
    assert tools.checkov_each(tmp_path, "kubernetes") == {variant: [] for variant in VARIANTS}


def test_the_hpa_carries_the_config_policy_and_no_replicas_fight_it(tmp_path: Path) -> None:
    out = rendered(tmp_path, "hpa")
    by_kind = {o["kind"]: o for o in objects(out)}
    assert "replicas" not in by_kind["Deployment"]["spec"]
    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"], hpa["behavior"]) == (2, 20, BEHAVIOR)
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    drain = float(pod["containers"][0]["args"][pod["containers"][0]["args"].index("--graceful-timeout") + 1])
    assert (
        pod["terminationGracePeriodSeconds"] > pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] + drain
    )
    assert by_kind["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def docker_context(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("asgiscale\nfastapi\n")
    result = subprocess.run(
        [sys.executable, "-m", "asgiscale", "deploy", "docker", "main:app"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wrote", "Dockerfile", "wrote", ".dockerignore"]
    return project


def test_the_dockerfile_passes_hadolint_and_checkov(tmp_path: Path) -> None:
    project = docker_context(tmp_path)
    assert tools.hadolint(project / "Dockerfile") == []
    assert tools.checkov(project, "dockerfile") == []
    text = (project / "Dockerfile").read_text()
    # Dependencies before the source, exec-form CMD, numeric user, no curl.
    assert text.index("RUN pip install") < text.index("COPY . .")
    assert 'CMD ["asgiscale", "run", "main:app"' in text and "USER 10001:10001" in text and "curl" not in text


def test_deploy_docker_refuses_a_project_without_requirements(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asgiscale", "deploy", "docker", "main:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("asgiscale: error: no requirements.txt in ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "Dockerfile").exists()
