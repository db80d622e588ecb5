"""Response bodies: objects, lists, Tables for kubectl, errors as Kubernetes `Status` objects.

Objects leave as the watch cache's pre-encoded JSON (`Entry.json()`), lists are
assembled from those bytes without re-encoding, and a Table is rendered only
when the client asks for one (`negotiation`).
"""

from __future__ import annotations

from kos.api import codec
from kos.api.errors import StatusError
from kos.api.resources import Resource
from kos.apiserver import negotiation, table
from kos.apiserver.cache import Entry
from kos.apiserver.registry import ListResult
from kos.http.messages import Reply
from kos.util.clock import Clock


def retry_header(err: StatusError) -> dict[str, str] | None:
    """`Retry-After` (seconds) for an error that carries one (429, 503, 504), else None."""
    if err.details is not None and err.details.retry_after_seconds:
        return {"Retry-After": str(err.details.retry_after_seconds)}
    return None


def error_reply(err: StatusError) -> Reply:
    """An error as the Status kube-apiserver sends: the code as the HTTP status, the Status as the body."""
    return Reply(err.code, codec.encode(err.to_status()), retry_header(err))


def warning_header(warnings: list[str]) -> dict[str, str] | None:
    """An RFC 7234 `Warning` header: code 299, agent '-', each text a quoted string."""
    if not warnings:
        return None
    quoted = ['299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in warnings]
    return {"Warning": ", ".join(quoted)}


def object_reply(
    res: Resource,
    e: Entry,
    out: negotiation.Output,
    include: str,
    clock: Clock,
    *,
    status: int = 200,
    warnings: list[str] | None = None,
) -> Reply:
    """One object, as JSON or (for kubectl) as a Table of one row; `include` is the Table's includeObject."""
    headers = warning_header(warnings) if warnings else None
    if out.table:
        body = table.render_table(res, [e], resource_version=e.rev, now=clock.now(),
                                  version=out.table_version, include_object=include)  # fmt: skip
        return Reply(status, body, headers)
    return Reply(status, e.json(), headers)


def list_reply(res: Resource, result: ListResult, out: negotiation.Output, include: str, clock: Clock) -> Reply:
    """A list (`{Kind}List` with resourceVersion, continue, remainingItemCount), or a Table of its rows."""
    if out.table:
        body = table.render_table(
            res, result.entries, resource_version=result.revision, now=clock.now(),
            version=out.table_version, include_object=include, continue_token=result.continue_token,
            remaining=result.remaining,
        )  # fmt: skip
        return Reply(200, body)
    meta = b'{"resourceVersion":"' + str(result.revision).encode() + b'"'
    if result.continue_token:
        meta += b',"continue":"' + result.continue_token.encode() + b'"'
    if result.remaining is not None:
        meta += b',"remainingItemCount":' + str(result.remaining).encode()
    meta += b"}"
    body = b"".join([
        b'{"apiVersion":"', res.api_version.encode(), b'","kind":"', res.list_kind.encode(),
        b'","metadata":', meta, b',"items":[', b",".join(e.json() for e in result.entries), b"]}",
    ])  # fmt: skip
    return Reply(200, body)
