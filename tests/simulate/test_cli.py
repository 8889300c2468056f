"""`asgiscale simulate` as a user runs it: a real process, real files, the report it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# What `asgiscale bench --write-config` leaves in the config file, and a self-scaling policy.
CONFIG = """
app = "main:app"
min_workers = 1
max_workers = 12
scale_targets = ["concurrency=4"]
max_concurrency = 8

[scale.capacity]
objective = "p99=50ms"
measured = "2026-11-20T10:00:00Z"
rps_per_worker = 400.0
concurrency_per_worker = 6.0
cpu_per_worker = 0.9
"""
# The same bounds, scaling on CPU, with a fast scale-down.
OTHER = """
min_workers = 1
max_workers = 12
scale_targets = ["cpu=60"]

[scale.behavior.scaleDown]
stabilizationWindowSeconds = 30
"""
SPIKE = "spike:base=200,peak=2400,at=120,length=300,duration=900"


def simulate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asgiscale", "simulate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "asgiscale.toml").write_text(CONFIG)
    (tmp_path / "other.toml").write_text(OTHER)
    return tmp_path


def test_compares_two_policies_on_one_trace_and_writes_the_report(project: Path) -> None:
    done = simulate(project, "--trace", SPIKE, "--compare", "other.toml", "--out", "report")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{SPIKE}: 15 min, peak 2,400 req/s")
    assert any(line.startswith("│ config ") for line in lines), done.stdout
    assert any(line.startswith("│ other.toml ") for line in lines), done.stdout
    report = json.loads((project / "report" / "report.json").read_text())
    config, other = report["runs"]
    assert config["about"] == "hpa: concurrency=4, 1 to 12 replicas"
    assert other["about"] == "hpa: cpu=60, 1 to 12 replicas"
    # One worker serves 400 req/s at most, and 8 at once (admission control): 8 / (6 / 400 s) = 533 > 400.
    assert report["service"]["capacity"] == 400.0
    assert report["service"]["service_time"] == pytest.approx(0.015)
    for run in (config, other):
        summary = run["summary"]
        assert summary["requests"] == 200 * 600 + 2400 * 300  # the spike's requests, whatever the policy
        assert summary["served"] + summary["shed"] + summary["dropped"] == pytest.approx(summary["requests"], abs=2)
        assert 1 < summary["replicas_max"] <= 12
        ups = [d for d in run["decisions"] if d[2] > d[1]]
        assert ups and ups[0][0] >= 120  # nothing to do before the spike
        # While it lasts, no scale-down below what it needs: 2,400 req/s at 15 ms is 36 in flight, 4 per
        # worker (9 workers); at 0.9 / 400 CPU-seconds per request it is 5.4 cores, at 60 % per worker (9).
        downs = [to for time, start, to in run["decisions"] if to < start and time < 420]
        assert min(downs, default=9) >= 9, run["decisions"]
    # Below 9 workers once the recommendations of the spike leave the scale-down stabilization window:
    # 300 s by default (the config), 30 s for the other policy (one sync of 15 s of slack each way).
    below = {run["policy"]: next(t for t, a, b in run["decisions"] if b < 9 <= a) for run in (config, other)}
    assert 420 + 300 - 15 <= below["config"] <= 420 + 300 + 30, config["decisions"]
    assert 420 + 30 - 15 <= below["other.toml"] <= 420 + 30 + 30, other["decisions"]
    page = (project / "report" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert '<td class="l">other.toml</td>' in page
    assert {p.name for p in (project / "report").iterdir()} == {
        "index.html",
        "report.json",
        "replicas.png",
        "load.png",
        "latency.png",
    }


def test_replays_the_hpa_that_deploy_writes(project: Path) -> None:
    deployed = subprocess.run(
        [sys.executable, "-m", "asgiscale", "deploy", "kubernetes", "--image", "shop:1", "--out", "k8s"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert deployed.returncode == 0, deployed.stderr
    done = simulate(project, "--trace", SPIKE, "--hpa", "k8s/hpa.yaml", "--compare", "k8s", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    manifest, directory = report["runs"]
    assert manifest["about"] == directory["about"] == "hpa: concurrency=4, 1 to 12 replicas"
    assert manifest["summary"] == directory["summary"]  # the same HPA read two ways decides the same


def test_day_long_trace_at_one_second_with_thousands_of_pods(project: Path) -> None:
    trace = "diurnal:low=20000,peak=1500000,duration=1d"
    done = simulate(project, "--trace", trace, "--max-replicas", "10000", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["runs"][0]["summary"]
    # 1.5M req/s at 4 in flight per worker of 15 ms requests: 267 req/s each, about 5,600 workers at the peak.
    assert 5000 <= summary["replicas_max"] <= 7000
    assert summary["duration"] == 86400


def test_a_status_history_is_a_trace(project: Path) -> None:
    points = [{"time": 1_700_000_000.0 + i, "rps": 100.0 if i < 30 else 900.0} for i in range(60)]
    (project / "status.json").write_text(json.dumps({"history": points}))
    done = simulate(project, "--trace", "status.json", "--platform", "local", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["trace"]["duration"] == 60
    assert report["runs"][0]["summary"]["requests"] == 100 * 30 + 900 * 30


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (["--trace", "missing.csv"], {}, "error: --trace 'missing.csv': no such file, and not a shape"),
        (
            ["--trace", "t.csv"],
            {"t.csv": "time,rps\n# warm\n0,10\n\n5,abc\n"},
            "error: t.csv:5: rps 'abc' is not a number",
        ),
        (
            ["--trace", "t.csv"],
            {"t.csv": "time,rsp\n0,1\n"},
            "error: t.csv:1: unknown column 'rsp'; did you mean 'rps'?",
        ),
        (["--trace", "spkie:peak=9"], {}, "error: trace shape 'spkie' is unknown; did you mean 'spike'?"),
        (["--trace", "step", "--policy", "none.toml"], {}, "error: none.toml: no such file"),
        (
            ["--trace", "step", "--hpa", "h.yaml"],
            {"h.yaml": "kind: ConfigMap\n"},
            "error: h.yaml: no HorizontalPodAutoscaler or Knative Service in it (found ConfigMap)",
        ),
        (["--trace", "step", "--step", "0.7"], {}, "error: the sync period (15 s) must be a whole number of steps"),
        (
            ["--trace", "step", "--min-replicas", "9", "--max-replicas", "3"],
            {},
            "error: --min-replicas 9 is above --max-replicas 3; lower one of them",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(project: Path, args: list[str], files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (project / name).write_text(text)
    done = simulate(project, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_without_a_measured_capacity_it_says_how_to_get_one(tmp_path: Path) -> None:
    (tmp_path / "asgiscale.toml").write_text("max_workers = 4\n")
    done = simulate(tmp_path, "--trace", "step")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: no service time: give --service-time SECONDS, or measure the app with asgiscale bench APP"
        " --write-config"
    )
