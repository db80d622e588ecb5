"""Open a store from its URL: `memory://`, `sqlite:///path/state.db`, `etcd://h1:p1,h2:p2[/prefix]`.

`memory://?revision=N` starts the store at revision N instead of the clock (see
`interface.initial_revision`): a store behind its clients, as an etcd restored from
an old backup without `--bump-revision` would be — for testing how clients recover.
"""

from __future__ import annotations

import urllib.parse

from kos.storage.interface import Store


class StoreURLError(ValueError):
    pass


async def open_store(url: str) -> Store:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreURLError(f"storage URL {url!r} has no scheme; use memory://, sqlite:///path or etcd://host:port")
    if scheme == "memory":
        from kos.storage.memory import MemoryStore

        _, _, query = rest.partition("?")
        params = dict(urllib.parse.parse_qsl(query))
        start = params.get("revision")
        if start is not None and not (start.isascii() and start.isdigit() and len(start) <= 18):
            raise StoreURLError(f"storage URL {url!r}: revision must be a non-negative integer")
        return MemoryStore(revision=int(start) if start is not None else None)
    if scheme == "sqlite":
        path, _, query = rest.partition("?")
        if not path:
            raise StoreURLError(f"storage URL {url!r} names no file; use sqlite:///absolute/path/state.db")
        params = dict(urllib.parse.parse_qsl(query))
        sync = params.get("sync", "full")
        if sync not in ("full", "normal"):
            raise StoreURLError(f"storage URL {url!r}: sync must be 'full' or 'normal'")
        from kos.storage.sqlite import SQLiteStore

        return await SQLiteStore.open(path, sync=sync)
    if scheme == "etcd":
        hosts, _, prefix = rest.partition("/")
        endpoints = []
        for h in hosts.split(","):
            host, _, port = h.rpartition(":")
            if not host or not port.isascii() or not port.isdigit() or len(port) > 5 or int(port) > 65535:
                raise StoreURLError(f"storage URL {url!r}: endpoint {h!r} must be host:port")
            endpoints.append((host, int(port)))
        from kos.storage.etcd import EtcdStore

        return await EtcdStore.open(endpoints, prefix="/" + prefix.strip("/") if prefix else "/registry/kos")
    raise StoreURLError(f"storage URL {url!r}: unknown scheme {scheme!r}; use memory://, sqlite:/// or etcd://")
