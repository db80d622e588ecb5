"""Every call the apiserver makes to its store, timed: how slow the store is from the apiserver's side.

kube-apiserver exports `etcd_request_duration_seconds{operation, type}` for the same reason: a slow write
shows up in every client's latency, and only this histogram says whether the time went to the store or to
the apiserver itself. kos has three stores (memory, SQLite, etcd), so the metric carries a kos name,
`kos_storage_request_duration_seconds`, with kube-apiserver's labels: `operation` (the Store method: `get`,
`list`, `create`, `update`, `delete`, `current_revision`; `compact`, which the apiserver does not call
today, would be timed too) and `type` (the resource, from the key:
`networkattachments`, …; `*` for a call on the whole store). Failed calls are timed too (a compare-and-swap
that lost is a store answer like any other). Watches are streams, not calls, and are not timed here.

One wrapper around the store, installed where the apiserver opens it, so no caller (registries, the watch
cache, readiness, address protection) can bypass it.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Histogram

from kos.storage.interface import Deleted, Event, Guard, KeyValue, Store

T = TypeVar("T")

STORAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Seconds; finer at the low end than the request histogram's, since a memory-store call takes microseconds."""

WHOLE_STORE = "*"
WHOLE_STORE_KEY = "/"
"""The key a call on the whole store is filed under (`resource_of` gives WHOLE_STORE for it)."""


def storage_latency(registry: CollectorRegistry) -> Histogram:
    """`kos_storage_request_duration_seconds{operation, type}` in `registry`."""
    return Histogram(
        "kos_storage_request_duration_seconds",
        "Store call latency by operation and resource (as kube-apiserver's etcd_request_duration_seconds).",
        ["operation", "type"],
        buckets=STORAGE_BUCKETS,
        registry=registry,
    )


def resource_of(key: str) -> str:
    """The resource a store key or prefix names: "/networkattachments/ns/a" → "networkattachments"; "/" → "*"."""
    plural = key[1:].partition("/")[0] if key.startswith("/") else ""
    return plural or WHOLE_STORE


class MeteredStore:
    """`inner` (a Store), with each call's wall time observed in `latency` (`storage_latency`'s histogram)."""

    def __init__(self, inner: Store, latency: Histogram) -> None:
        self.inner = inner
        self.latency = latency
        self._observe: dict[tuple[str, str], Any] = {}

    async def _timed(self, operation: str, key: str, call: Awaitable[T]) -> T:
        """`call`'s result, its wall time observed under (operation, the resource `key` names)."""
        k = (operation, resource_of(key))
        observe = self._observe.get(k)
        if observe is None:  # one labelled child per (operation, resource), looked up once
            observe = self._observe[k] = self.latency.labels(*k).observe
        t = time.perf_counter()
        try:
            return await call
        finally:
            observe(time.perf_counter() - t)

    # each a plain function returning the timed coroutine: no second coroutine frame per store call

    def get(self, key: str) -> Coroutine[Any, Any, KeyValue | None]:
        return self._timed("get", key, self.inner.get(key))

    def list(self, prefix: str) -> Coroutine[Any, Any, tuple[builtins.list[KeyValue], int]]:
        return self._timed("list", prefix, self.inner.list(prefix))

    def create(self, key: str, value: bytes) -> Coroutine[Any, Any, int]:
        return self._timed("create", key, self.inner.create(key, value))

    def update(
        self, key: str, value: bytes, expected_revision: int, guards: Sequence[Guard] = ()
    ) -> Coroutine[Any, Any, int]:
        return self._timed("update", key, self.inner.update(key, value, expected_revision, guards))

    def delete(
        self, key: str, expected_revision: int | None = None, guards: Sequence[Guard] = ()
    ) -> Coroutine[Any, Any, Deleted]:
        return self._timed("delete", key, self.inner.delete(key, expected_revision, guards))

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[builtins.list[Event]]:
        return self.inner.watch(prefix, after_revision)

    def current_revision(self) -> Coroutine[Any, Any, int]:
        return self._timed("current_revision", WHOLE_STORE_KEY, self.inner.current_revision())

    def compact(self, revision: int) -> Coroutine[Any, Any, None]:
        return self._timed("compact", WHOLE_STORE_KEY, self.inner.compact(revision))

    async def close(self) -> None:
        await self.inner.close()
