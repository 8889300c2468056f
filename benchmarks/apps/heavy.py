"""The FastAPI example's endpoints behind a 1 s import, standing in for an app with heavy imports.

Servers that import the app in every new worker pay this second each time; a server that forks
workers from a pre-loaded process pays it once.
"""

from __future__ import annotations

import os
import time

from fastapi import FastAPI

time.sleep(1)

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "Hello, World"}


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}
