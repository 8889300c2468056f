"""`asgiscale deploy lambda|cloudrun`: every variant of the SAM template passes the real cfn-lint with no finding
at all (errors, warnings and informational), every variant of the Cloud Run service passes the published Knative
Service schema; then the fields that matter, and the real command, its files and its one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from asgiscale.config import Config
from asgiscale.deploy import TARGETS, dump, render, sam
from asgiscale.deploy.cli import DEFAULT_OUT
from asgiscale.deploy.cloudrun import STARTUP_LIMIT
from asgiscale.deploy.options import APP_PORT, LAMBDA_PYTHONS, CloudRunOptions, LambdaOptions
from tests.deploy import tools

IMAGE = "europe-docker.pkg.dev/shop-prod/web/shop:1.4.2@sha256:" + "5" * 64
RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
SECRET = "s3cr3t-never-rendered"


def config(**settings: Any) -> Config:
    return Config(app="main:app", ssl_keyfile_password=SECRET, **settings)


def document(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


# -- lambda: AWS SAM --------------------------------------------------------------------------------------------------

LAMBDA_VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "arm64, 2 GB, 60 s": {"architecture": "arm64", "memory": 2048, "timeout": 60},
    "reserved": {"reserved_concurrency": 50},
    "provisioned": {"provisioned_concurrency": 5},
    "reserved+provisioned, largest": {
        "reserved_concurrency": 20,
        "provisioned_concurrency": 20,
        "memory": 10240,
        "timeout": 900,
    },
    "smallest": {"memory": 128, "timeout": 1, "reserved_concurrency": 1},
}


def template(variant: dict[str, Any], python: str = RUNNING) -> dict[str, Any]:
    return sam.render(config(), LambdaOptions(**variant), python=python)


def lint(tmp_path: Path, template: dict[str, Any]) -> list[str]:
    path = tmp_path / "template.yaml"
    path.write_text(dump([template], header="# test\n"))
    return tools.cfn_lint(path, regions=("us-east-1", "eu-west-1", "ap-southeast-2"))


@pytest.mark.parametrize("variant", LAMBDA_VARIANTS)
def test_every_sam_variant_passes_cfn_lint(tmp_path: Path, variant: str) -> None:
    assert lint(tmp_path, template(LAMBDA_VARIANTS[variant])) == []


@pytest.mark.parametrize("python", LAMBDA_PYTHONS)
def test_every_lambda_runtime_passes_cfn_lint(tmp_path: Path, python: str) -> None:
    rendered = template({}, python)
    assert rendered["Resources"]["Function"]["Properties"]["Runtime"] == f"python{python}"
    assert lint(tmp_path, rendered) == []


def test_the_template_runs_the_entry_handler_on_the_running_python_with_the_app_in_asgiscale_app() -> None:
    text = render("lambda", config(), LambdaOptions())["template.yaml"]
    rendered = document(text)
    assert rendered["Transform"] == "AWS::Serverless-2016-10-31"
    function = rendered["Resources"]["Function"]
    assert function["Type"] == "AWS::Serverless::Function"
    properties = function["Properties"]
    assert properties["Runtime"] == f"python{RUNNING}"
    assert properties["Handler"] == "asgiscale.serverless.entry.handler"
    assert properties["Environment"] == {"Variables": {"ASGISCALE_APP": "main:app"}}
    assert (properties["CodeUri"], properties["MemorySize"], properties["Timeout"]) == (".", 512, 30)
    assert properties["Architectures"] == ["x86_64"]
    assert not {"ReservedConcurrentExecutions", "AutoPublishAlias", "ProvisionedConcurrencyConfig"} & set(properties)
    assert SECRET not in text


def test_the_http_api_routes_every_method_and_path_with_payload_2_0_and_outputs_its_url() -> None:
    rendered = template({"timeout": 120})
    assert rendered["Resources"]["HttpApi"] == {"Type": "AWS::Serverless::HttpApi"}
    events = rendered["Resources"]["Function"]["Properties"]["Events"]
    routes = {e["Properties"]["Path"]: e["Properties"] for e in events.values()}
    assert set(routes) == {"/", "/{proxy+}"}
    for route in routes.values():
        assert (route["Method"], route["PayloadFormatVersion"], route["ApiId"]) == ("ANY", "2.0", {"Ref": "HttpApi"})
        assert route["TimeoutInMillis"] == 30000  # the HTTP API's most, below the function's 120 s
    assert {e["Type"] for e in events.values()} == {"HttpApi"}
    url = rendered["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]
    assert url == "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"


def test_lifespan_and_root_path_follow_the_config_and_a_factory_is_refused(tmp_path: Path) -> None:
    rendered = sam.render(config(lifespan="off", root_path="/api"), LambdaOptions(), python=RUNNING)
    variables = rendered["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert variables == {"ASGISCALE_APP": "main:app", "ASGISCALE_LIFESPAN": "off", "ASGISCALE_ROOT_PATH": "/api"}
    assert lint(tmp_path, rendered) == []
    with pytest.raises(ValueError, match="^the Lambda handler imports an app, not a factory"):
        sam.render(config(factory=True), LambdaOptions(), python=RUNNING)


def test_concurrency_controls() -> None:
    reserved = template({"reserved_concurrency": 50})["Resources"]["Function"]["Properties"]
    assert reserved["ReservedConcurrentExecutions"] == 50 and "AutoPublishAlias" not in reserved
    # Provisioned concurrency lives on a published version behind an alias, which the routes then invoke.
    both = template({"reserved_concurrency": 10, "provisioned_concurrency": 4})["Resources"]["Function"]["Properties"]
    assert both["AutoPublishAlias"] == "live"
    assert both["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 4}
    assert both["ReservedConcurrentExecutions"] == 10


def test_a_python_lambda_does_not_run_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^Python 3\.10 is not a Lambda runtime asgiscale deploys to \(3\.11, "):
        template({}, "3.10")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"memory": 100}, "--memory 100 is below Lambda's 128 MB minimum"),
        ({"memory": 10241}, "--memory 10241 is above Lambda's 10240 MB maximum"),
        ({"timeout": 901}, "--timeout 901 is above Lambda's 900 s maximum"),
        ({"timeout": 0}, "--timeout 0 is below Lambda's 1 s minimum"),
        ({"architecture": "arm7"}, "--architecture must be one of x86_64, arm64, got 'arm7'"),
        ({"reserved_concurrency": 0}, "--reserved-concurrency 0 would refuse every invocation; give 1 or more"),
        ({"provisioned_concurrency": 0}, "--provisioned-concurrency must be 1 or more, got 0"),
        ({"reserved_concurrency": 2, "provisioned_concurrency": 3}, "--provisioned-concurrency 3 is above"),
    ],
)
def test_lambda_options_outside_lambdas_limits_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        LambdaOptions(**options)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


# -- cloudrun: the Knative Service Cloud Run takes --------------------------------------------------------------------

CLOUD_RUN_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "defaults": ({}, {}),
    "health path": ({}, {"health_path": "/healthz"}),
    "admission control, 2 CPUs": ({"max_concurrency": 16}, {"cpu_limit": "2", "memory_limit": "2Gi"}),
    "always-on CPU, warm": (
        {},
        {"cpu_throttling": False, "startup_cpu_boost": False, "min_instances": 1, "max_instances": 20},
    ),
    "fractional CPU": ({}, {"cpu_limit": "500m", "memory_limit": "256Mi"}),
    "largest": ({}, {"cpu_limit": "8", "memory_limit": "32Gi", "concurrency": 1000, "timeout": 3600}),
    "explicit workers and concurrency": ({}, {"workers_per_instance": 3, "concurrency": 12, "timeout": 60}),
}


def service(settings: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    text = render("cloudrun", config(**settings), CloudRunOptions(image=IMAGE, **options))["service.yaml"]
    assert SECRET not in text
    return document(text)


def app_container(rendered: dict[str, Any]) -> dict[str, Any]:
    containers = rendered["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.mark.parametrize("variant", CLOUD_RUN_VARIANTS)
def test_every_cloud_run_variant_passes_the_knative_service_schema(variant: str) -> None:
    rendered = service(*CLOUD_RUN_VARIANTS[variant])
    tools.validate_crd_object(rendered)
    assert (rendered["apiVersion"], rendered["kind"]) == ("serving.knative.dev/v1", "Service")


@pytest.mark.parametrize("variant", CLOUD_RUN_VARIANTS)
def test_the_container_listens_on_the_one_port_cloud_run_sends_to_and_sets_as_port(variant: str) -> None:
    container = app_container(service(*CLOUD_RUN_VARIANTS[variant]))
    assert container["ports"] == [{"name": "http1", "containerPort": APP_PORT}]
    assert container["command"] == ["asgiscale"] and container["args"][:2] == ["run", "main:app"]
    assert (flag(container["args"], "--host"), flag(container["args"], "--port")) == ("0.0.0.0", str(APP_PORT))
    assert flag(container["args"], "--admin") == "127.0.0.1:9000"  # not routed, not exposed
    assert "PORT" not in {variable["name"] for variable in container.get("env", [])}  # Cloud Run's to set


@pytest.mark.parametrize("variant", CLOUD_RUN_VARIANTS)
def test_probes_use_the_serving_port_within_cloud_runs_limits(variant: str) -> None:
    settings, options = CLOUD_RUN_VARIANTS[variant]
    container = app_container(service(settings, options))
    startup = container["startupProbe"]
    action = startup.get("httpGet") or startup["tcpSocket"]
    assert action["port"] == APP_PORT
    assert startup["failureThreshold"] * startup["periodSeconds"] <= STARTUP_LIMIT
    assert startup["failureThreshold"] * startup["periodSeconds"] >= config(**settings).startup_timeout
    for probe in (startup, container.get("livenessProbe") or startup):
        assert probe["timeoutSeconds"] <= probe["periodSeconds"]
    if options.get("health_path"):
        assert startup["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["port"] == APP_PORT
    else:
        assert "livenessProbe" not in container and "httpGet" not in startup


@pytest.mark.parametrize("variant", CLOUD_RUN_VARIANTS)
def test_no_security_context_cloud_run_would_not_take(variant: str) -> None:
    rendered = service(*CLOUD_RUN_VARIANTS[variant])
    assert "securityContext" not in rendered["spec"]["template"]["spec"]
    assert "securityContext" not in app_container(rendered)


def test_the_annotations_carry_bounds_cpu_allocation_and_boost() -> None:
    annotations = service({}, {})["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "autoscaling.knative.dev/minScale": "0",
        "autoscaling.knative.dev/maxScale": "100",
        "run.googleapis.com/cpu-throttling": "true",
        "run.googleapis.com/startup-cpu-boost": "true",
        "run.googleapis.com/execution-environment": "gen2",
    }
    _, options = CLOUD_RUN_VARIANTS["always-on CPU, warm"]
    warm = service({}, options)["spec"]["template"]["metadata"]["annotations"]
    assert (warm["autoscaling.knative.dev/minScale"], warm["autoscaling.knative.dev/maxScale"]) == ("1", "20")
    assert (warm["run.googleapis.com/cpu-throttling"], warm["run.googleapis.com/startup-cpu-boost"]) == (
        "false",
        "false",
    )
    _, options = CLOUD_RUN_VARIANTS["fractional CPU"]
    fractional = service({}, options)["spec"]["template"]["metadata"]["annotations"]
    assert fractional["run.googleapis.com/execution-environment"] == "gen1"


def test_container_concurrency_is_what_the_workers_admit_together() -> None:
    def concurrency(settings: dict[str, Any], options: dict[str, Any]) -> int:
        return service(settings, options)["spec"]["template"]["spec"]["containerConcurrency"]  # type: ignore[no-any-return]

    assert concurrency({}, {}) == 80
    assert concurrency({"max_concurrency": 16}, {}) == 16
    assert concurrency({"max_concurrency": 16}, {"cpu_limit": "2", "memory_limit": "2Gi"}) == 32  # two workers
    assert concurrency({"max_concurrency": 16}, {"concurrency": 5}) == 5
    assert concurrency({}, {"cpu_limit": "0.5"}) == 1  # Cloud Run's rule below one CPU
    with pytest.raises(ValueError, match=r"^max_concurrency 300 x 4 worker\(s\) is 1200 requests per instance"):
        service({"max_concurrency": 300}, {"cpu_limit": "4", "memory_limit": "4Gi"})


def test_workers_drain_and_watchdog_fit_cloud_run() -> None:
    args = app_container(service({"graceful_timeout": 60}, {"cpu_limit": "4", "memory_limit": "4Gi"}))["args"]
    assert flag(args, "--workers") == "4"  # one per CPU
    assert float(flag(args, "--graceful-timeout") or "inf") < 10  # SIGKILL comes 10 s after SIGTERM
    assert flag(args, "--shutdown-delay") == "0"
    assert flag(args, "--worker-timeout") == "0"  # a throttled loop cannot beat on time
    always_on = app_container(service({}, {"cpu_throttling": False}))["args"]
    assert "--worker-timeout" not in always_on
    resources = app_container(service({}, {"cpu_limit": "2", "memory_limit": "1Gi"}))["resources"]
    assert resources == {"limits": {"cpu": "2", "memory": "1Gi"}}


@settings(max_examples=60, deadline=None)
@given(
    startup_timeout=st.floats(min_value=0, max_value=5000),
    cpu=st.sampled_from(["1", "2", "4", "6", "8", "250m", "0.5", "1000m"]),
    health=st.booleans(),
    throttled=st.booleans(),
)
def test_any_valid_options_give_a_valid_service(
    startup_timeout: float, cpu: str, health: bool, throttled: bool
) -> None:
    memory = {"4": "4Gi", "6": "8Gi", "8": "8Gi"}.get(cpu, "512Mi")
    options = {"cpu_limit": cpu, "memory_limit": memory, "health_path": "/up" if health else ""}
    options["cpu_throttling"] = throttled or cpu in ("250m", "0.5")
    rendered = service({"startup_timeout": startup_timeout}, options)
    tools.validate_crd_object(rendered)
    startup = app_container(rendered)["startupProbe"]
    assert 1 <= startup["failureThreshold"] * startup["periodSeconds"] <= STARTUP_LIMIT


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image": ""}, "give --image"),
        ({"concurrency": 1001}, "--concurrency 1001 is above Cloud Run's 1000 maximum"),
        ({"concurrency": 0}, "--concurrency 0 is below Cloud Run's 1 minimum"),
        ({"timeout": 3601}, "--timeout 3601 is above Cloud Run's 3600 s maximum"),
        ({"min_instances": 5, "max_instances": 2}, "--min-instances 5 is above --max-instances 2"),
        ({"cpu_limit": "3"}, "--cpu-limit 3: Cloud Run takes 1, 2, 4, 6 or 8 CPUs"),
        ({"cpu_limit": "0.5", "concurrency": 8}, "--cpu-limit 0.5 (below 1) takes --concurrency 1"),
        ({"cpu_limit": "0.5", "cpu_throttling": False}, "--cpu-limit 0.5 (below 1) needs --cpu-throttling"),
        ({"memory_limit": "64Mi"}, "--memory-limit 64Mi does not fit --cpu-limit 1"),
        ({"cpu_limit": "4", "memory_limit": "1Gi"}, "--memory-limit 1Gi does not fit --cpu-limit 4"),
        ({"memory_limit": "lots"}, "--cpu-limit '1' or --memory-limit 'lots' is not a quantity"),
        ({"health_path": "healthz"}, "--health-path must be a path like /healthz"),
        ({"app_name": "Shop_1"}, "--name 'Shop_1' is not a DNS label"),
    ],
)
def test_cloud_run_options_outside_cloud_runs_limits_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        CloudRunOptions(**{"image": IMAGE, **options})
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


# -- the real command ----------------------------------------------------------------------------------------------


def asgiscale(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("asgiscale", path=sysconfig.get_path("scripts"))
    command = [exe] if exe else [sys.executable, "-m", "asgiscale"]
    return subprocess.run(
        [*command, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "ASGISCALE_SSL_KEYFILE_PASSWORD": SECRET},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "requirements.txt").write_text("asgiscale\nfastapi\n")
    return tmp_path / "project"


def test_both_targets_are_registered() -> None:
    assert {"lambda", "cloudrun"} <= set(TARGETS) == set(DEFAULT_OUT)


def test_deploy_lambda_writes_a_template_cfn_lint_passes_next_to_the_code(project: Path) -> None:
    result = asgiscale("deploy", "lambda", "main:app", "--memory", "1024", "--architecture", "arm64", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("wrote template.yaml\n", "")
    assert tools.cfn_lint(project / "template.yaml") == []
    text = (project / "template.yaml").read_text()
    assert SECRET not in text
    properties = document(text)["Resources"]["Function"]["Properties"]
    assert (properties["MemorySize"], properties["Architectures"], properties["CodeUri"]) == (1024, ["arm64"], ".")


def test_deploy_lambda_elsewhere_points_code_uri_back_at_the_project(project: Path) -> None:
    out = project / "deploy" / "aws"
    args = ["--out", out, "--reserved-concurrency", "8", "--provisioned-concurrency", "2", "--timeout", "60"]
    result = asgiscale("deploy", "lambda", "main:app", *args, cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "note: the HTTP API waits 30 s at most for the function, whatever --timeout is\n"
    assert tools.cfn_lint(out / "template.yaml") == []
    code_uri = document((out / "template.yaml").read_text())["Resources"]["Function"]["Properties"]["CodeUri"]
    assert code_uri == "../.." and (out / code_uri / "requirements.txt").is_file()


def test_deploy_cloudrun_writes_a_service_the_knative_schema_accepts(project: Path) -> None:
    args = ["--image", IMAGE, "--max-instances", "20", "--health-path", "/healthz", "--cpu-limit", "2"]
    result = asgiscale("deploy", "cloudrun", "main:app", *args, "--memory-limit", "1Gi", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("wrote deploy/cloudrun/service.yaml\n", "")
    text = (project / "deploy" / "cloudrun" / "service.yaml").read_text()
    assert text.startswith("# Written by `asgiscale deploy cloudrun`. Deploy: gcloud run services replace")
    assert SECRET not in text
    rendered = document(text)
    tools.validate_crd_object(rendered)
    assert rendered["metadata"]["name"] == "shop"
    assert rendered["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/maxScale"] == "20"
    assert flag(app_container(rendered)["args"], "--workers") == "2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lambda", "--memory", "100"], "--memory 100 is below Lambda's 128 MB minimum"),
        (["lambda", "--timeout", "901"], "--timeout 901 is above Lambda's 900 s maximum"),
        (["lambda", "--reserved-concurrency", "2", "--provisioned-concurrency", "3"], "--provisioned-concurrency 3"),
        (["lambda", "--architecture", "sparc"], "--architecture must be one of x86_64, arm64"),
        (["lambda", "--image", IMAGE, "--max-instances", "3"], "`asgiscale deploy lambda` takes no --image, --max-"),
        (["cloudrun"], "give --image"),
        (["cloudrun", "--image", IMAGE, "--concurrency", "1001"], "--concurrency 1001 is above Cloud Run's 1000"),
        (["cloudrun", "--image", IMAGE, "--timeout", "3601"], "--timeout 3601 is above Cloud Run's 3600 s maximum"),
        (["cloudrun", "--image", IMAGE, "--min-instances", "3", "--max-instances", "2"], "--min-instances 3 is above"),
        (["cloudrun", "--image", IMAGE, "--memory", "512"], "`asgiscale deploy cloudrun` takes no --memory"),
        (["kubernetes", "--image", IMAGE, "--memory", "512"], "`asgiscale deploy kubernetes` takes no --memory"),
        (["docker", "--timeout", "30"], "`asgiscale deploy docker` takes no --timeout"),
    ],
)
def test_bad_options_get_one_line_exit_2_and_no_file(project: Path, args: list[str], message: str) -> None:
    result = asgiscale("deploy", args[0], "main:app", *args[1:], cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith(f"asgiscale: error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in project.rglob("*")) == ["requirements.txt"]


def test_deploy_lambda_needs_requirements_listing_asgiscale(project: Path) -> None:
    (project / "requirements.txt").write_text("fastapi\n")
    result = asgiscale("deploy", "lambda", "main:app", cwd=project)
    assert result.returncode == 2
    assert (
        result.stderr == "asgiscale: error: requirements.txt does not list asgiscale, which the function runs; add it\n"
    )
    assert not (project / "template.yaml").exists()
