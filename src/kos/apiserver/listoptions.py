"""List and watch options: read from a query and checked as kube-apiserver checks them.

A list, a watch and a delete-collection all decode the same `ListOptions`
parameters (`labelSelector`, `fieldSelector`, `resourceVersion`,
`resourceVersionMatch`, `limit`, `continue`, `timeoutSeconds`,
`allowWatchBookmarks`, `sendInitialEvents`, `watch`); a value that does not
decode is 400 BadRequest (k8s.io/apiserver/pkg/endpoints/handlers/get.go
ListResource). The combinations are then judged by the rules of
k8s.io/apimachinery/pkg/apis/meta/internalversion/validation
ValidateListOptions, and a violation is 422 Invalid for kind
`ListOptions.meta.k8s.io` listing every problem:

list (and delete-collection):
- `resourceVersionMatch` needs `resourceVersion`, is forbidden with `continue`,
  must be `Exact` or `NotOlderThan`, and `Exact` is forbidden for `resourceVersion=0`;
- `sendInitialEvents` is forbidden.

watch:
- `sendInitialEvents` requires `resourceVersionMatch=NotOlderThan`;
- `resourceVersionMatch` is forbidden unless `sendInitialEvents` is given, must be
  `NotOlderThan`, and is forbidden with `continue`.

What the storage layer says afterwards stays with the registry: `continue` with a
`resourceVersion` other than `0` is 400, as is a continue token that is not one.
kos refuses a negative `limit` or `timeoutSeconds` (400) where Kubernetes reads
them as "no limit" and "end at once".
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, NamedTuple

from kos.api import errors, field
from kos.api.errors import BadRequest
from kos.api.field import FieldError
from kos.api.resources import Resource
from kos.api.selectors import FieldRequirement, FieldSelector
from kos.apiserver import params
from kos.apiserver.registry import ListOptions, WatchOptions

DEFAULT_WATCH_TIMEOUT = (1800, 3600)
"""Seconds a watch without `timeoutSeconds` lasts: a random pick in this range, as kube-apiserver's
`--min-request-timeout` (1800) spreads watch ends over [1x, 2x] (k8s.io/apiserver/pkg/endpoints/handlers/get.go)."""
EXACT = "Exact"
NOT_OLDER_THAN = "NotOlderThan"


class _Raw(NamedTuple):
    """Every ListOptions parameter, decoded (each once) but not yet judged."""

    resource_version: str
    match: str
    continue_token: str
    send_initial_events: bool | None
    limit: int
    timeout: int
    allow_bookmarks: bool


def _decode(q: Any) -> _Raw:
    return _Raw(
        params.rv_param(q),
        q.get("resourceVersionMatch") or "",
        q.get("continue") or "",
        params.optional_flag(q, "sendInitialEvents"),
        params.int_param(q, "limit"),  # decoded by every verb that reads ListOptions, used by lists
        params.int_param(q, "timeoutSeconds"),  # decoded by every verb, used by watches
        params.flag(q, "allowWatchBookmarks"),
    )


def _reject(errs: list[FieldError]) -> None:
    if errs:
        raise errors.invalid("ListOptions", "", errs, group=params.META_GROUP)


def _forbid(detail: str) -> FieldError:
    return field.forbidden("resourceVersionMatch", detail)


def list_errors(rv: str, match: str, continue_token: str, send_initial_events: bool | None) -> list[FieldError]:
    """ValidateListOptions for a list (`watch` false)."""
    errs: list[FieldError] = []
    if match:
        if not rv:
            errs.append(_forbid("resourceVersionMatch is forbidden unless resourceVersion is provided"))
        if continue_token:
            errs.append(_forbid("resourceVersionMatch is forbidden when continue is provided"))
        if match not in (EXACT, NOT_OLDER_THAN):
            errs.append(field.not_supported("resourceVersionMatch", match, [EXACT, NOT_OLDER_THAN, ""]))
        if match == EXACT and rv == "0":
            errs.append(_forbid('resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
    if send_initial_events is not None:
        errs.append(field.forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    return errs


def watch_errors(match: str, continue_token: str, send_initial_events: bool | None) -> list[FieldError]:
    """validateWatchOptions (the WatchList feature is on: kos serves `sendInitialEvents`)."""
    errs: list[FieldError] = []
    if send_initial_events is not None and match != NOT_OLDER_THAN:
        errs.append(_forbid(f"sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}"))
    if match:
        if send_initial_events is None:
            errs.append(_forbid("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"))
        if match != NOT_OLDER_THAN:
            errs.append(field.not_supported("resourceVersionMatch", match, [NOT_OLDER_THAN]))
        if continue_token:
            errs.append(_forbid("resourceVersionMatch is forbidden when continue is provided"))
    return errs


def list_options(q: Any, res: Resource) -> ListOptions:
    """The options of a list or a delete-collection, decoded (400) and validated (422)."""
    ls, fs = params.selectors(q, res)
    raw = _decode(q)
    _reject(list_errors(raw.resource_version, raw.match, raw.continue_token, raw.send_initial_events))
    return ListOptions(
        label_selector=ls,
        field_selector=fs,
        resource_version=raw.resource_version,
        resource_version_match=raw.match,
        limit=raw.limit,
        continue_token=raw.continue_token,
    )


def watch_options(q: Any, res: Resource) -> tuple[WatchOptions, int | None]:
    """The options of a watch, decoded (400) and validated (422), with `timeoutSeconds` (None: the default)."""
    ls, fs = params.selectors(q, res)
    raw = _decode(q)
    _reject(watch_errors(raw.match, raw.continue_token, raw.send_initial_events))
    opts = WatchOptions(
        label_selector=ls,
        field_selector=fs,
        resource_version=raw.resource_version,
        allow_bookmarks=raw.allow_bookmarks,
        send_initial_events=raw.send_initial_events,
    )
    return opts, raw.timeout or None  # 0, as absent, means the server's default (get.go ListResource)


def watch_request(q: Any, res: Resource, name: str = "") -> tuple[WatchOptions, int]:
    """The one parser of a watch's options, for every server path (the HTTP watch, the watch multiplexer).

    `q` is a query (a multidict or a dict of parameter → text), `name` the object a watch of one object
    (`.../{plural}/{name}`) is limited to. Returns the options and the timeout in seconds (the default
    picked when none is given). Raises BadRequest (400) for a value that does not decode, Invalid (422) for
    a combination kube-apiserver refuses.
    """
    opts, timeout = watch_options(q, res)
    if name:
        opts = dataclasses.replace(opts, field_selector=named_selector(opts.field_selector, name))
    return opts, timeout if timeout is not None else random.randint(*DEFAULT_WATCH_TIMEOUT)


def named_selector(fs: FieldSelector, name: str) -> FieldSelector:
    """A watch of one object: its field selector may only repeat the name.

    As get.go ListResource: no selector selects the name; one that requires `metadata.name` to be this
    name is kept; any other is 400. Built as a requirement, not parsed, so a name cannot inject terms.
    """
    if fs.empty:
        return FieldSelector((FieldRequirement("metadata.name", "=", name),))
    for r in fs.requirements:
        if r.field == "metadata.name" and r.op == "=":
            if r.value == name:
                return fs
            break
    raise BadRequest("fieldSelector metadata.name doesn't match requested name")
