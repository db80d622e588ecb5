"""Polling until a condition holds, for tests of eventually-consistent behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def eventually(cond: Callable[[], Any], timeout: float = 8.0, interval: float = 0.02) -> None:
    """Wait until `cond()` (a value or a coroutine) is truthy; an AssertionError after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = cond()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(interval)
