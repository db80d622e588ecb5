"""What a chaos run saw: every call with its start, end and outcome, every watch event of every stream, every fault.

A robustness test that checks as it goes sees only what it thought to check at the time; one that records
everything and judges afterwards can check properties over the whole run — no acknowledged write lost, each
watch stream equal to the store's history for its selection, no address shown twice at any revision — and
can show the exact record that broke one. This is how etcd's own robustness tests and Jepsen work (a history
of operations with invocation and completion times, then a checker; docs/reliability.md).

The history is a file of JSON lines, one record per line, appended and flushed as the run goes, so a run
killed halfway still leaves everything it saw. Times are seconds on the recorder's monotonic clock
(kos.util.clock); resourceVersions are etcd revisions as integers.

Outcomes follow what a client can know about a write:

* `ok` — acknowledged (a 2xx answer). Its effect must be in the store's history at `resource_version`.
* `failed` — certainly not applied: the server refused it (4xx, 429) or the request was never written.
* `unknown` — may or may not have been applied: a timeout, a connection that broke after the request was
  sent, a 5xx (a 503 from a store that lost quorum mid-write says so in its message). The checker accepts
  either answer for these, as Jepsen's "info" operations.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Literal

import msgspec

from kos.api.errors import StatusError
from kos.http.clientresponse import ConnectionFailed
from kos.util.clock import REAL_CLOCK, Clock

__all__ = [
    "Call",
    "CallScope",
    "Fault",
    "History",
    "Outcome",
    "Record",
    "StreamError",
    "StreamStart",
    "WatchEvent",
    "classify",
    "read",
]

Outcome = Literal["ok", "failed", "unknown"]


class Call(msgspec.Struct, tag="call", tag_field="record", kw_only=True):
    """One API call: `op` is create, update, update_status, delete, get or list; `resource` the plural
    (networkattachments); `namespace`/`name` what it addressed ("" for all namespaces / a list).
    `resource_version` is the revision of the object an `ok` answer returned (for a delete: the revision of
    the deletion when the answer carries it, else the deleted object's last one); 0 when there was none.
    `code` is the HTTP status (0: no answer); `server` the apiserver that answered, when known."""

    id: int
    op: str
    resource: str
    namespace: str
    name: str
    start: float
    end: float = 0.0
    outcome: Outcome = "unknown"
    code: int = 0
    resource_version: int = 0
    error: str = ""
    server: str = ""


class StreamStart(msgspec.Struct, tag="stream", tag_field="record", kw_only=True):
    """A watch stream (re)starts after `resource_version`. `relist` is true when the client listed first:
    `objects` then holds the list's (namespace, name, resourceVersion) at that revision; false when it
    resumed from the last revision it had seen (after a break, on whichever server it reached).
    `namespace` "" watches all namespaces; the selectors are the strings the watch sent."""

    stream: int
    time: float
    resource: str
    namespace: str
    label_selector: str
    field_selector: str
    resource_version: int
    relist: bool
    objects: list[tuple[str, str, int]] = []
    server: str = ""


class WatchEvent(msgspec.Struct, tag="event", tag_field="record", kw_only=True):
    """One event as stream `stream` delivered it: `type` is ADDED, MODIFIED, DELETED or BOOKMARK (a
    bookmark names no object: `namespace`/`name` are "")."""

    stream: int
    time: float
    type: str
    namespace: str
    name: str
    resource_version: int


class StreamError(msgspec.Struct, tag="stream_error", tag_field="record", kw_only=True):
    """Stream `stream` broke or was refused (`error` says how: a 410 Gone, a reset connection, …)."""

    stream: int
    time: float
    error: str


class Fault(msgspec.Struct, tag="fault", tag_field="record", kw_only=True):
    """A fault injected at `start` and healed at `healed` (the signal that ends it, or when the killed
    process was seen running again; 0.0 while not healed). `name` is the kind (etcd-leader-kill,
    apiserver-stop, quorum-loss, …); `targets` the cluster.json names of the processes it hit."""

    name: str
    targets: list[str]
    start: float
    healed: float = 0.0
    note: str = ""


Record = Call | StreamStart | WatchEvent | StreamError | Fault

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)


def classify(e: BaseException) -> tuple[Outcome, int, str]:
    """(outcome, HTTP status or 0, message) of a call that raised `e`: a refusal the server answered with
    is `failed`, except 5xx (it may have applied the write before failing); a connection never made is
    `failed`; anything else — a timeout, a broken connection, an unexpected error — is `unknown`."""
    if isinstance(e, StatusError):
        return ("unknown" if e.code >= 500 else "failed"), e.code, e.message
    if isinstance(e, ConnectionFailed) and e.retryable:
        return "failed", 0, str(e)
    return "unknown", 0, f"{type(e).__name__}: {e}"


class History:
    """Appends records to `path` (JSON lines, flushed per record) and keeps them in `records`.

    `clock` gives the times (`clock.monotonic()`). Use as a context manager, or `close()`."""

    def __init__(self, path: Path, clock: Clock = REAL_CLOCK) -> None:
        self.path = path
        self.clock = clock
        self.records: list[Record] = []
        self._file: IO[bytes] = path.open("ab")
        self._ids = itertools.count(1)
        self._streams = itertools.count(1)

    def now(self) -> float:
        return self.clock.monotonic()

    def add(self, record: Record) -> None:
        """Keep `record` and append it to the file."""
        self.records.append(record)
        self._file.write(_encoder.encode(record) + b"\n")
        self._file.flush()

    def new_stream(self) -> int:
        """A fresh stream number for `StreamStart`/`WatchEvent`/`StreamError` records."""
        return next(self._streams)

    @contextlib.asynccontextmanager
    async def call(self, op: str, resource: str, namespace: str = "", name: str = "") -> AsyncIterator[CallScope]:
        """Record one call around the block: the block reports success with `scope.ok(resource_version)`;
        an exception leaving the block is classified (`classify`) and re-raised. A block that neither
        reports nor raises (a cancelled run) leaves the call `unknown`."""
        call = Call(id=next(self._ids), op=op, resource=resource, namespace=namespace, name=name, start=self.now())
        scope = CallScope(call)
        try:
            yield scope
        except BaseException as e:
            call.outcome, call.code, call.error = classify(e)
            raise
        finally:
            call.end = self.now()
            self.add(call)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CallScope:
    """What the block of `History.call` reports through."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def ok(self, resource_version: int | str, code: int = 200, server: str = "") -> None:
        """The call was acknowledged; `resource_version` as the answer carried it."""
        self.call.outcome = "ok"
        self.call.code = code
        self.call.resource_version = int(resource_version or 0)
        self.call.server = server


def read(path: Path) -> Iterator[Record]:
    """The records of a history file in order. A last line without its newline (torn by a killed run) is
    skipped; any other damaged line raises msgspec.DecodeError/ValidationError."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1]:
        lines.pop()  # torn: written without its newline
    for line in lines:
        if line.strip():
            yield _decoder.decode(line)
