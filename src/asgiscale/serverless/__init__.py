"""Serverless adapters: the ASGI app as an AWS Lambda handler or a Google Cloud Function.

from asgiscale.serverless import lambda_handler
handler = lambda_handler(app)
"""

from __future__ import annotations

from asgiscale.serverless._asgi import LifespanError
from asgiscale.serverless._http import EventError, MalformedEvent, UnsupportedEvent
from asgiscale.serverless.aws_lambda import LambdaHandler, lambda_handler

__all__ = ["EventError", "LambdaHandler", "LifespanError", "MalformedEvent", "UnsupportedEvent", "lambda_handler"]
