"""What a read asks of the watch cache: how fresh it must be (resourceVersion) and which namespaces it spans.

Kubernetes' read semantics (k8s.io/apiserver storage/cacher): resourceVersion "" is a consistent
read — the cache first applies every write the store has acknowledged; "0" is any state the cache
holds; N is a state at least as new as N (the cache waits for it; see `Cacher.wait_for_client_revision`).
"""

from __future__ import annotations

from kos.api.errors import BadRequest
from kos.apiserver.cache import Cacher


def parse_rv(value: str, what: str = "resourceVersion") -> int:
    """A resourceVersion the server handed out, as an int; BadRequest (400) for anything else."""
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise BadRequest(f"invalid {what} {value!r}: must be a non-negative integer returned by the server")
    return int(value)


async def wait_for_read(cacher: Cacher, rv: str) -> None:
    """Bring the cache to what a read at resourceVersion `rv` needs ("": consistent, "0": any, N: at least N)."""
    if rv == "":
        await cacher.sync()
    elif rv != "0":
        await cacher.wait_for_client_revision(parse_rv(rv))


def check_scope(namespace: str | None) -> None:
    """None is every namespace (the cluster-wide path); an empty string is no namespace, never every one."""
    if namespace == "":
        raise BadRequest("an empty namespace names no namespace; leave the namespace out to address every one")
