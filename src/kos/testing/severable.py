"""An `API` that can be cut off: every call fails with 503 while `severed`, as a partitioned process sees.

For leader-election tests: two candidates share one `FakeAPI`, and one of them loses the apiserver.
"""

from __future__ import annotations

from typing import Any

from kos.api import errors


class SeverableAPI:
    """Forwards get/create/update to `api` unless `severed` (then ServiceUnavailable); `calls` counts them."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.severed = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.severed:
            raise errors.ServiceUnavailable("the apiserver cannot be reached (severed by the test)")

    async def get(self, *args: Any, **kw: Any) -> Any:
        self._check()
        return await self.api.get(*args, **kw)

    async def create(self, obj: Any) -> Any:
        self._check()
        return await self.api.create(obj)

    async def update(self, obj: Any) -> Any:
        self._check()
        return await self.api.update(obj)
