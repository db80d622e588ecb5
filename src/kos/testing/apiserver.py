"""An in-process apiserver on 127.0.0.1:<free port>, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from kos.apiserver.server import APIServer, Settings


@contextlib.asynccontextmanager
async def running_apiserver(storage: str = "memory://", **settings: Any) -> AsyncIterator[APIServer]:
    s = dataclasses.replace(Settings(storage=storage, host="127.0.0.1", port=0), **settings)
    server = APIServer(s)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
