"""Validation as pure functions: an object (and its old version, for updates) in, field errors out.

The rules are the original KOS server's (reference §2.4–2.6) with the deliberate
improvements of ARCHITECTURE §4 and §12: NA `spec.node`/`spec.subnet` are required
valid names, exec argv are bounded, a CIDR must be IPv4 without host bits, and
every object's metadata gets Kubernetes' ObjectMeta checks.
"""

from __future__ import annotations

import json

from kos.api import cidr, field, names
from kos.api.field import FieldError
from kos.api.meta import ObjectMeta
from kos.api.types import IPLock, Lease, NetworkAttachment, Subnet, parse_micro_time

MAX_EXEC_ARGS = 64
MAX_EXEC_ARG_BYTES = 4096
MAX_ANNOTATIONS_BYTES = 256 * 1024
IMMUTABLE = "field is immutable"


# --- metadata -----------------------------------------------------------------------------------


def validate_object_meta(meta: ObjectMeta, *, is_create: bool = True) -> list[FieldError]:
    errs: list[FieldError] = []
    if not meta.name:
        if not (is_create and meta.generate_name):
            errs.append(field.required("metadata.name", "name or generateName is required"))
    else:
        for p in names.dns1123_subdomain_problems(meta.name):
            errs.append(field.invalid("metadata.name", meta.name, p))
    if meta.generate_name:
        # a prefix: a trailing '-' is fine, and 5 random characters will follow
        probe = meta.generate_name[:-1] + "a" if meta.generate_name.endswith("-") else meta.generate_name
        for p in names.dns1123_subdomain_problems(probe):
            errs.append(field.invalid("metadata.generateName", meta.generate_name, p))
    if not meta.namespace:
        errs.append(field.required("metadata.namespace"))
    else:
        for p in names.dns1123_label_problems(meta.namespace):
            errs.append(field.invalid("metadata.namespace", meta.namespace, p))
    for k, v in meta.labels.items():
        for p in names.qualified_name_problems(k):
            errs.append(field.invalid("metadata.labels", k, p))
        if not names.is_label_value(v):
            errs.append(field.invalid(f"metadata.labels[{k}]" if len(k) < 64 else "metadata.labels", v,
                                      names.LABEL_VALUE_MSG))  # fmt: skip
    size = 0
    for k, v in meta.annotations.items():
        for p in names.qualified_name_problems(k.lower()):
            errs.append(field.invalid("metadata.annotations", k, p))
        size += len(k) + len(v)
    if size > MAX_ANNOTATIONS_BYTES:
        errs.append(field.too_long("metadata.annotations", f"may not be more than {MAX_ANNOTATIONS_BYTES} bytes"))
    for i, f in enumerate(meta.finalizers):
        for p in names.qualified_name_problems(f):
            errs.append(field.invalid(f"metadata.finalizers[{i}]", f, p))
    controllers = 0
    for i, ref in enumerate(meta.owner_references):
        path = f"metadata.ownerReferences[{i}]"
        if not ref.api_version:
            errs.append(field.required(f"{path}.apiVersion", "apiVersion must not be empty"))
        if not ref.kind:
            errs.append(field.required(f"{path}.kind", "kind must not be empty"))
        if not ref.name:
            errs.append(field.required(f"{path}.name", "name must not be empty"))
        if not ref.uid:
            errs.append(field.required(f"{path}.uid", "uid must not be empty"))
        if ref.controller:
            controllers += 1
    if controllers > 1:
        errs.append(
            field.invalid("metadata.ownerReferences", controllers, "Only one reference can have Controller set to true")
        )
    return errs


def validate_object_meta_update(new: ObjectMeta, old: ObjectMeta) -> list[FieldError]:
    errs = validate_object_meta(new, is_create=False)
    if new.name != old.name:
        errs.append(field.invalid("metadata.name", new.name, IMMUTABLE))
    if new.namespace != old.namespace:
        errs.append(field.invalid("metadata.namespace", new.namespace, IMMUTABLE))
    if new.uid and new.uid != old.uid:
        errs.append(field.invalid("metadata.uid", new.uid, IMMUTABLE))
    if old.deletion_timestamp is not None:
        errs += no_new_finalizers(new.finalizers, old.finalizers)
    return errs


def no_new_finalizers(new: tuple[str, ...], old: tuple[str, ...]) -> list[FieldError]:
    """Once deletion has started, finalizers can only be removed (kubernetes #32339).

    apimachinery's `ValidateNoNewFinalizers`, called from `ValidateObjectMetaUpdate` when the old
    object has a deletionTimestamp; the message is Kubernetes' word for word, with the new
    finalizers sorted and rendered as Go's `%#v` of a `[]string`.
    """
    extra = sorted(set(new) - set(old))
    if not extra:
        return []
    rendered = "[]string{" + ", ".join(_go_quote(f) for f in extra) + "}"
    return [
        field.forbidden(
            "metadata.finalizers",
            f"no new finalizers can be added if the object is being deleted, found new finalizers {rendered}",
        )
    ]


def _go_quote(s: str) -> str:
    """A double-quoted string with escapes, as Go's %q writes one (JSON's escapes, which agree for names)."""
    return json.dumps(s, ensure_ascii=False)


# --- Subnet -------------------------------------------------------------------------------------


def subnet_spec_errors(sn: Subnet) -> list[FieldError]:
    """Range and CIDR checks of a Subnet's spec (reference §2.4 step 1, with ARCHITECTURE §12.8)."""
    errs: list[FieldError] = []
    vni = sn.spec.vni
    if not 1 <= vni <= names.MAX_VNI:
        errs.append(field.invalid("spec.vni", vni, f"must be in [1,{names.MAX_VNI}]"))
    if not sn.spec.ipv4:
        errs.append(field.required("spec.ipv4", "an IPv4 CIDR block such as 10.0.0.0/24 is required"))
    else:
        try:
            block = cidr.parse_block(sn.spec.ipv4)
        except cidr.CIDRError as e:
            errs.append(field.invalid("spec.ipv4", sn.spec.ipv4, str(e)))
        else:
            if not cidr.is_rfc1918(block):
                errs.append(
                    field.invalid(
                        "spec.ipv4",
                        sn.spec.ipv4,
                        "must be compliant with RFC 1918 and is not (it must lie entirely inside 10.0.0.0/8,"
                        " 172.16.0.0/12 or 192.168.0.0/16)",
                    )
                )
    return errs


def validate_subnet(sn: Subnet) -> list[FieldError]:
    return validate_object_meta(sn.metadata) + subnet_spec_errors(sn)


def validate_subnet_update(new: Subnet, old: Subnet) -> list[FieldError]:
    errs = validate_object_meta_update(new.metadata, old.metadata)
    if new.spec.vni != old.spec.vni:
        errs.append(field.forbidden("spec.vni", "attempt to update immutable field"))
    if new.spec.ipv4 != old.spec.ipv4:
        errs.append(field.forbidden("spec.ipv4", "attempt to update immutable field"))
    return errs


# --- NetworkAttachment --------------------------------------------------------------------------


def _exec_errors(path: str, argv: tuple[str, ...]) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(argv) > MAX_EXEC_ARGS:
        errs.append(field.too_many(path, len(argv), f"must have at most {MAX_EXEC_ARGS} items"))
    for i, arg in enumerate(argv):
        if len(arg.encode()) > MAX_EXEC_ARG_BYTES:
            errs.append(field.too_long(f"{path}[{i}]", f"may not be more than {MAX_EXEC_ARG_BYTES} bytes"))
        if "\x00" in arg:
            errs.append(field.invalid(f"{path}[{i}]", arg, "must not contain NUL characters"))
    if argv and not argv[0]:
        errs.append(field.required(f"{path}[0]", "the program to run must not be empty"))
    return errs


def _name_errors(path: str, value: str, what: str) -> list[FieldError]:
    if not value:
        return [field.required(path, f"the name of the {what} is required")]
    return [field.invalid(path, value, p) for p in names.dns1123_subdomain_problems(value)]


def validate_network_attachment(na: NetworkAttachment) -> list[FieldError]:
    errs = validate_object_meta(na.metadata)
    errs += _name_errors("spec.node", na.spec.node, "node")
    errs += _name_errors("spec.subnet", na.spec.subnet, "subnet")
    errs += _exec_errors("spec.postCreateExec", na.spec.post_create_exec)
    errs += _exec_errors("spec.postDeleteExec", na.spec.post_delete_exec)
    return errs


def validate_network_attachment_update(new: NetworkAttachment, old: NetworkAttachment) -> list[FieldError]:
    errs = validate_object_meta_update(new.metadata, old.metadata)
    if new.spec.node != old.spec.node:
        errs.append(field.forbidden("spec.node", "attempt to update immutable field"))
    if new.spec.subnet != old.spec.subnet:
        errs.append(field.forbidden("spec.subnet", "attempt to update immutable field"))
    if new.spec.post_create_exec != old.spec.post_create_exec:
        errs.append(field.forbidden("spec.postCreateExec", "attempt to update immutable field"))
    errs += _exec_errors("spec.postDeleteExec", new.spec.post_delete_exec)
    return errs


# --- IPLock -------------------------------------------------------------------------------------


def validate_iplock(lock: IPLock) -> list[FieldError]:
    errs = validate_object_meta(lock.metadata)
    if lock.spec.subnet_name:
        errs += [field.invalid("spec.subnetName", lock.spec.subnet_name, p)
                 for p in names.dns1123_subdomain_problems(lock.spec.subnet_name)]  # fmt: skip
    return errs


def validate_iplock_update(new: IPLock, old: IPLock) -> list[FieldError]:
    errs = validate_object_meta_update(new.metadata, old.metadata)
    if new.spec != old.spec:
        errs.append(field.forbidden("spec", "attempt to update immutable field"))
    return errs


# --- Lease --------------------------------------------------------------------------------------

LEASE_STRATEGIES = ["OldestEmulationVersion"]


def validate_lease(lease: Lease) -> list[FieldError]:
    """ValidateLease (k8s.io/kubernetes pkg/apis/coordination/validation): a positive duration, non-negative
    transitions, MicroTime times, and a strategy (a known one) whenever a preferred holder is named."""
    return validate_object_meta(lease.metadata) + _lease_spec_errors(lease)


def _lease_spec_errors(lease: Lease) -> list[FieldError]:
    errs: list[FieldError] = []
    s = lease.spec
    if s.lease_duration_seconds is not None and s.lease_duration_seconds <= 0:
        errs.append(field.invalid("spec.leaseDurationSeconds", s.lease_duration_seconds, "must be greater than 0"))
    if s.lease_transitions is not None and s.lease_transitions < 0:
        errs.append(field.invalid("spec.leaseTransitions", s.lease_transitions, "must be greater than or equal to 0"))
    for path, t in (("spec.acquireTime", s.acquire_time), ("spec.renewTime", s.renew_time)):
        if t is not None:
            try:
                parse_micro_time(t)
            except ValueError:
                errs.append(field.invalid(path, t, "must be an RFC 3339 time such as 2006-01-02T15:04:05.000000Z"))
    if s.strategy is not None and s.strategy not in LEASE_STRATEGIES:
        errs.append(field.not_supported("spec.strategy", s.strategy, LEASE_STRATEGIES))
    if s.preferred_holder and not s.strategy:
        errs.append(field.forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


def validate_lease_update(new: Lease, old: Lease) -> list[FieldError]:
    return validate_object_meta_update(new.metadata, old.metadata) + _lease_spec_errors(new)
