"""`asgiscale check`: every planted mistake in a set of broken manifests is found, by the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asgiscale.config import Config
from asgiscale.deploy import render, write
from asgiscale.deploy.options import DeployOptions


def rendered(tmp_path: Path, **options: object) -> Path:
    out = tmp_path / "manifests"
    config = Config(app="main:app", max_workers=6, scale_targets=("cpu=70",))
    write(
        render("kubernetes", config, DeployOptions(image="r.example/shop:1.0", namespace="shop", **options)),
        out,
        force=False,
    )  # type: ignore[arg-type]
    return out


def check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asgiscale", "check", str(directory)], capture_output=True, text=True, timeout=60
    )


def edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    documents = list(yaml.safe_load_all(path.read_text()))
    change(documents[0])
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def test_rendered_manifests_have_no_problem(tmp_path: Path) -> None:
    for index, options in enumerate(({}, {"service_monitor": True}, {"kubernetes_version": "1.29"})):
        out = rendered(tmp_path / str(index), **options)
        result = check(out)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip().endswith("no problems found.")


def container(doc: dict) -> dict:  # type: ignore[type-arg]
    return doc["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


PLANTED = [
    (
        "service.yaml",
        lambda d: d["spec"]["selector"].update({"app.kubernetes.io/name": "shopp"}),
        "service.yaml: Service/shop: its selector {app.kubernetes.io/name: shopp, app.kubernetes.io/instance: shop} "
        "matches no pod template's labels; make them agree",
    ),
    (
        "service.yaml",
        lambda d: d["spec"]["ports"][0].update({"targetPort": "web"}),
        "service.yaml: Service/shop: port 'http' targets container port 'web', which no selected pod declares",
    ),
    (
        "pdb.yaml",
        lambda d: d["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/instance": "other"}),
        "pdb.yaml: PodDisruptionBudget/shop: its selector",
    ),
    (
        "deployment.yaml",
        lambda d: container(d)["readinessProbe"]["httpGet"].update({"port": "health"}),
        "deployment.yaml: Deployment/shop: container app: readinessProbe uses port 'health', which the container "
        "does not declare",
    ),
    (
        "deployment.yaml",
        lambda d: container(d)["livenessProbe"]["httpGet"].update({"path": "/health"}),
        "deployment.yaml: Deployment/shop: container app: livenessProbe asks the admin server for '/health'",
    ),
    (
        "deployment.yaml",
        lambda d: d["spec"]["template"]["spec"].update({"terminationGracePeriodSeconds": 30}),
        "deployment.yaml: Deployment/shop: terminationGracePeriodSeconds 30 is not longer than preStop + "
        "--shutdown-delay + --graceful-timeout (35s)",
    ),
    (
        "deployment.yaml",
        lambda d: d["spec"].update({"replicas": 3}),
        "hpa.yaml: HorizontalPodAutoscaler/shop: Deployment/shop also sets spec.replicas",
    ),
    (
        "deployment.yaml",
        lambda d: container(d)["resources"].pop("requests"),
        "hpa.yaml: HorizontalPodAutoscaler/shop: a cpu utilization target, but container(s) app request no cpu",
    ),
    (
        "hpa.yaml",
        lambda d: d["spec"]["scaleTargetRef"].update({"name": "shop-web"}),
        "hpa.yaml: HorizontalPodAutoscaler/shop: scaleTargetRef Deployment/shop-web is not among these manifests",
    ),
]


@pytest.mark.parametrize(("file", "change", "expected"), PLANTED, ids=[p[2][:60] for p in PLANTED])
def test_each_planted_mistake_is_one_clear_line(tmp_path: Path, file: str, change, expected: str) -> None:  # type: ignore[no-untyped-def]
    out = rendered(tmp_path)
    edit(out / file, change)
    result = check(out)
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) >= 1
    assert any(line.startswith(expected) for line in result.stdout.splitlines()), result.stdout
    assert "Traceback" not in result.stderr


def test_an_hpa_and_a_keda_scaledobject_on_one_deployment_fight(tmp_path: Path) -> None:
    out = rendered(tmp_path)
    config = Config(app="main:app", max_workers=6, scale_targets=("rps=50",))
    keda = render("kubernetes", config, DeployOptions(image="r.example/shop:1.0", namespace="shop", autoscaler="keda"))
    (out / "scaledobject.yaml").write_text(keda["scaledobject.yaml"])
    result = check(out)
    assert "hpa.yaml: HorizontalPodAutoscaler/shop: a KEDA ScaledObject scales shop too" in result.stdout


def test_unreadable_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: Service\n  metadata: [\n")
    result = check(tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("asgiscale: error: broken.yaml line ") and result.stderr.count("\n") == 1
    assert (
        check(tmp_path / "nowhere").stderr
        == f"asgiscale: error: {tmp_path / 'nowhere'} is not a directory of manifests\n"
    )
