"""An in-process controller manager for tests: the subnet validator and IPAM against a running apiserver."""

from __future__ import annotations

from typing import Any

from kos.apiserver.server import APIServer
from kos.controllers.manager import ControllerManager, Settings


async def start_cm(server: APIServer, seed: int = 1, **settings: Any) -> ControllerManager:
    """Started against `server` (metrics on a free port, address choice seeded); the caller stops it."""
    cm = ControllerManager(Settings(server=server.url, metrics_port=0, seed=seed, **settings))
    await cm.start()
    return cm
