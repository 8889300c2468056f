"""A production Dockerfile (and .dockerignore) for a Config: pure text, no I/O.

* two stages: dependencies are installed into a virtual environment in the first, before
  the source is copied, so a code change does not reinstall them; the second stage gets the
  environment and the source, nothing else (no compiler, no pip cache);
* a slim Python base, pinned and overridable (`--build-arg BASE=…`);
* a numeric non-root user; the source stays owned by root, so the app cannot rewrite it;
* exec-form `CMD`, so SIGTERM reaches `asgiscale run` (PID 1) and it drains;
* a `HEALTHCHECK` on the admin server's `/healthz` with Python's own urllib: no curl.

    >>> files = render(Config(app="main:app"), python="3.11")
    >>> 'CMD ["asgiscale", "run", "main:app"' in files["Dockerfile"]
    True
"""

from __future__ import annotations

import json

from asgiscale.config import Config
from asgiscale.deploy.kubernetes import serve_args
from asgiscale.deploy.options import ADMIN_PORT, APP_PORT, UID

# Debian release of the slim base; it pins the system libraries beside the Python version.
DEBIAN = "bookworm"
REQUIREMENTS = "requirements.txt"

IGNORED = """\
# Kept out of the build context: faster builds, and no secret or local state in an image.
.git
.gitignore
.dockerignore
Dockerfile
**/__pycache__
**/*.py[cod]
.venv
venv
.env
.env.*
*.pem
*.key
.pytest_cache
.mypy_cache
.ruff_cache
.coverage*
htmlcov
dist
build
*.egg-info
node_modules
"""


def base_image(python: str) -> str:
    return f"python:{python}-slim-{DEBIAN}"


def render(config: Config, *, python: str) -> dict[str, str]:
    """`Dockerfile` and `.dockerignore` for serving `config.app` on `python` (like "3.11")."""
    # No --port: the image serves on 8000, or on the port a platform such as Cloud Run names in $PORT.
    command = json.dumps(["asgiscale", *serve_args(config, port=False)])
    healthcheck = json.dumps(
        [
            "python",
            "-c",
            f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{ADMIN_PORT}/healthz', timeout=2)",
        ]
    )
    base = base_image(python)
    dockerfile = f"""\
# syntax=docker/dockerfile:1
# Written by `asgiscale deploy docker`. Build: docker build -t IMAGE . or podman build --format docker -t IMAGE .
# (podman's default OCI format has no HEALTHCHECK).
# Another base: --build-arg BASE=... (the fallbacks below repeat the default for tools that
# do not expand ARG, so they too see a pinned tag).
ARG BASE={base}

FROM ${{BASE:-{base}}} AS build
ENV PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first: this layer is rebuilt only when {REQUIREMENTS} changes.
COPY {REQUIREMENTS} ./
RUN pip install --no-cache-dir -r {REQUIREMENTS}

FROM ${{BASE:-{base}}}
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PATH=/opt/venv/bin:$PATH
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . .
USER {UID}:{UID}
EXPOSE {APP_PORT} {ADMIN_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\
    CMD {healthcheck}
CMD {command}
"""
    return {"Dockerfile": dockerfile, ".dockerignore": IGNORED}
