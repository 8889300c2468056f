"""The policies `asgiscale simulate` replays: read from the config (a TOML file, a pyproject.toml or a directory)
or from the manifests `asgiscale deploy` writes (a HorizontalPodAutoscaler, a Knative or Cloud Run Service), built
by the same code the runtime and `deploy` use, so they decide as the policy that goes live would."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgiscale.config import Config, ConfigError
from asgiscale.deploy import render, write
from asgiscale.deploy.options import CloudRunOptions, DeployOptions
from asgiscale.policy import HorizontalPodAutoscaler, KnativePodAutoscaler, PodSample, PolicyError, ScalingPolicy
from asgiscale.simulate import policies
from asgiscale.simulate.model import PLATFORMS, SimPolicy

IMAGE = "registry.example/shop:1.4.2"
BEHAVIOR = {
    "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}]}
}
HPA_CONFIG = """
app = "main:app"
min_workers = 2
max_workers = 12
scale_targets = ["concurrency=4", "rps=40"]
scale_sync_period = 2.0

[scale.behavior.scaleDown]
stabilizationWindowSeconds = 60
policies = [{ type = "Percent", value = 50, periodSeconds = 15 }]
"""
KPA_CONFIG = """
min_workers = 1
max_workers = 30
scale_policy = "kpa"
scale_targets = ["concurrency=10"]

[scale.kpa]
window = "20s"
"""

# One sync: the replica count before it, and per metric the pods' readings (value or None, ready, count).
Pod = tuple[float | None, bool, int]
Sync = tuple[int, list[list[Pod]]]


@pytest.fixture(autouse=True)
def no_asgiscale_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The config comes from the files of each test alone, not from ASGISCALE_* variables around the run."""
    for key in list(os.environ):
        if key.startswith("ASGISCALE_"):
            monkeypatch.delenv(key)


def replay(policy: ScalingPolicy, syncs: Sequence[Sync], every: float) -> list[tuple[int, Any]]:
    """The count and the explanation of each decision of `policy` over `syncs`, `every` seconds apart."""
    decided = []
    for index, (current, readings) in enumerate(syncs):
        now = index * every
        policy.observe(now, [[PodSample(value, ready, count) for value, ready, count in pods] for pods in readings])
        decided.append((policy.decide(now, current), policy.last))  # type: ignore[attr-defined]
    return decided


def pods(metrics: int) -> st.SearchStrategy[list[list[Pod]]]:
    pod = st.tuples(st.one_of(st.none(), st.floats(0, 200, allow_nan=False)), st.booleans(), st.integers(1, 5))
    return st.lists(st.lists(pod, min_size=1, max_size=3), min_size=metrics, max_size=metrics)


def syncs(metrics: int) -> st.SearchStrategy[list[Sync]]:
    return st.lists(st.tuples(st.integers(1, 40), pods(metrics)), min_size=1, max_size=25)


def write_config(tmp_path: Path, text: str, name: str = "asgiscale.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# From the config ---------------------------------------------------------------------------------------------


def test_a_config_file_gives_its_policy_with_its_bounds_and_metrics(tmp_path: Path) -> None:
    path = write_config(tmp_path, HPA_CONFIG, "shop.toml")
    policy = policies.load(str(path), PLATFORMS["kubernetes"])
    assert (policy.name, policy.metrics) == (str(path), ("concurrency", "rps"))
    assert (policy.min_replicas, policy.max_replicas) == (2, 12)
    assert policy.about == "hpa: concurrency=4, rps=40, 2 to 12 replicas"
    # On a cluster the policy decides at the platform's sync period; locally, every scale_sync_period as
    # `asgiscale run` does.
    assert policy.sync_period is None and policy.make().sync_period == 15.0
    local = policies.load(str(path), PLATFORMS["local"])
    assert local.sync_period == 2.0 and local.make().sync_period == 2.0


def test_the_bounds_flags_override_the_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, HPA_CONFIG)
    policy = policies.load(str(path), PLATFORMS["kubernetes"], bounds=(3, 40))
    assert (policy.min_replicas, policy.max_replicas) == (3, 40)
    hpa = policy.make()
    assert isinstance(hpa, HorizontalPodAutoscaler)
    assert (hpa.min_replicas, hpa.max_replicas) == (3, 40)


def test_without_worker_bounds_the_replicas_are_those_deploy_would_set(tmp_path: Path) -> None:
    # As `asgiscale deploy kubernetes`: 2 to 10 replicas, or as many as the measured peak needs.
    path = write_config(tmp_path, 'scale_targets = ["cpu=60"]\n')
    policy = policies.load(str(path), PLATFORMS["kubernetes"])
    assert (policy.min_replicas, policy.max_replicas, policy.metrics) == (2, 10, ("cpu",))
    measured = write_config(
        tmp_path, 'scale_targets = ["cpu=60"]\n[scale.capacity]\nreplicas_at_peak = 23\nrps_per_worker = 100\n'
    )
    assert policies.load(str(measured), PLATFORMS["kubernetes"]).max_replicas == 23


def test_a_pyproject_toml_is_read_from_its_tool_table(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[project]\nname = 'shop'\n\n[tool.asgiscale]\n" + HPA_CONFIG, "pyproject.toml")
    policy = policies.load(str(path), PLATFORMS["kubernetes"])
    assert policy.about == "hpa: concurrency=4, rps=40, 2 to 12 replicas"


def test_a_directory_with_a_config_and_no_manifest_is_its_config(tmp_path: Path) -> None:
    write_config(tmp_path, KPA_CONFIG)
    policy = policies.load(str(tmp_path), PLATFORMS["knative"])
    assert (policy.name, policy.metrics, policy.min_replicas, policy.max_replicas) == (
        str(tmp_path),
        ("concurrency",),
        1,
        30,
    )
    assert policy.about == "kpa: concurrency=10, 1 to 30 replicas"
    assert isinstance(policy.make(), KnativePodAutoscaler)


def test_no_source_is_the_config_of_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, HPA_CONFIG)
    monkeypatch.chdir(tmp_path)
    policy = policies.load(None, PLATFORMS["kubernetes"])
    assert (policy.name, policy.about) == ("config", "hpa: concurrency=4, rps=40, 2 to 12 replicas")


@pytest.mark.parametrize("platform", ["local", "kubernetes"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_config_policy_decides_as_the_runtime_policy_of_the_config(
    tmp_path: Path, platform: str, data: st.DataObject
) -> None:
    # The runtime builds its policy with Config.scaling_policy(); simulate must replay that very policy: the same
    # kind of object, the same decision and the same explanation for the same readings, sync after sync.
    for text, metrics in ((HPA_CONFIG, 2), (KPA_CONFIG, 1)):
        write_config(tmp_path, text)
        config = Config.from_sources(env={}, cwd=tmp_path)
        simulated = policies.load(str(tmp_path / "asgiscale.toml"), PLATFORMS[platform]).make()
        runtime = config.scaling_policy()
        assert type(simulated) is type(runtime)
        readings = data.draw(syncs(metrics))
        assert replay(simulated, readings, 2.0) == replay(runtime, readings, 2.0)


# From manifests ----------------------------------------------------------------------------------------------


def deployed(tmp_path: Path, config: Config, **options: Any) -> Path:
    """What `asgiscale deploy kubernetes` writes for `config`."""
    out = tmp_path / "k8s"
    write(render("kubernetes", config, DeployOptions(image=IMAGE, **options)), out, force=False)
    return out


def hpa_config() -> Config:
    return Config(
        app="main:app",
        min_workers=2,
        max_workers=20,
        scale_targets=("concurrency=16", "rps=40"),
        scale={"behavior": BEHAVIOR},
    )


def test_the_hpa_deploy_writes_is_replayed_from_the_file_or_its_directory(tmp_path: Path) -> None:
    out = deployed(tmp_path, hpa_config(), workers=2)
    from_file = policies.load(str(out / "hpa.yaml"), PLATFORMS["kubernetes"])
    from_directory = policies.load(str(out), PLATFORMS["kubernetes"])
    # Two workers a pod: the per-pod targets are twice the per-worker ones.
    assert from_file.about == from_directory.about == "hpa: concurrency=32, rps=80, 2 to 20 replicas"
    assert from_file.metrics == from_directory.metrics == ("concurrency", "rps")
    assert (from_file.min_replicas, from_file.max_replicas) == (2, 20)
    assert (from_file.name, from_directory.name) == (str(out / "hpa.yaml"), str(out))
    spec = yaml.safe_load((out / "hpa.yaml").read_text().split("\n", 1)[1])["spec"]
    hpa = from_file.make()
    assert isinstance(hpa, HorizontalPodAutoscaler)
    assert hpa.behavior == HorizontalPodAutoscaler.from_spec(spec).behavior
    assert hpa.behavior is not None and hpa.behavior[1].stabilization == 60.0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(readings=syncs(2))
def test_the_deployed_hpa_of_one_worker_pods_decides_as_the_config(tmp_path: Path, readings: list[Sync]) -> None:
    # With one worker a pod, a pod carries the per-worker targets: the HPA in the manifest is the config's policy.
    out = deployed(tmp_path, hpa_config(), workers=1)
    manifest = policies.load(str(out / "hpa.yaml"), PLATFORMS["kubernetes"]).make()
    assert replay(manifest, readings, 15.0) == replay(hpa_config().scaling_policy(), readings, 15.0)


def test_the_knative_service_deploy_writes_is_the_kpa_of_the_config(tmp_path: Path) -> None:
    config = Config(
        app="main:app", min_workers=2, max_workers=20, scale_policy="kpa", scale_targets=("concurrency=16",)
    )
    out = deployed(tmp_path, config, autoscaler="knative")
    policy = policies.load(str(out / "knative-service.yaml"), PLATFORMS["knative"])
    # The KPA aims at 70 % of the target (Knative's default target utilization).
    assert policy.about == "kpa: concurrency=16 at 70%, 2 to 20 replicas"
    assert (policy.metrics, policy.min_replicas, policy.max_replicas) == (("concurrency",), 2, 20)
    assert policies.load(str(out), PLATFORMS["knative"]).about == policy.about
    kpa = policy.make()
    assert isinstance(kpa, KnativePodAutoscaler)
    # 16 x 70 % = 11.2 in flight a pod: 112 in flight over the stable window asks for 10 pods.
    for second in range(60):
        kpa.observe(float(second), [[PodSample(112.0 / 4, True, 4)]])
    assert kpa.decide(60.0, 4) == 10
    runtime = config.scaling_policy()
    for second in range(60):
        runtime.observe(float(second), [[PodSample(112.0 / 4, True, 4)]])
    assert runtime.decide(60.0, 4) == 10


def test_a_cloud_run_service_is_a_knative_service_scaled_on_its_container_concurrency(tmp_path: Path) -> None:
    files = render("cloudrun", Config(app="main:app"), CloudRunOptions(image="europe-docker.pkg.dev/p/r/shop:1"))
    write(files, tmp_path, force=False)
    policy = policies.load(str(tmp_path / "service.yaml"), PLATFORMS["knative"])
    # Cloud Run's defaults: 80 requests at once per instance, 0 to 100 instances (scale to zero).
    assert policy.about == "kpa: concurrency=80 at 70%, 0 to 100 replicas"
    assert (policy.min_replicas, policy.max_replicas) == (0, 100)


def test_a_knative_service_without_max_scale_is_bounded_for_the_simulation(tmp_path: Path) -> None:
    path = tmp_path / "ksvc.yaml"
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "shop"},
        "spec": {"template": {"metadata": {"annotations": {"autoscaling.knative.dev/metric": "rps"}}, "spec": {}}},
    }
    path.write_text(yaml.safe_dump(service))
    policy = policies.load(str(path), PLATFORMS["knative"])
    # Knative's defaults: 200 rps a pod, aimed at 70 %; min-scale 1 (asgiscale's KPA keeps scale to zero off).
    assert policy.about == "kpa: rps=200 at 70%, 1 to unbounded replicas"
    assert (policy.metrics, policy.min_replicas, policy.max_replicas) == (("rps",), 1, policies.KNATIVE_UNBOUNDED)


def test_the_first_autoscaler_in_a_multi_document_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "all.yml"
    hpa = {"kind": "HorizontalPodAutoscaler", "spec": {"minReplicas": 3, "maxReplicas": 9}}
    path.write_text(yaml.safe_dump_all([None, {"kind": "Deployment"}, "a string", hpa]))
    policy = policies.load(str(path), PLATFORMS["kubernetes"])
    # No metrics: the HPA's default, 80 % CPU utilization.
    assert (policy.about, policy.metrics) == ("hpa: cpu=80, 3 to 9 replicas", ("cpu",))


# Mistakes, one line each -------------------------------------------------------------------------------------


def hpa_manifest(tmp_path: Path, metric: dict[str, Any]) -> Path:
    path = tmp_path / "hpa.yaml"
    spec = {"maxReplicas": 5, "metrics": [metric]}
    path.write_text(yaml.safe_dump({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": spec}))
    return path


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (
            {
                "type": "Pods",
                "pods": {"metric": {"name": "queue_depth"}, "target": {"type": "AverageValue", "averageValue": "3"}},
            },
            "the HPA metric Pods queue_depth (AverageValue) is not one simulate can produce: use the cpu resource at a "
            "Utilization target, or a Pods metric named http_server_active_requests, http_server_requests_per_second",
        ),
        (
            {
                "type": "Resource",
                "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 60}},
            },
            "the HPA metric Resource memory (Utilization) is not one simulate can produce",
        ),
        (
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "500m"}},
            },
            "the HPA metric Resource cpu (AverageValue) is not one simulate can produce",
        ),
    ],
)
def test_an_hpa_metric_simulate_cannot_produce_is_refused(tmp_path: Path, metric: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policies.load(str(hpa_manifest(tmp_path, metric)), PLATFORMS["kubernetes"])
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_manifest_without_an_autoscaler_names_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump_all([{"kind": "Service", "apiVersion": "v1"}, {"kind": "Deployment"}]))
    with pytest.raises(PolicyError) as caught:
        policies.load(str(path), PLATFORMS["kubernetes"])
    assert str(caught.value) == (
        f"{path}: no HorizontalPodAutoscaler or Knative Service in it (found Deployment, Service); for KEDA, simulate"
        " the config with --platform keda"
    )


def test_a_keda_deployment_directory_points_at_the_config(tmp_path: Path) -> None:
    out = deployed(tmp_path, hpa_config(), autoscaler="keda")
    with pytest.raises(PolicyError, match=r"found Deployment, .*ScaledObject.*; for KEDA, simulate the config"):
        policies.load(str(out), PLATFORMS["keda"])


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("kind: [HorizontalPodAutoscaler\n", ConfigError, ": not readable YAML (while parsing a flow sequence)"),
        ("", PolicyError, ": no HorizontalPodAutoscaler or Knative Service in it (found nothing)"),
        ("kind: HorizontalPodAutoscaler\nspec: 3\n", PolicyError, ": the HorizontalPodAutoscaler has no spec"),
        ("kind: HorizontalPodAutoscaler\nspec: {minReplicas: 2}\n", PolicyError, "spec.maxReplicas is required"),
    ],
)
def test_a_bad_manifest_is_one_line(tmp_path: Path, text: str, error: type[Exception], message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(error) as caught:
        policies.load(str(path), PLATFORMS["kubernetes"])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_source_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file; give a config file \(\.toml\), a manifest \(\.yaml\)"):
        policies.load(str(tmp_path / "none.toml"), PLATFORMS["kubernetes"])
    (tmp_path / "notes.txt").write_text("hpa")
    with pytest.raises(ConfigError, match=r"notes\.txt: not a \.toml config or a \.yaml manifest$"):
        policies.load(str(tmp_path / "notes.txt"), PLATFORMS["kubernetes"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"empty: no manifest \(\*\.yaml\) and no asgiscale\.toml or pyproject"):
        policies.load(str(empty), PLATFORMS["kubernetes"])


def test_a_config_mistake_is_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'min_workers = 1\nmax_workers = 4\nscale_targets = ["cpu=70", "rsp=3"]\n')
    with pytest.raises(ConfigError) as caught:
        policies.load(str(path), PLATFORMS["kubernetes"])
    assert "did you mean 'rps=…'?" in str(caught.value) and "\n" not in str(caught.value)


def test_of_hpa_validates_the_spec_once_and_builds_a_fresh_policy_per_run() -> None:
    policy = SimPolicy.of_hpa({"minReplicas": 2, "maxReplicas": 6})
    first, second = policy.make(), policy.make()
    assert first is not second
    # A policy keeps its own history: a decision of one run does not reach the next.
    first.observe(0.0, [[PodSample(400.0, True, 2)]])
    assert first.decide(0.0, 2) == 4  # cpu at 5 x the default 80 %: 10 wanted, at most max(2 x 2, 4)
    second.observe(0.0, [[PodSample(80.0, True, 2)]])
    assert second.decide(0.0, 2) == 2
    with pytest.raises(PolicyError, match="spec.maxReplicas is required"):
        SimPolicy.of_hpa({"minReplicas": 2})
