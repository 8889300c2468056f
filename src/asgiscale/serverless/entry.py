"""A ready-made Lambda handler for `asgiscale deploy lambda`: the app named by `ASGISCALE_APP`.

    Handler: asgiscale.serverless.entry.handler
    Environment: ASGISCALE_APP=main:app  (and ASGISCALE_LIFESPAN=auto|on|off, ASGISCALE_ROOT_PATH=/api)

The variables are the ones `asgiscale run` reads, with the same meaning; `ASGISCALE_ROOT_PATH`
is the handler's `base_path`. The app is imported when Lambda loads this module, in the init
phase, so the first request does not pay for it.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from asgiscale.serverless.aws_lambda import LambdaHandler


def load(spec: str) -> Any:
    """The object named by `module:attribute` (the attribute may be dotted); a one-line error
    naming what is wrong otherwise."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ImportError(f"ASGISCALE_APP={spec!r} is not of the form 'module:attribute', e.g. 'main:app'")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise  # the app's own import failed: its traceback is the useful one
        raise ImportError(f"ASGISCALE_APP={spec!r}: no module named {module_name!r} in the package") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ImportError(f"ASGISCALE_APP={spec!r}: {module_name!r} has no attribute {attribute!r}") from None
    return target


def _handler() -> LambdaHandler:
    spec = os.environ.get("ASGISCALE_APP", "")
    if not spec:
        raise ImportError("ASGISCALE_APP is not set; set it to the app's import string, e.g. 'main:app'")
    lifespan: Any = os.environ.get("ASGISCALE_LIFESPAN", "auto")
    return LambdaHandler(load(spec), lifespan=lifespan, base_path=os.environ.get("ASGISCALE_ROOT_PATH", ""))


handler = _handler()
