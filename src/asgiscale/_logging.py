"""Logging setup shared by the supervisor and the workers: uvicorn's format, our loggers."""

from __future__ import annotations

import copy
import logging
import logging.config
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import TRACE_LOG_LEVEL


def log_config(level: str, use_colors: bool | None) -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    if use_colors is not None:
        config["formatters"]["default"]["use_colors"] = use_colors
        config["formatters"]["access"]["use_colors"] = use_colors
    config["loggers"]["asgiscale"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def configure(level: str, use_colors: bool | None) -> dict[str, Any]:
    """Apply the configuration in this process and return it for the pre-loaded processes."""
    config = log_config(level, use_colors)
    logging.config.dictConfig(config)
    numeric = TRACE_LOG_LEVEL if level == "trace" else logging.getLevelName(level.upper())
    logging.getLogger("asgiscale").setLevel(numeric)
    return config
