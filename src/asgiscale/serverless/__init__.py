"""Serverless adapters: the ASGI app as an AWS Lambda handler or a Google Cloud Function.

from asgiscale.serverless import lambda_handler
handler = lambda_handler(app)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from asgiscale.serverless._asgi import LifespanError
from asgiscale.serverless._http import EventError, MalformedEvent, UnsupportedEvent
from asgiscale.serverless.aws_lambda import LambdaHandler, lambda_handler

if TYPE_CHECKING:
    from asgiscale.serverless.gcp import CloudFunction, cloud_function

__all__ = [
    "CloudFunction",
    "EventError",
    "LambdaHandler",
    "LifespanError",
    "MalformedEvent",
    "UnsupportedEvent",
    "cloud_function",
    "lambda_handler",
]

# Imported on first use: the Cloud Functions adapter needs flask, which a Lambda bundle lacks.
_LAZY = {"CloudFunction": "asgiscale.serverless.gcp", "cloud_function": "asgiscale.serverless.gcp"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
