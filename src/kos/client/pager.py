"""Listing every matching object as one snapshot, page by page: client-go's pager (`k8s.io/client-go/tools/pager`).

A paged list follows `continue` tokens; when the server no longer has the snapshot the pages come from (410
Expired on a continue token) the result must still be one snapshot, so everything is listed again in one
request (`FullListIfExpired`) — or, when the caller accepts it, the listing goes on with the token the 410
carries (kube-apiserver's "inconsistent continue", kubernetes #66981).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import msgspec

from kos.api.errors import Expired
from kos.util.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class ListMeta(msgspec.Struct, rename="camel", gc=False):
    resource_version: str = ""
    continue_: str = msgspec.field(default="", name="continue")


class ListPage(msgspec.Struct, Generic[T], gc=False):
    metadata: ListMeta
    items: list[T]


async def list_pages(
    get: Callable[[dict[str, str]], Awaitable[bytes]],
    decoder: msgspec.json.Decoder[ListPage[T]],
    params: dict[str, str],
    *,
    limit: int,
    inconsistent_ok: bool,
    resource: str,
    counted: Callable[[int], Any],
) -> tuple[list[T], str]:
    """Every item of the list `get(params)` answers (bytes of a list) and its resourceVersion, following
    `continue` (pages of `limit`, 0: one page); `counted(n)` is told of each page's items; `resource` names the
    kind in logs. Raises what `get` raises (Expired for the first page's snapshot is raised, never retried)."""
    first = dict(params)
    if limit:
        params = {**params, "limit": str(limit)}
    items: list[T] = []
    rv = ""
    while True:
        try:
            data = await get(params)
        except Expired as e:
            if "continue" not in params:
                raise
            if inconsistent_ok and e.continue_token:
                log.info("list snapshot expired; going on from the current state", resource=resource, reason=e.message)
                params["continue"] = e.continue_token
                rv = ""  # the remaining pages come from a newer snapshot
                continue
            log.info("list snapshot of the first page expired; listing everything again", resource=resource)
            items, rv, params = [], "", dict(first)
            continue
        page = decoder.decode(data)
        items.extend(page.items)
        counted(len(page.items))
        rv = rv or page.metadata.resource_version
        if not page.metadata.continue_:
            return items, rv
        params = {k: v for k, v in params.items() if k not in ("resourceVersion", "resourceVersionMatch")}
        params["continue"] = page.metadata.continue_
