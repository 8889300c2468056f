"""asgiscale: run any ASGI app at scale."""

from __future__ import annotations

from asgiscale.config import Config, ConfigError
from asgiscale.main import run

__version__ = "0.1.0"

__all__ = ["Config", "ConfigError", "__version__", "run"]
