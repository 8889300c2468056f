"""asgiscale: run any ASGI app at scale."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Config", "ConfigError", "__version__", "run"]

if TYPE_CHECKING:
    from asgiscale.config import Config, ConfigError
    from asgiscale.main import run


def __getattr__(name: str) -> Any:
    # Loaded on first use: `asgiscale.serverless` on a cold Lambda start needs none of them.
    if name in ("Config", "ConfigError"):
        from asgiscale import config

        return getattr(config, name)
    if name == "run":
        from asgiscale.main import run

        return run
    raise AttributeError(f"module 'asgiscale' has no attribute {name!r}")
