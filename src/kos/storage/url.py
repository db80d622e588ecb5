"""Open a store from its URL: `memory://`, `sqlite:///path/state.db`, `etcd://h1:p1,h2:p2[/prefix][?tls]`.

`memory://?revision=N` starts the store at revision N instead of the clock (see
`interface.initial_revision`): a store behind its clients, as an etcd restored from
an old backup without `--bump-revision` would be — for testing how clients recover.

`etcd://h1:2379,h2:2379/prefix?cacert=/p/ca.crt&cert=/p/client.crt&key=/p/client.key` reaches etcd over
TLS: `cacert` is the CA that signed etcd's serving certificates (TLS is on when it is given), `cert` and
`key` the client certificate etcd's `--client-cert-auth` asks for (both or neither). The names are
etcdctl's `--cacert`, `--cert` and `--key`. `transport=gateway` reaches etcd through its JSON gateway over
kos's HTTP client instead of gRPC (kos.storage.etcd_gateway; `transport=grpc` is the default): the same
guarantees, a different CPU split between the apiserver and etcd (docs/performance.md, issue 13). Any other query key is an error, as is a file that cannot be
read: the message names what to fix.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from kos.storage.interface import Store

if TYPE_CHECKING:
    from kos.storage.etcd_tls import EtcdTLS


ETCD_TLS_KEYS = ("cacert", "cert", "key")
"""The etcd URL's query keys (etcdctl's flag names)."""


class StoreURLError(ValueError):
    """The storage URL cannot be used; the message quotes it and says what to fix."""


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
        return await _open_etcd(url, rest)
    raise StoreURLError(f"storage URL {url!r}: unknown scheme {scheme!r}; use memory://, sqlite:/// or etcd://")


async def _open_etcd(url: str, rest: str) -> Store:
    where, _, query = rest.partition("?")
    hosts, _, prefix = where.partition("/")
    endpoints = []
    for h in hosts.split(","):
        host, _, port = h.rpartition(":")
        if not host or not port.isascii() or not port.isdigit() or len(port) > 5 or int(port) > 65535:
            raise StoreURLError(f"storage URL {url!r}: endpoint {h!r} must be host:port")
        endpoints.append((host, int(port)))
    from kos.storage.etcd import EtcdStore
    from kos.storage.etcd_tls import EtcdTLSError

    transport = "grpc"
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    for name, value in pairs:
        if name == "transport":
            if value not in ("grpc", "gateway"):
                raise StoreURLError(f"storage URL {url!r}: transport must be 'grpc' or 'gateway', not {value!r}")
            transport = value
    query = urllib.parse.urlencode([(k, v) for k, v in pairs if k != "transport"])
    try:
        tls = _etcd_tls(url, query)
        root = "/" + prefix.strip("/") if prefix else "/registry/kos"
        return await EtcdStore.open(endpoints, prefix=root, tls=tls, transport=transport)
    except EtcdTLSError as e:
        raise StoreURLError(f"storage URL {url!r}: {e}") from None


def _etcd_tls(url: str, query: str) -> EtcdTLS | None:
    """The TLS files named by an etcd URL's query (None for none). Raises StoreURLError for an unknown,
    repeated or empty key, or for cert/key without cacert."""
    files: dict[str, Path] = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name not in ETCD_TLS_KEYS:
            raise StoreURLError(
                f"storage URL {url!r}: unknown query key {name!r}; an etcd URL takes "
                "cacert=<CA file>, cert=<client certificate file>, key=<client key file> and transport=grpc|gateway"
            )
        if name in files:
            raise StoreURLError(f"storage URL {url!r}: {name} is given twice")
        if not value:
            raise StoreURLError(f"storage URL {url!r}: {name} names no file")
        files[name] = Path(value)
    if not files:
        return None
    if "cacert" not in files:
        raise StoreURLError(
            f"storage URL {url!r}: cert and key need cacert=<file> too, the CA that signed etcd's certificate"
        )
    from kos.storage.etcd_tls import EtcdTLS

    return EtcdTLS(files["cacert"], files.get("cert"), files.get("key"))
