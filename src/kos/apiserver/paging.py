"""Lists from the watch cache, paged with continue tokens (Kubernetes' `limit` and `continue`).

A page of `limit` objects ends with a token naming the revision the list was served at and the last
key it returned; the next page is the same list at that revision after that key, rebuilt from the
cache's history when the cache has moved on (k8s.io/apiserver etcd3 store's continue handling). When
the history no longer reaches back that far the answer is 410 Gone with `INCONSISTENT_CONTINUE` and a
token that goes on from the current state (`CONTINUE_AT_LATEST`), as kube-apiserver does. A
`resourceVersionMatch=Exact` list is served at its revision the same way. Tokens are opaque base64
JSON; a token not made here is 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses

import msgspec

from kos.api import errors
from kos.api.errors import BadRequest
from kos.api.selectors import FieldSelector, LabelSelector
from kos.apiserver.cache import Cacher, Entry, ResourceCache
from kos.apiserver.reads import check_scope, parse_rv, wait_for_read

MAX_TOKEN = 4096
"""Characters; a longer continue token was not made by this server."""

CONTINUE_AT_LATEST = -1
"""The revision of a continue token that goes on from the current state (etcd3 store's continueRV < 0)."""

INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list"
    " without the continue parameter, or use the continue token in this response to retrieve the remainder of"
    " the results. Continuing with the provided token results in an inconsistent list - objects that were"
    " created, modified, or deleted between the time the first chunk was returned and now may show up in the"
    " list."
)
"""k8s.io/apiserver etcd3 store's `inconsistentContinue`: the 410 for an expired continue token (kubernetes #66981).

Its Status carries, in `metadata.continue`, a token that lists the rest of the keys from the current
revision (`handleCompactedErrorForPaging`); the pages after it are consistent with that revision.
"""


@dataclasses.dataclass(frozen=True, slots=True)
class ListOptions:
    label_selector: LabelSelector = LabelSelector()
    field_selector: FieldSelector = FieldSelector()
    resource_version: str = ""
    resource_version_match: str = ""
    limit: int = 0
    continue_token: str = ""


@dataclasses.dataclass(slots=True)
class ListResult:
    """One page: its entries (sorted by key), the revision it is consistent with, and how to go on."""

    entries: list[Entry]
    revision: int
    continue_token: str = ""
    remaining: int | None = None


async def list_objects(cacher: Cacher, cache: ResourceCache, namespace: str | None, opts: ListOptions) -> ListResult:
    """The selected objects of `namespace` (None: every namespace), one page of them when `opts.limit` is set.

    Raises BadRequest (resourceVersion with continue, a foreign token, a token from the future), Expired
    (410: the revision is no longer in the cache's history), and what waiting for a revision raises.
    """
    check_scope(namespace)
    rv = opts.resource_version
    if opts.continue_token:
        if rv and rv != "0":
            raise BadRequest("specifying resourceVersion is not allowed when using continue")
        snap_rev, after_key = decode_continue(opts.continue_token)
        if snap_rev == CONTINUE_AT_LATEST:  # the token of a 410: go on from the current state
            await cacher.sync()
            return _list_at(cacher, cache, namespace, opts, cacher.revision, after_key)
        if snap_rev > cacher.revision:
            raise BadRequest(
                f"invalid continue token: it names revision {snap_rev}, which this server has not reached; use the"
                " token from a previous list response"
            )
        return _list_at(cacher, cache, namespace, opts, snap_rev, after_key)
    if opts.resource_version_match == "Exact":
        exact = parse_rv(rv)
        await cacher.wait_for_client_revision(exact)
        return _list_at(cacher, cache, namespace, opts, exact, "")
    await wait_for_read(cacher, rv)
    entries = cache.select(namespace, opts.label_selector, opts.field_selector)
    return page(entries, cacher.revision, opts.limit)


def _list_at(
    cacher: Cacher, cache: ResourceCache, namespace: str | None, opts: ListOptions, rev: int, after_key: str
) -> ListResult:
    """The list as it was at `rev`, after `after_key`: from the live objects, or rebuilt from history."""
    if rev == cacher.revision:
        entries = cache.select(namespace, opts.label_selector, opts.field_selector, after_key=after_key)
        return page(entries, rev, opts.limit)
    try:
        snap = cache.snapshot_at(rev, cacher.revision)
    except errors.Expired:
        if opts.continue_token:
            token = encode_continue(CONTINUE_AT_LATEST, after_key)
            raise errors.Expired(INCONSISTENT_CONTINUE, continue_token=token) from None
        raise
    out = []
    for k in sorted(snap):
        if after_key and k <= after_key:
            continue
        e = snap[k]
        if namespace is not None and e.namespace != namespace:
            continue
        if not opts.label_selector.matches(e.labels) or not opts.field_selector.matches(e.fields):
            continue
        out.append(e)
    return page(out, rev, opts.limit)


def page(entries: list[Entry], rev: int, limit: int) -> ListResult:
    """The first `limit` of `entries` (all when 0) with a token for the rest, if any remain."""
    if limit and len(entries) > limit:
        first = entries[:limit]
        return ListResult(first, rev, encode_continue(rev, first[-1].key), len(entries) - limit)
    return ListResult(entries, rev)


def encode_continue(rev: int, last_key: str) -> str:
    """The token of a list at `rev` whose last entry so far has `last_key`."""
    raw = msgspec.json.encode({"v": "meta.k8s.io/v1", "rv": rev, "start": last_key})
    return base64.urlsafe_b64encode(raw).decode()


class _ContinueToken(msgspec.Struct, forbid_unknown_fields=True):
    v: str
    rv: int
    start: str


def decode_continue(token: str) -> tuple[int, str]:
    """(revision, last key) of a token from `encode_continue`; anything else is BadRequest (400)."""
    try:
        if len(token) > MAX_TOKEN or not token.isascii():
            raise ValueError
        raw = msgspec.json.decode(base64.urlsafe_b64decode(token.encode()), type=_ContinueToken)
        if raw.v != "meta.k8s.io/v1" or not (0 < raw.rv < 1 << 63 or raw.rv == CONTINUE_AT_LATEST):
            raise ValueError
    except (binascii.Error, ValueError, msgspec.DecodeError):  # msgspec.ValidationError is a DecodeError
        shown = token if len(token) <= 40 else token[:40] + "..."
        raise BadRequest(f"invalid continue token {shown!r}: use the token from a previous list response") from None
    return raw.rv, raw.start
