"""The rendered Dockerfile and Deployment, built and run with podman: the container claims of issue 5.

One image is built per module from the real `asgiscale deploy docker` output for the probe app (tests/apps/probe.py:
no FastAPI, a `/slow?ms=N` endpoint), on the local Debian base image. asgiscale is not on PyPI, so a wheel of this
checkout is mounted into the build (`podman build --volume WHEELS:/wheels:ro`) and the project's requirements.txt
names it by file URL and hash; its dependencies come from PyPI. The Dockerfile itself is built as rendered.

Every container, pod and image is named `asgiscale-ctest-<random>` and removed by name in teardown. Requests go to
loopback only. The tests skip (with the reason) only when podman cannot run containers here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy import tools
from tests.utils import APPS, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
APP = "probe:app"
UID = 10001
# The image build downloads asgiscale's dependencies from PyPI: allow for a slow network (the file takes ~1 min).
pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class Image:
    tag: str
    context: Path  # the project directory: probe.py, requirements.txt and the rendered Dockerfile, .dockerignore
    wheels: Path  # mounted at /wheels during builds
    build_output: str


@pytest.fixture(scope="module")
def image(engine: tools.Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The probe app's image, built from the Dockerfile `asgiscale deploy docker` rendered for it."""
    base = tools.base_image()
    wheels = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)]
    run(pip, cwd=ROOT, timeout=300)
    (wheel,) = wheels.glob("asgiscale-*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()

    context = tmp_path_factory.mktemp("project")
    shutil.copy(APPS / "probe.py", context / "probe.py")
    # The hash makes requirements.txt (hence the cached pip layer) change whenever the wheel does.
    (context / "requirements.txt").write_text(f"asgiscale @ file:///wheels/{wheel.name}#sha256={digest}\n")
    cli = [sys.executable, "-m", "asgiscale", "deploy", "docker", APP, "--out", str(context)]
    run(cli, cwd=context)

    tag = f"localhost/asgiscale-ctest:{uuid.uuid4().hex[:10]}"
    try:
        # The dependency stage is tagged too, so that teardown removes its layers by name (with --layers, podman
        # keeps every step as an untagged image; removing a tag removes its untagged parents, not a sibling stage).
        build(engine, context, f"{tag}-deps", wheels, base, "--target", "build")
        output = build(engine, context, tag, wheels, base)
        yield Image(tag, context, wheels, output)
    finally:
        engine.run("rmi", "--force", "--ignore", tag, f"{tag}-deps", check=False)


def run(cmd: list[str], cwd: Path, timeout: float = 60) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"$ {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}"


def build(engine: tools.Podman, context: Path, tag: str, wheels: Path, base: str, *args: str) -> str:
    """`podman build` of the rendered Dockerfile as it is; returns its step-by-step output (stdout and stderr).

    `--format docker`: podman's default OCI image format has no HEALTHCHECK (buildah drops it with a warning);
    `docker build` always writes the Docker format, so this is what a Docker user gets.
    """
    cmd = [
        engine.exe,
        "build",
        "--format",
        "docker",
        "--layers",
        "--build-arg",
        f"BASE={base}",
        "--volume",
        f"{wheels}:/wheels:ro",
        "--tag",
        tag,
        *args,
        str(context),
    ]
    env = {**os.environ, "CONTAINERS_CONF": str(tools.CONTAINERS_CONF)}
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=900, check=False
    )
    if proc.returncode != 0:
        raise tools.ValidatorError(f"$ {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}")
    return proc.stdout


def cached_steps(output: str) -> dict[str, bool]:
    """Instruction -> whether podman reused a cached layer for it ("--> Using cache ...")."""
    steps: list[list[Any]] = []
    for line in output.splitlines():
        step = re.match(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: (.*)$", line)
        if step:
            steps.append([" ".join(step.group(1).split()), False])
        elif line.startswith("--> Using cache") and steps:
            steps[-1][1] = True
    return {instruction: cached for instruction, cached in steps}


def step(steps: dict[str, bool], prefix: str) -> bool:
    (found,) = [cached for instruction, cached in steps.items() if instruction.startswith(prefix)]
    return found


def instructions(dockerfile: str) -> list[list[str]]:
    """The Dockerfile's instructions split into stages (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    stages: list[list[str]] = [[]]
    for line in joined.splitlines():
        line = " ".join(line.split())
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages[1:]


def index(stage: list[str], prefix: str) -> int:
    (found,) = [i for i, line in enumerate(stage) if line.startswith(prefix)]
    return found


# -- the image -----------------------------------------------------------------------------------------------------


def test_the_build_honours_the_rendered_layer_order(engine: tools.Podman, image: Image) -> None:
    build_stage, final = instructions((image.context / "Dockerfile").read_text())
    # As rendered: dependencies before the source; the final stage gets the environment, then the source, then USER.
    assert index(build_stage, "COPY requirements.txt") < index(build_stage, "RUN pip install")
    assert not [line for line in build_stage if line.startswith("COPY . ")]
    assert index(final, "COPY --from=build /opt/venv") < index(final, "COPY . .") < index(final, "USER ")
    assert index(final, "USER ") < index(final, "CMD ")

    # As built: the same steps in the same order, the dependency stage entirely from the cache of the fixture's
    # first (`--target build`) build.
    steps = cached_steps(image.build_output)
    assert [s for s in steps if s.startswith(("COPY", "RUN"))] == [
        line for line in [*build_stage, *final] if line.startswith(("COPY", "RUN"))
    ]
    assert step(steps, "RUN pip install") is True

    config = json.loads(engine.run("image", "inspect", image.tag).stdout)[0]
    assert config["Config"]["User"] == f"{UID}:{UID}"
    assert config["Config"]["Cmd"][:3] == ["asgiscale", "run", APP]  # exec form: asgiscale is PID 1
    assert {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"} <= set(config["Config"]["Env"])
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python"]


def test_a_source_change_reuses_the_dependency_layer_and_a_requirements_change_does_not(
    engine: tools.Podman, image: Image, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    shutil.copytree(image.context, source)
    probe = source / "probe.py"
    probe.write_text(probe.read_text().replace('VERSION = "1"', f'VERSION = "{uuid.uuid4().hex}"'))
    requirements = tmp_path / "requirements"
    shutil.copytree(image.context, requirements)
    with (requirements / "requirements.txt").open("a") as file:
        file.write(f"# {uuid.uuid4().hex}\n")
    base = tools.base_image()
    tags = [f"{image.tag}-source", f"{image.tag}-requirements"]
    try:
        steps = cached_steps(build(engine, source, tags[0], image.wheels, base))
        assert step(steps, "RUN pip install") is True
        assert step(steps, "COPY . .") is False
        # The dependency stage alone is enough to show pip runs again (and keeps the layers removable by tag).
        output = build(engine, requirements, tags[1], image.wheels, base, "--target", "build")
        assert step(cached_steps(output), "RUN pip install") is False
        assert "Successfully installed" in output
    finally:
        engine.run("rmi", "--force", "--ignore", *tags, check=False)


# -- the container -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    name: str
    url: str
    admin: str


@pytest.fixture
def container(engine: tools.Podman, image: Image) -> Iterator[Container]:
    """The image run as rendered (its own CMD), read-only with a tmpfs on /tmp, both ports on loopback."""
    name, port, admin = f"asgiscale-ctest-{uuid.uuid4().hex[:10]}", free_port(), free_port()
    try:
        publish = [f"127.0.0.1:{port}:8000", f"127.0.0.1:{admin}:9000"]
        engine.start(image.tag, name, "--read-only", "--tmpfs", "/tmp", publish=publish)
        running = Container(name, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}")
        wait_ready(engine, running)
        yield running
    finally:
        engine.remove(name)


def wait_ready(engine: tools.Podman, running: Container) -> None:
    try:
        wait_for(
            lambda: status(running.admin + "/readyz") == 200, timeout=60, what="/readyz to answer 200", interval=0.2
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{engine.logs(running.name)}") from None


def status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def proc_status(engine: tools.Podman, name: str) -> dict[str, str]:
    """PID 1's /proc/1/status inside the container, as field -> value."""
    text = engine.run("exec", name, "cat", "/proc/1/status").stdout
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def pid1_command(engine: tools.Podman, name: str) -> list[str]:
    return engine.run("exec", name, "cat", "/proc/1/cmdline").stdout.rstrip("\0").split("\0")


def test_the_container_serves_as_uid_10001_and_its_healthcheck_passes(
    engine: tools.Podman, container: Container
) -> None:
    answer = httpx.get(container.url + "/", timeout=10)
    assert answer.status_code == 200 and answer.text.startswith("1 ")  # the probe app, VERSION "1"
    assert httpx.get(container.admin + "/readyz", timeout=10).status_code == 200

    pid1 = proc_status(engine, container.name)
    assert pid1["Uid"].split() == [str(UID)] * 4 and pid1["Gid"].split() == [str(UID)] * 4
    # PID 1 is asgiscale itself (exec-form CMD, no shell in between), so `podman stop`'s SIGTERM reaches it.
    assert pid1_command(engine, container.name)[1:4] == ["/opt/venv/bin/asgiscale", "run", APP]
    assert engine.run("exec", container.name, "id", "-u").stdout.strip() == str(UID)

    # The image's HEALTHCHECK, run on demand: podman 4.3 schedules healthchecks with systemd timers, and there is no
    # systemd here (it logs "unable to get systemd connection"), so nothing runs it on its interval.
    check = engine.run("healthcheck", "run", container.name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    state = json.loads(engine.run("inspect", container.name).stdout)[0]["State"]
    health = state.get("Health") or state["Healthcheck"]
    assert health["Status"] == "healthy" and health["Log"][-1]["ExitCode"] == 0


def test_the_image_serves_on_the_port_the_platform_names_in_PORT(engine: tools.Podman, image: Image) -> None:
    # What Cloud Run does with the image alone: it sets $PORT (8080 unless told otherwise) and sends requests there.
    name, port, admin = f"asgiscale-ctest-{uuid.uuid4().hex[:10]}", free_port(), free_port()
    try:
        publish = [f"127.0.0.1:{port}:8080", f"127.0.0.1:{admin}:9000"]
        engine.start(image.tag, name, "--read-only", "--tmpfs", "/tmp", "--env", "PORT=8080", publish=publish)
        running = Container(name, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}")
        wait_ready(engine, running)
        assert httpx.get(running.url + "/", timeout=10).text.startswith("1 ")
    finally:
        engine.remove(name)


def test_the_healthcheck_fails_when_the_admin_server_does_not_answer(engine: tools.Podman, image: Image) -> None:
    # The same HEALTHCHECK against a server started without its admin server: it must report unhealthy.
    name = f"asgiscale-ctest-{uuid.uuid4().hex[:10]}"
    command = ["asgiscale", "run", APP, "--host", "0.0.0.0", "--port", "8000", "--no-admin"]
    try:
        engine.run("run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp", image.tag, *command)
        wait_for(
            lambda: "ready (generation 1)" in engine.logs(name), timeout=60, what="the worker to start", interval=0.2
        )
        check = engine.run("healthcheck", "run", name, check=False)
        assert check.returncode == 1 and "unhealthy" in check.stdout + check.stderr
    finally:
        engine.remove(name)


def test_podman_stop_drains_an_in_flight_request_and_exits_0(engine: tools.Podman, container: Container) -> None:
    responses: list[httpx.Response] = []
    errors: list[Exception] = []

    def slow() -> None:
        try:
            responses.append(httpx.get(container.url + "/slow?ms=3000", timeout=60))
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    request = threading.Thread(target=slow, daemon=True)
    request.start()

    def in_flight() -> bool:
        return bool(httpx.get(container.admin + "/status", timeout=5).json()["totals"]["in_flight"] >= 1)

    wait_for(in_flight, timeout=10, what="the slow request to be in flight", interval=0.1)

    # SIGTERM first; SIGKILL (exit 137) only after 30 s, far beyond the 3 s request.
    assert engine.stop(container.name, timeout=30) == 0, engine.logs(container.name)
    request.join(30)
    assert not errors and len(responses) == 1, errors
    assert responses[0].status_code == 200 and responses[0].text.startswith("1 ")

    log = engine.logs(container.name)
    assert re.search(r"Stopping: serving \S+ more, then draining for up to \S+\.", log), log
    for line in (
        "Closing the listener; draining 1 worker(s).",
        '"GET /slow?ms=3000 HTTP/1.1" 200',
        "asgiscale stopped.",
    ):
        assert line in log, log
    # The request finished after the listener closed: it was drained, not served before the stop.
    lines = timeline(engine, container.name)
    closed = next(i for i, line in enumerate(lines) if "Closing the listener" in line)
    served = next(i for i, line in enumerate(lines) if '"GET /slow?ms=3000 HTTP/1.1" 200' in line)
    assert closed < served, "\n".join(lines)


def timeline(engine: tools.Podman, name: str) -> list[str]:
    """The container's stdout and stderr lines in the order they were written (`podman logs` prints the two
    streams one after the other; its timestamps restore the order)."""
    proc = engine.run("logs", "--timestamps", name)
    stamped = []
    for line in (proc.stdout + proc.stderr).splitlines():
        stamp, _, text = line.partition(" ")
        found = re.fullmatch(r"(\S+?T[\d:]+)(?:\.(\d+))?(\S*)", stamp)
        if found:
            stamped.append(((found.group(1), (found.group(2) or "").ljust(9, "0")), text))
    return [text for _, text in sorted(stamped, key=lambda pair: pair[0])]


# -- the Deployment, played by podman ------------------------------------------------------------------------------


def test_kube_play_runs_the_rendered_deployment_with_its_security_context(
    engine: tools.Podman, image: Image, tmp_path: Path
) -> None:
    name = f"asgiscale-ctest-{uuid.uuid4().hex[:10]}"
    out = tmp_path / "kubernetes"
    cli = [sys.executable, "-m", "asgiscale", "deploy", "kubernetes", APP, "--image", image.tag]
    cli += ["--name", name, "--namespace", "shop", "--out", str(out)]
    run(cli, cwd=image.context)
    (rendered,) = list(yaml.safe_load_all((out / "deployment.yaml").read_text()))
    assert rendered["kind"] == "Deployment"

    # The test's copy differs from the rendered file in two things only, both for podman's sake:
    # - imagePullPolicy Never (rendered: Always), since the image exists only in local storage;
    # - hostIP/hostPort on the two containerPorts: podman 4.3 has no --publish for kube play and publishes every
    #   containerPort on the host, on 0.0.0.0 at the same number unless hostIP/hostPort say otherwise. This keeps
    #   the pod on loopback and on free ports (8000/9000 may be taken).
    played = json.loads(json.dumps(rendered))
    spec = played["spec"]["template"]["spec"]
    (app,) = spec["containers"]
    assert app["imagePullPolicy"] == "Always"
    app["imagePullPolicy"] = "Never"
    ports = {p["name"]: p for p in app["ports"]}
    assert {n: p["containerPort"] for n, p in ports.items()} == {"http": 8000, "admin": 9000}
    app_port, admin_port = free_port(), free_port()
    ports["http"].update(hostIP="127.0.0.1", hostPort=app_port)
    ports["admin"].update(hostIP="127.0.0.1", hostPort=admin_port)
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(played, sort_keys=False))

    ctr = f"{name}-pod-0-{app['name']}"  # podman 4.3 names a Deployment's pod NAME-pod-0
    running = Container(ctr, f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{admin_port}")
    try:
        engine.kube_play(manifest)
        wait_ready(engine, running)
        answer = httpx.get(running.url + "/", timeout=10)
        assert answer.status_code == 200 and answer.text.startswith("1 ")

        pod, container_security = spec["securityContext"], app["securityContext"]
        assert container_security["runAsUser"] == pod["runAsUser"] == UID
        pid1 = proc_status(engine, ctr)
        assert pid1["Uid"].split() == [str(UID)] * 4 and pid1["Gid"].split() == [str(UID)] * 4
        # capabilities.drop [ALL]: none effective, permitted or even in the bounding set (podman run's default
        # bounding set is not empty).
        assert container_security["capabilities"] == {"drop": ["ALL"]}
        assert pid1["CapEff"] == pid1["CapPrm"] == pid1["CapBnd"] == "0000000000000000"
        assert container_security["allowPrivilegeEscalation"] is False and pid1["NoNewPrivs"] == "1"
        assert container_security["seccompProfile"] == {"type": "RuntimeDefault"} and pid1["Seccomp"] == "2"
        # readOnlyRootFilesystem, with the emptyDir on /tmp writable.
        assert container_security["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in app["volumeMounts"]
        write = "touch /app/x 2>&1 || true; touch /tmp/x && echo tmp-writable"
        written = engine.run("exec", ctr, "sh", "-c", write).stdout
        assert "Read-only file system" in written and "tmp-writable" in written
        # PID 1 runs the rendered command and args.
        assert pid1_command(engine, ctr)[1:] == ["/opt/venv/bin/asgiscale", *app["args"]]
    finally:
        engine.kube_down(manifest)
        engine.run("pod", "rm", "--force", "--ignore", f"{name}-pod-0", check=False)
