"""Kubernetes object metadata, list metadata, Status and watch events.

These are the wire shapes every Kubernetes client understands. They are frozen
msgspec Structs: one codec for the whole project, cached objects can be shared
between readers without copies, and writers build changed copies with
`msgspec.structs.replace`.
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec


class Wire(
    msgspec.Struct,
    rename="camel",
    omit_defaults=True,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    gc=False,
):
    """Base of every nested wire struct: camelCase names, zero values omitted, strict decoding.

    `gc=False`: API objects never form reference cycles, so the cyclic garbage
    collector need not track them — with tens of thousands of cached objects,
    tracking them made every full collection a visible pause.
    """


class TopLevel(
    msgspec.Struct,
    rename="camel",
    omit_defaults=False,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    gc=False,
):
    """Base of top-level objects: `apiVersion` and `kind` are always written."""


class OwnerReference(Wire, frozen=True):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(Wire, frozen=True):
    name: str = ""
    generate_name: str = ""
    namespace: str = ""
    self_link: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: datetime.datetime | None = None
    deletion_timestamp: datetime.datetime | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    owner_references: tuple[OwnerReference, ...] = ()
    finalizers: tuple[str, ...] = ()
    managed_fields: tuple[Any, ...] = ()

    def controller_ref(self) -> OwnerReference | None:
        for ref in self.owner_references:
            if ref.controller:
                return ref
        return None


class ListMeta(Wire, frozen=True):
    resource_version: str = ""
    continue_: str = msgspec.field(default="", name="continue")
    remaining_item_count: int | None = None
    self_link: str = ""


class ObjectWrite(Wire, frozen=True):
    """When the server recorded a write to one section of an object."""

    section: str
    server_time: datetime.datetime


class ExtendedObjectMeta(
    msgspec.Struct, rename="camel", frozen=True, forbid_unknown_fields=True, kw_only=True, gc=False
):
    """Server-maintained write times; clients cannot change them (the strategies overwrite them)."""

    writes: tuple[ObjectWrite, ...] = ()

    def write_time(self, section: str) -> datetime.datetime | None:
        for w in self.writes:
            if w.section == section:
                return w.server_time
        return None

    def set_write(self, section: str, t: datetime.datetime) -> ExtendedObjectMeta:
        """A copy with `section` stamped at `t`, placed first (the original's SetWrite order)."""
        rest = [w for w in self.writes if w.section != section]
        return ExtendedObjectMeta(writes=(ObjectWrite(section=section, server_time=t), *rest))


class StatusCause(Wire, frozen=True):
    reason: str = ""
    message: str = ""
    field: str = ""


class StatusDetails(Wire, frozen=True):
    name: str = ""
    group: str = ""
    kind: str = ""
    uid: str = ""
    causes: tuple[StatusCause, ...] = ()
    retry_after_seconds: int = 0


class Status(Wire, frozen=True, forbid_unknown_fields=False, kw_only=True):
    """A Kubernetes Status: every error response, and some successes. `kind` and `apiVersion` are always written."""

    api_version: str
    kind: str
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    status: str = ""
    message: str = ""
    reason: str = ""
    details: StatusDetails | None = None
    code: int = 0


def status(*, code: int, reason: str, message: str, details: StatusDetails | None = None, ok: bool = False) -> Status:
    return Status(api_version="v1", kind="Status", status="Success" if ok else "Failure", message=message,
                  reason=reason, details=details, code=code)  # fmt: skip


class DeleteOptions(Wire, frozen=True, forbid_unknown_fields=False):
    """The body of a DELETE (all fields optional); unknown fields are tolerated as kube-apiserver does."""

    api_version: str = ""
    kind: str = ""
    grace_period_seconds: int | None = None
    preconditions: Preconditions | None = None
    orphan_dependents: bool | None = None
    propagation_policy: str | None = None
    dry_run: tuple[str, ...] = ()


class Preconditions(Wire, frozen=True):
    uid: str | None = None
    resource_version: str | None = None
