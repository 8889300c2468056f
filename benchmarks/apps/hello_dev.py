"""Development stand-in for examples/hello.py until it lands in the repo."""

from __future__ import annotations

import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "Hello, World"}


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}
