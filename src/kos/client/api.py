"""The typed API the controllers and the agent program against, as a protocol rather than a class.

IPAM and the connection agent decide what to write from what they read; how
the calls travel (HTTP/1.1 today, TLS and failover across apiservers next) is
not their business. They take an `API` — the verbs of client-go's typed
clientsets (get, list, create, update, updateStatus, patch, delete) on the
frozen API types — and, where they run informers, a `WatchAPI` that can also
watch. `kos.client.rest.Client` satisfies both structurally; `kos.testing.fakeapi`
ships an in-memory fake, so their decisions are unit-tested without HTTP.

Every verb raises the `kos.api.errors` StatusError tree whatever the transport:
`NotFound` (404), `AlreadyExists` (409, create), `Conflict` (409: a stale
resourceVersion, or a failed precondition — tell them apart with
`kos.api.errors.is_precondition_failed`), `Invalid` (422), `ServiceUnavailable`
(the server could not be reached), and so on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeVar

from kos.api.types import Object
from kos.client.rest import WatchEvent

T = TypeVar("T", bound=Object)


class API(Protocol):
    """Reads and writes of typed objects (`Subnet`, `NetworkAttachment`, `IPLock`); errors are StatusErrors."""

    async def get(self, cls: type[T], namespace: str, name: str, *, resource_version: str = "") -> T:
        """The object `namespace/name`; NotFound if there is none."""
        ...

    async def list(
        self,
        cls: type[T],
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> tuple[list[T], str]:
        """The objects that match (all namespaces when `namespace` is None) and the list's resourceVersion.

        `resource_version` "" is a consistent read; N a list at least as new as revision N (Kubernetes' list
        semantics for a resourceVersion without `resourceVersionMatch`), which the apiserver serves from its
        watch cache without a quorum read of the store."""
        ...

    async def create(self, obj: T) -> T:
        """The created object (uid, resourceVersion, timestamps set); AlreadyExists, Invalid."""
        ...

    async def update(self, obj: T) -> T:
        """Replace spec and metadata (status is ignored); Conflict if `obj`'s resourceVersion is stale, NotFound."""
        ...

    async def update_status(self, obj: T) -> T:
        """Replace the status subresource (spec is ignored); Conflict if the resourceVersion is stale, NotFound."""
        ...

    async def patch(
        self, cls: type[T], namespace: str, name: str, patch: Any, *, kind: str = "merge", subresource: str = ""
    ) -> T:
        """Apply a merge patch (`kind="merge"`, RFC 7386) or JSON patch; a `metadata.resourceVersion` in a merge
        patch is a precondition (Conflict when stale); NotFound."""
        ...

    async def delete(
        self,
        cls: type[T],
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: str | None = None,
    ) -> T:
        """Delete (or start deleting, with finalizers); NotFound; a Conflict for which `is_precondition_failed`
        holds when `uid` or `resource_version` is given and does not match."""
        ...


class WatchAPI(API, Protocol):
    """An `API` that can also watch: what informers need (`kos.client.reflector.ListWatcher`)."""

    def watch(
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
        """Events after `resource_version` (with `send_initial_events`: the current state first, then a
        bookmark with `initial_events_end`); Gone/Expired when that history is no longer kept."""
        ...
