"""Per-kind strategies: what the server does to an object on create, update and status update.

The generic registry calls these hooks (after sample-apiserver's `RESTCreateStrategy`
/ `RESTUpdateStrategy`). Each kind: discards client-supplied `extendedMetadata`
and stamps the write times of reference §2.4–2.6; resets status on create; keeps
status out of main-resource updates and everything but status out of status
updates; enforces immutability. Metadata that the server owns (uid, creation
time, generation, deletion time) is handled generically in `prepare_*_meta`.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Protocol, TypeVar

import msgspec

from kos.api import codec, errors, resources, validation
from kos.api.field import FieldError
from kos.api.meta import ExtendedObjectMeta, ObjectMeta
from kos.api.types import (
    SECTION_ADDRESS,
    SECTION_EXEC_REPORT,
    SECTION_IMPL,
    SECTION_SPEC,
    SECTION_STATUS,
    IPLock,
    Lease,
    NetworkAttachment,
    NetworkAttachmentStatus,
    Subnet,
    SubnetStatus,
    exec_reports_equivalent,
)

ObjT = TypeVar("ObjT", Subnet, NetworkAttachment, IPLock, Lease)
replace = msgspec.structs.replace


class Strategy(Protocol[ObjT]):
    resource: resources.Resource

    def prepare_for_create(self, obj: ObjT, now: datetime.datetime) -> ObjT: ...

    def validate(self, obj: ObjT) -> list[FieldError]: ...

    def prepare_for_update(self, new: ObjT, old: ObjT, now: datetime.datetime) -> ObjT: ...

    def validate_update(self, new: ObjT, old: ObjT) -> list[FieldError]: ...

    def prepare_for_status_update(self, new: ObjT, old: ObjT, now: datetime.datetime) -> ObjT: ...


def prepare_update(
    strategy: Strategy[Any], name: str, new: Any, old: Any, subresource: str | None, now: datetime.datetime
) -> Any | None:
    """`new` as the strategy writes it over `old` (without resourceVersion), or None when that changes nothing.

    A status update changes status only, which the kind's controllers own, so it is not validated.
    Raises Conflict (a `PreconditionFailed` cause) when `new` names another uid, Invalid when the update is
    not valid.
    """
    their_uid = new.metadata.uid
    if their_uid and their_uid != old.metadata.uid:
        raise errors.precondition_failed(strategy.resource.plural, name, "UID", their_uid, old.metadata.uid)
    if subresource == "status":
        prepared = strategy.prepare_for_status_update(new, old, now)
    else:
        prepared = strategy.prepare_for_update(new, old, now)
        errs = strategy.validate_update(prepared, old)
        if errs:
            raise errors.invalid(strategy.resource.kind, name, errs)
    prepared = codec.replace_meta(prepared, resource_version="")
    return None if prepared == codec.replace_meta(old, resource_version="") else prepared


# --- metadata owned by the server ---------------------------------------------------------------


def prepare_create_meta(meta: ObjectMeta, now: datetime.datetime) -> ObjectMeta:
    return replace(
        meta,
        uid=str(uuid.uuid4()),
        creation_timestamp=now.replace(microsecond=0),
        resource_version="",
        generation=1,
        deletion_timestamp=None,
        deletion_grace_period_seconds=None,
        self_link="",
        managed_fields=(),
    )


def prepare_update_meta(new: ObjectMeta, old: ObjectMeta, spec_changed: bool) -> ObjectMeta:
    """Clients may change labels, annotations, owner references and finalizers; the rest is the server's."""
    return replace(
        new,
        name=old.name,
        namespace=old.namespace,
        uid=old.uid,
        creation_timestamp=old.creation_timestamp,
        deletion_timestamp=old.deletion_timestamp,
        deletion_grace_period_seconds=old.deletion_grace_period_seconds,
        generation=old.generation + (1 if spec_changed else 0),
        generate_name=old.generate_name,
        self_link="",
        managed_fields=old.managed_fields if not new.managed_fields else new.managed_fields,
    )


def keep_all_but_status(new: Any, old: Any) -> Any:
    """A status update changes status only; metadata and spec stay as they are (CRD status semantics)."""
    return replace(old, status=new.status)


# --- Subnet -------------------------------------------------------------------------------------


class SubnetStrategy:
    resource = resources.SUBNETS

    def prepare_for_create(self, obj: Subnet, now: datetime.datetime) -> Subnet:
        return replace(
            obj,
            metadata=prepare_create_meta(obj.metadata, now),
            extended_metadata=ExtendedObjectMeta().set_write(SECTION_SPEC, now),
            status=SubnetStatus(),
        )

    def validate(self, obj: Subnet) -> list[FieldError]:
        return validation.validate_subnet(obj)

    def prepare_for_update(self, new: Subnet, old: Subnet, now: datetime.datetime) -> Subnet:
        return replace(
            new,
            metadata=prepare_update_meta(new.metadata, old.metadata, new.spec != old.spec),
            extended_metadata=old.extended_metadata,
            status=old.status,
        )

    def validate_update(self, new: Subnet, old: Subnet) -> list[FieldError]:
        return validation.validate_subnet_update(new, old)

    def prepare_for_status_update(self, new: Subnet, old: Subnet, now: datetime.datetime) -> Subnet:
        out: Subnet = keep_all_but_status(new, old)
        if new.status.validated != old.status.validated or new.status.errors != old.status.errors:
            out = replace(out, extended_metadata=old.extended_metadata.set_write(SECTION_STATUS, now))
        return out


# --- NetworkAttachment --------------------------------------------------------------------------


def _address_changed(a: NetworkAttachmentStatus, b: NetworkAttachmentStatus) -> bool:
    return (
        a.lock_uid != b.lock_uid
        or a.address_vni != b.address_vni
        or a.ipv4 != b.ipv4
        or a.address_contention != b.address_contention
        or a.subnet_creation_time != b.subnet_creation_time
        or a.errors.ipam != b.errors.ipam
    )


def _impl_changed(a: NetworkAttachmentStatus, b: NetworkAttachmentStatus) -> bool:
    return (
        a.mac_address != b.mac_address
        or a.ifc_name != b.ifc_name
        or a.host_ip != b.host_ip
        or a.errors.host != b.errors.host
    )


class NetworkAttachmentStrategy:
    resource = resources.NETWORK_ATTACHMENTS

    def prepare_for_create(self, obj: NetworkAttachment, now: datetime.datetime) -> NetworkAttachment:
        return replace(
            obj,
            metadata=prepare_create_meta(obj.metadata, now),
            extended_metadata=ExtendedObjectMeta().set_write(SECTION_SPEC, now),
            status=NetworkAttachmentStatus(),
        )

    def validate(self, obj: NetworkAttachment) -> list[FieldError]:
        return validation.validate_network_attachment(obj)

    def prepare_for_update(
        self, new: NetworkAttachment, old: NetworkAttachment, now: datetime.datetime
    ) -> NetworkAttachment:
        spec_changed = new.spec != old.spec
        ext = old.extended_metadata
        if new.spec.post_delete_exec != old.spec.post_delete_exec:
            ext = ext.set_write(SECTION_SPEC, now)
        return replace(
            new,
            metadata=prepare_update_meta(new.metadata, old.metadata, spec_changed),
            extended_metadata=ext,
            status=old.status,
        )

    def validate_update(self, new: NetworkAttachment, old: NetworkAttachment) -> list[FieldError]:
        return validation.validate_network_attachment_update(new, old)

    def prepare_for_status_update(
        self, new: NetworkAttachment, old: NetworkAttachment, now: datetime.datetime
    ) -> NetworkAttachment:
        out: NetworkAttachment = keep_all_but_status(new, old)
        a, b = new.status, old.status
        ext = old.extended_metadata
        if _address_changed(a, b):
            ext = ext.set_write(SECTION_ADDRESS, now)
        if _impl_changed(a, b):
            ext = ext.set_write(SECTION_IMPL, now)
        if not exec_reports_equivalent(a.post_create_exec_report, b.post_create_exec_report):
            ext = ext.set_write(SECTION_EXEC_REPORT, now)
        if ext is not old.extended_metadata:
            out = replace(out, extended_metadata=ext)
        return out


# --- IPLock -------------------------------------------------------------------------------------


class IPLockStrategy:
    resource = resources.IPLOCKS

    def prepare_for_create(self, obj: IPLock, now: datetime.datetime) -> IPLock:
        return replace(
            obj,
            metadata=prepare_create_meta(obj.metadata, now),
            extended_metadata=ExtendedObjectMeta().set_write(SECTION_SPEC, now),
        )

    def validate(self, obj: IPLock) -> list[FieldError]:
        return validation.validate_iplock(obj)

    def prepare_for_update(self, new: IPLock, old: IPLock, now: datetime.datetime) -> IPLock:
        return replace(
            new,
            metadata=prepare_update_meta(new.metadata, old.metadata, new.spec != old.spec),
            extended_metadata=old.extended_metadata,
        )

    def validate_update(self, new: IPLock, old: IPLock) -> list[FieldError]:
        return validation.validate_iplock_update(new, old)

    def prepare_for_status_update(self, new: IPLock, old: IPLock, now: datetime.datetime) -> IPLock:
        raise NotImplementedError("IPLock has no status subresource")


# --- Lease --------------------------------------------------------------------------------------


class LeaseStrategy:
    """Kubernetes' lease strategy (pkg/registry/coordination/lease/strategy.go): the spec is the client's,
    times included (the holder writes them), with no status and no extended metadata."""

    resource = resources.LEASES

    def prepare_for_create(self, obj: Lease, now: datetime.datetime) -> Lease:
        return replace(obj, metadata=prepare_create_meta(obj.metadata, now))

    def validate(self, obj: Lease) -> list[FieldError]:
        return validation.validate_lease(obj)

    def prepare_for_update(self, new: Lease, old: Lease, now: datetime.datetime) -> Lease:
        return replace(new, metadata=prepare_update_meta(new.metadata, old.metadata, new.spec != old.spec))

    def validate_update(self, new: Lease, old: Lease) -> list[FieldError]:
        return validation.validate_lease_update(new, old)

    def prepare_for_status_update(self, new: Lease, old: Lease, now: datetime.datetime) -> Lease:
        raise NotImplementedError("Lease has no status subresource")


STRATEGIES: dict[str, Any] = {
    "leases": LeaseStrategy(),
    "subnets": SubnetStrategy(),
    "networkattachments": NetworkAttachmentStrategy(),
    "iplocks": IPLockStrategy(),
}


def for_plural(plural: str) -> Strategy[Any]:
    s: Strategy[Any] = STRATEGIES[plural]
    return s
