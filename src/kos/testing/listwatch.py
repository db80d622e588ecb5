"""A scripted list/watch source for reflector and informer unit tests.

`ScriptedListWatch` answers `list` with the current `state` (a streaming watch
starts with it too) and each `watch` call with the next script step: a list of events to yield, optionally followed
by an exception (a disconnect, a 410). It records the resourceVersion each
watch was started from, so tests can check that a reflector resumed correctly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from kos.client.watchevents import WatchEvent


def with_rv(obj: Any, rv: int) -> Any:
    return msgspec.structs.replace(obj, metadata=msgspec.structs.replace(obj.metadata, resource_version=str(rv)))


class ScriptedListWatch:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.revision = 0
        self.script: list[tuple[list[WatchEvent], BaseException | None]] = []
        self.watch_calls: list[str] = []
        self.list_calls = 0
        self.list_resource_versions: list[str] = []
        """The `resource_version` of each list call, in order ("": a consistent read)."""
        self.list_results: list[tuple[list[Any], int]] = []
        """Answers for the next `list` calls, in order; when empty, `list` returns the current state."""
        self.exhausted = asyncio.Event()
        self.stream_initial = True
        """Whether a streaming watch starts with the current state (False: the script alone, to test failures)."""

    def set(self, obj: Any) -> Any:
        """Store an object at the next revision (as the server would) and return it."""
        self.revision += 1
        obj = with_rv(obj, self.revision)
        self.state[f"{obj.metadata.namespace}/{obj.metadata.name}"] = obj
        return obj

    def remove(self, obj: Any) -> Any:
        self.revision += 1
        self.state.pop(f"{obj.metadata.namespace}/{obj.metadata.name}", None)
        return with_rv(obj, self.revision)

    def step(self, *events: WatchEvent, then: BaseException | None = None) -> None:
        self.script.append((list(events), then))

    async def list(
        self,
        cls: Any,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> tuple[list[Any], str]:
        self.list_calls += 1
        self.list_resource_versions.append(resource_version)
        if self.list_results:
            items, rv = self.list_results.pop(0)
            return items, str(rv)
        return list(self.state.values()), str(self.revision)

    async def watch(
        self,
        cls: Any,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
        send_initial_events: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        self.watch_calls.append(
            (f"stream@{resource_version}" if resource_version else "stream")
            if send_initial_events
            else resource_version
        )
        if send_initial_events and self.stream_initial:
            # a streaming list: the current state, the end bookmark, then the script
            for obj in self.state.values():
                yield WatchEvent("ADDED", obj, obj.metadata.resource_version)
            yield WatchEvent("BOOKMARK", None, str(self.revision), initial_events_end=True)
        if not self.script:
            self.exhausted.set()
            await asyncio.Event().wait()  # a quiet watch that never ends
        events, then = self.script.pop(0)
        for ev in events:
            yield ev
        if then is not None:
            raise then


def added(obj: Any) -> WatchEvent:
    return WatchEvent("ADDED", obj, obj.metadata.resource_version)


def modified(obj: Any) -> WatchEvent:
    return WatchEvent("MODIFIED", obj, obj.metadata.resource_version)


def deleted(obj: Any) -> WatchEvent:
    return WatchEvent("DELETED", obj, obj.metadata.resource_version)


def bookmark(rv: int) -> WatchEvent:
    return WatchEvent("BOOKMARK", None, str(rv))
