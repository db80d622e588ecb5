"""What every field of the API means, in words: the descriptions the OpenAPI documents carry.

`kubectl explain` reads them (`kubectl explain networkattachment.spec`). The kinds'
fields are described after the KOS reference (§1, with ARCHITECTURE §4/§12's
improvements); ObjectMeta, OwnerReference, ListMeta and ManagedFieldsEntry with
Kubernetes' own standard descriptions (k8s.io/apimachinery/pkg/apis/meta/v1
types.go). Keyed by type name and JSON field name, so the OpenAPI generator can
insist that no field is left without one (tests/unit/test_openapi.py).
"""

from __future__ import annotations

from typing import Final

_CONVENTIONS = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
_NAMES = "https://kubernetes.io/docs/concepts/overview/working-with-objects/names"

_API_VERSION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert"
    " recognized schemas to the latest internal value, and may reject unrecognized values. More info:"
    f" {_CONVENTIONS}#resources"
)
_KIND = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this from"
    " the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info:"
    f" {_CONVENTIONS}#types-kinds"
)
_OBJECT_METADATA = f"Standard object's metadata. More info: {_CONVENTIONS}#metadata"
_LIST_METADATA = f"Standard list metadata. More info: {_CONVENTIONS}#types-kinds"
_EXTENDED = (
    "Write times the server records for sections of the object (spec, status, ...); maintained by the server,"
    " clients cannot set or change them."
)
_EXEC_ARGV = (
    " argv[0] must be a program the node's agent allows; in argv[1:] the tokens ${ifname}, ${ipv4} and ${mac}"
    " are replaced by the interface's name, IPv4 address and MAC address. At most 64 arguments of at most 4 KiB"
    " each."
)

TYPES: Final[dict[str, str]] = {
    # --- Kubernetes' metadata types --------------------------------------------------------
    "ObjectMeta": (
        "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create."
    ),
    "ListMeta": (
        "ListMeta describes metadata that synthetic resources must have, including lists and various status"
        " objects. A resource may have only one of {ObjectMeta, ListMeta}."
    ),
    "OwnerReference": (
        "OwnerReference contains enough information to let you identify an owning object. An owning object must be"
        " in the same namespace as the dependent, or be cluster-scoped, so there is no namespace field."
    ),
    "ManagedFieldsEntry": (
        "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset"
        " applies to."
    ),
    "FieldsV1": (
        "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format. Each key is either a '.'"
        " representing the field itself, and will always map to an empty set, or a string representing a sub-field"
        " or item. The string will follow one of these four formats: 'f:<name>', where <name> is the name of a"
        " field in a struct, or key in a map; 'v:<value>', where <value> is the exact json formatted value of a"
        " list item; 'i:<index>', where <index> is position of a item in a list; 'k:<keys>', where <keys> is a map"
        " of a list item's key fields to their unique values. If a key maps to an empty Fields value, the field"
        " that key represents is part of the set. The exact format is defined in sigs.k8s.io/structured-merge-diff"
    ),
    "ExtendedObjectMeta": _EXTENDED,
    "ObjectWrite": "When the server recorded a write to one section of an object.",
    # --- Subnet ----------------------------------------------------------------------------
    "Subnet": (
        "A Subnet is a block of IPv4 addresses in a virtual network, identified by its VNI. Subnets with the same"
        " VNI must be in the same namespace and have disjoint CIDR blocks."
    ),
    "SubnetSpec": "The address block and virtual network of a Subnet; immutable.",
    "SubnetStatus": "The subnet validator's verdict on a Subnet.",
    "SubnetList": "SubnetList is a list of Subnets.",
    # --- NetworkAttachment -----------------------------------------------------------------
    "NetworkAttachment": (
        "A NetworkAttachment asks for a network interface on a node, with an IPv4 address from a Subnet of the"
        " same namespace. It is ready once it has an address (status.ipv4, from IPAM) and its node's agent has"
        " implemented it (macAddress, ifcName, hostIP), and no errors are reported."
    ),
    "NetworkAttachmentSpec": "Where the interface must appear, from which subnet, and what to run around it.",
    "NetworkAttachmentStatus": (
        "The address assigned by IPAM (ipv4, addressVNI, lockUID, errors.ipam, ...) and the interface implemented"
        " by the node's connection agent (macAddress, ifcName, hostIP, errors.host, postCreateExecReport)."
    ),
    "NetworkAttachmentErrors": "Problems that keep a NetworkAttachment from being ready, by who found them.",
    "ExecReport": "The outcome of running a command for an interface.",
    "NetworkAttachmentList": "NetworkAttachmentList is a list of NetworkAttachments.",
    # --- IPLock ----------------------------------------------------------------------------
    "IPLock": (
        "An IPLock holds one address of a virtual network: it is named v1-<VNI>-<a>-<b>-<c>-<d>, and creating it"
        " takes the address a.b.c.d in that VNI (a second one cannot exist). Its controller owner reference is the"
        " NetworkAttachment holding the address; deleting that NetworkAttachment deletes the lock."
    ),
    "IPLockSpec": "Where the locked address was taken from.",
    "IPLockList": "IPLockList is a list of IPLocks.",
    # --- Lease (Kubernetes' words, k8s.io/api/coordination/v1) -------------------------------
    "Lease": "Lease defines a lease concept.",
    "LeaseSpec": "LeaseSpec is a specification of a Lease.",
    "LeaseList": "LeaseList is a list of Lease objects.",
}
"""Description of each type, by its name."""


def _kind_fields(what: str) -> dict[str, str]:
    return {
        "apiVersion": _API_VERSION,
        "kind": _KIND,
        "metadata": _OBJECT_METADATA,
        "extendedMetadata": _EXTENDED,
        "spec": f"The desired state of the {what}.",
    }


def _list_fields(what: str) -> dict[str, str]:
    return {"apiVersion": _API_VERSION, "kind": _KIND, "metadata": _LIST_METADATA, "items": f"List of {what}."}


FIELDS: Final[dict[str, dict[str, str]]] = {
    "ObjectMeta": {
        "name": (
            "Name must be unique within a namespace. Is required when creating resources, although some resources"
            " may allow a client to request the generation of an appropriate name automatically. Name is primarily"
            " intended for creation idempotence and configuration definition. Cannot be updated. More info:"
            f" {_NAMES}#names"
        ),
        "generateName": (
            "GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name"
            " field has not been provided. If this field is used, the name returned to the client will be different"
            " than the name passed. This value will also be combined with a unique suffix. The provided value has"
            " the same validation rules as the Name field, and may be truncated by the length of the suffix required"
            " to make the value unique on the server.\n\nIf this field is specified and the generated name exists,"
            " the server will return a 409.\n\nApplied only if Name is not specified. More info:"
            f" {_CONVENTIONS}#idempotency"
        ),
        "namespace": (
            "Namespace defines the space within which each name must be unique. An empty namespace is equivalent to"
            ' the "default" namespace, but "default" is the canonical representation. Not all objects are required'
            " to be scoped to a namespace - the value of this field for those objects will be empty.\n\nMust be a"
            " DNS_LABEL. Cannot be updated. More info:"
            " https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces"
        ),
        "selfLink": "Deprecated: selfLink is a legacy read-only field that is no longer populated by the system.",
        "uid": (
            "UID is the unique in time and space value for this object. It is typically generated by the server on"
            " successful creation of a resource and is not allowed to change on PUT operations.\n\nPopulated by the"
            f" system. Read-only. More info: {_NAMES}#uids"
        ),
        "resourceVersion": (
            "An opaque value that represents the internal version of this object that can be used by clients to"
            " determine when objects have changed. May be used for optimistic concurrency, change detection, and the"
            " watch operation on a resource or set of resources. Clients must treat these values as opaque and"
            " passed unmodified back to the server. They may only be valid for a particular resource or set of"
            " resources.\n\nPopulated by the system. Read-only. Value must be treated as opaque by clients. More"
            f" info: {_CONVENTIONS}#concurrency-control-and-consistency"
        ),
        "generation": (
            "A sequence number representing a specific generation of the desired state. Populated by the system."
            " Read-only."
        ),
        "creationTimestamp": (
            "CreationTimestamp is a timestamp representing the server time when this object was created. It is not"
            " guaranteed to be set in happens-before order across separate operations. Clients may not set this"
            " value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null"
            f" for lists. More info: {_CONVENTIONS}#metadata"
        ),
        "deletionTimestamp": (
            "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted. This field is set"
            " by the server when a graceful deletion is requested by the user, and is not directly settable by a"
            " client. The resource is expected to be deleted (no longer visible from resource lists, and not"
            " reachable by name) after the time in this field, once the finalizers list is empty. As long as the"
            " finalizers list contains items, deletion is blocked. Once the deletionTimestamp is set, this value may"
            " not be unset or be set further into the future, although it may be shortened or the resource may be"
            " deleted prior to this time.\n\nPopulated by the system when a graceful deletion is requested."
            f" Read-only. More info: {_CONVENTIONS}#metadata"
        ),
        "deletionGracePeriodSeconds": (
            "Number of seconds allowed for this object to gracefully terminate before it will be removed from the"
            " system. Only set when deletionTimestamp is also set. May only be shortened. Read-only."
        ),
        "labels": (
            "Map of string keys and values that can be used to organize and categorize (scope and select) objects."
            " May match selectors of replication controllers and services. More info:"
            " https://kubernetes.io/docs/concepts/overview/working-with-objects/labels"
        ),
        "annotations": (
            "Annotations is an unstructured key value map stored with a resource that may be set by external tools"
            " to store and retrieve arbitrary metadata. They are not queryable and should be preserved when"
            " modifying objects. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/annotations"
        ),
        "ownerReferences": (
            "List of objects depended by this object. If ALL objects in the list have been deleted, this object will"
            " be garbage collected. If this object is managed by a controller, then an entry in this list will point"
            " to this controller, with the controller field set to true. There cannot be more than one managing"
            " controller."
        ),
        "finalizers": (
            "Must be empty before the object is deleted from the registry. Each entry is an identifier for the"
            " responsible component that will remove the entry from the list. If the deletionTimestamp of the object"
            " is non-nil, entries in this list can only be removed. Finalizers may be processed and removed in any"
            " order.  Order is NOT enforced because it introduces significant risk of stuck finalizers. finalizers"
            " is a shared field, any actor with permission can reorder it. If the finalizer list is processed in"
            " order, then this can lead to a situation in which the component responsible for the first finalizer"
            " in the list is waiting for a signal (field value, external system, or other) produced by a component"
            " responsible for a finalizer later in the list, resulting in a deadlock. Without enforced ordering"
            " finalizers are free to order amongst themselves and are not vulnerable to ordering changes in the"
            " list."
        ),
        "managedFields": (
            "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow. This"
            " is mostly for internal housekeeping, and users typically shouldn't need to set or understand this"
            " field. A workflow can be the user's name, a controller's name, or the name of a specific apply path"
            ' like "ci-cd". The set of fields is always in the version that the workflow used when modifying the'
            " object."
        ),
    },
    "ListMeta": {
        "resourceVersion": (
            "String that identifies the server's internal version of this object that can be used by clients to"
            " determine when objects have changed. Value must be treated as opaque by clients and passed unmodified"
            " back to the server. Populated by the system. Read-only. More info:"
            f" {_CONVENTIONS}#concurrency-control-and-consistency"
        ),
        "continue": (
            "continue may be set if the user set a limit on the number of items returned, and indicates that the"
            " server has more data available. The value is opaque and may be used to issue another request to the"
            " endpoint that served this list to retrieve the next set of available objects. Continuing a consistent"
            " list may not be possible if the server configuration has changed or more than a few minutes have"
            " passed. The resourceVersion field returned when using this continue value will be identical to the"
            " value in the first response, unless you have received this token from an error message."
        ),
        "remainingItemCount": (
            "remainingItemCount is the number of subsequent items in the list which are not included in this list"
            " response. If the list request contained label or field selectors, then the number of remaining items"
            " is unknown and the field will be left unset and omitted during serialization. If the list is complete"
            " (either because it is not chunking or because this is the last chunk), then there are no more"
            " remaining items and this field will be left unset and omitted during serialization. The intended use"
            " of the remainingItemCount is *estimating* the size of a collection. Clients should not rely on the"
            " remainingItemCount to be set or to be exact."
        ),
        "selfLink": "Deprecated: selfLink is a legacy read-only field that is no longer populated by the system.",
    },
    "OwnerReference": {
        "apiVersion": "API version of the referent.",
        "kind": f"Kind of the referent. More info: {_CONVENTIONS}#types-kinds",
        "name": f"Name of the referent. More info: {_NAMES}#names",
        "uid": f"UID of the referent. More info: {_NAMES}#uids",
        "controller": "If true, this reference points to the managing controller.",
        "blockOwnerDeletion": (
            'If true, AND if the owner has the "foregroundDeletion" finalizer, then the owner cannot be deleted from'
            " the key-value store until this reference is removed. See"
            " https://kubernetes.io/docs/concepts/architecture/garbage-collection/#foreground-deletion for how the"
            " garbage collector interacts with this field and enforces the foreground deletion. Defaults to false."
        ),
    },
    "ManagedFieldsEntry": {
        "manager": "Manager is an identifier of the workflow managing these fields.",
        "operation": (
            "Operation is the type of operation which lead to this ManagedFieldsEntry being created. The only valid"
            " values for this field are 'Apply' and 'Update'."
        ),
        "apiVersion": (
            "APIVersion defines the version of this resource that this field set applies to. The format is"
            ' "group/version" just like the top-level APIVersion field. It is necessary to track the version of a'
            " field set because it cannot be automatically converted."
        ),
        "time": (
            "Time is the timestamp of when the ManagedFields entry was added. The timestamp will also be updated if"
            " a field is added, the manager changes any of the owned fields value or removes a field. The timestamp"
            " does not update when a field is removed from the entry because another manager took it over."
        ),
        "fieldsType": (
            "FieldsType is the discriminator for the different fields format and version. There is currently only"
            ' one possible value: "FieldsV1"'
        ),
        "fieldsV1": 'FieldsV1 holds the first JSON version format as described in the "FieldsV1" type.',
        "subresource": (
            "Subresource is the name of the subresource used to update that object, or empty string if the object"
            " was updated through the main resource. The value of this field is used to distinguish between"
            " managers, even if they share the same name. For example, a status update will be distinct from a"
            " regular update using the same manager name. Note that the APIVersion field is not related to the"
            " Subresource field and it always corresponds to the version of the main resource."
        ),
    },
    "ExtendedObjectMeta": {
        "writes": (
            "When the server recorded the latest write of each section of the object, newest first, one entry per"
            " section: spec (on create, and when a NetworkAttachment's postDeleteExec changes); status (a Subnet's"
            " verdict); status.address, status.impl and status.execReport (a NetworkAttachment's address, interface"
            " and post-create report). Every latency of the system is measured from these server times."
        ),
    },
    "ObjectWrite": {
        "section": "The section of the object that was written (spec, status, status.address, ...).",
        "serverTime": "When the server recorded the write (RFC 3339 with microseconds).",
    },
    # --- Subnet ----------------------------------------------------------------------------
    "Subnet": {**_kind_fields("Subnet"), "status": "What the subnet validator found (written by the controller)."},
    "SubnetSpec": {
        "ipv4": (
            "The address block, in CIDR notation (e.g. 10.1.0.0/24). It must lie entirely inside one RFC 1918 block"
            " (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16) and have no host bits set. Required; immutable."
        ),
        "vni": (
            "The virtual network identifier, in [1, 2097151] (21 bits). Subnets with the same VNI form one virtual"
            " network: they must be in the same namespace and have disjoint CIDR blocks. Required; immutable."
        ),
    },
    "SubnetStatus": {
        "validated": (
            "True once the subnet validator found no conflict with another subnet of the same VNI; once true it"
            " stays true for the object's lifetime. False or absent: not examined yet, or in conflict (see errors)."
            " Addresses are assigned only from validated subnets."
        ),
        "errors": (
            "The subnet validator's complaints, sorted: 'CIDR overlaps with <namespace>/<name>'s (<cidr>)' and 'same"
            " VNI but different namespace wrt <namespace>/<name>'. Non-empty only when validated is false because of"
            " a conflict."
        ),
    },
    "SubnetList": _list_fields("Subnets"),
    # --- NetworkAttachment -----------------------------------------------------------------
    "NetworkAttachment": {
        **_kind_fields("NetworkAttachment"),
        "status": "The address assigned and the interface implemented (written by IPAM and the node's agent).",
    },
    "NetworkAttachmentSpec": {
        "node": "The name of the node where the network interface must appear. Required; immutable.",
        "subnet": (
            "The name of the Subnet, in the same namespace, whose block the address is taken from. Required; immutable."
        ),
        "postCreateExec": (
            "A command (argv) the node's connection agent runs after it creates the interface (not when it reuses an"
            " existing one); its outcome is reported in status.postCreateExecReport." + _EXEC_ARGV + " Immutable."
        ),
        "postDeleteExec": (
            "A command (argv) the node's connection agent runs after it deletes the interface; its outcome is not"
            " reported." + _EXEC_ARGV + " The one mutable spec field: changing it bumps metadata.generation."
        ),
    },
    "NetworkAttachmentStatus": {
        "errors": "Problems that keep the attachment from being ready: from IPAM (ipam) and from its node (host).",
        "subnetCreationTime": "The spec write time of the referenced Subnet (written by IPAM, for latency metrics).",
        "addressContention": "True if any attempt to pick an address for this attachment found the subnet full.",
        "lockUID": "The UID of the IPLock that holds the address; empty when there is no address.",
        "addressVNI": "The VNI of the assigned address; 0 or absent when there is none.",
        "ipv4": "The assigned IPv4 address, dotted quad; set by IPAM once the IPLock exists.",
        "macAddress": (
            "The interface's MAC address (aa:bb:cc:dd:ee:ff, lowercase, derived from the VNI and the address);"
            " written by the node's agent while the interface exists."
        ),
        "ifcName": "The interface's Linux name (kos + 12 hex digits); empty while it is not implemented.",
        "hostIP": "The IP address of the node hosting the interface (the tunnel endpoint remote nodes send to).",
        "postCreateExecReport": (
            "The outcome of spec.postCreateExec, run when the interface was created (possibly for an earlier"
            " attachment whose interface was reused)."
        ),
    },
    "NetworkAttachmentErrors": {
        "ipam": (
            "Why IPAM cannot give an address (for example 'Referenced subnet has run out of IPs', or the subnet is"
            " missing or not validated)."
        ),
        "host": "Why the node's connection agent cannot implement the interface.",
    },
    "ExecReport": {
        "command": "The argv actually run, after expansion of ${ifname}, ${ipv4} and ${mac}.",
        "exitStatus": (
            "The process's exit status; negative when the problem came before or around running it (-2: it could"
            " not be started or did not end with an exit status; -3: an unexpected wait status)."
        ),
        "startTime": "When the command started (second precision).",
        "stopTime": "When the command ended (second precision).",
        "stdOut": "What the command wrote to its standard output.",
        "stdErr": "What the command wrote to its standard error.",
    },
    "NetworkAttachmentList": _list_fields("NetworkAttachments"),
    # --- IPLock ----------------------------------------------------------------------------
    "IPLock": _kind_fields("IPLock"),
    "IPLockSpec": {"subnetName": "The name of the subnet the address was taken from (informational)."},
    "IPLockList": _list_fields("IPLocks"),
    "Lease": {
        "apiVersion": _API_VERSION,
        "kind": _KIND,
        "metadata": _OBJECT_METADATA,
        "spec": "spec contains the specification of the Lease.",
    },
    "LeaseSpec": {
        "holderIdentity": "holderIdentity contains the identity of the holder of a current lease.",
        "leaseDurationSeconds": (
            "leaseDurationSeconds is a duration that candidates for a lease need to wait to force acquire it."
            " This is measured against the time of last observed renewTime."
        ),
        "acquireTime": "acquireTime is a time when the current lease was acquired (MicroTime).",
        "renewTime": "renewTime is a time when the current holder of a lease has last updated the lease (MicroTime).",
        "leaseTransitions": "leaseTransitions is the number of transitions of a lease between holders.",
        "strategy": (
            "Strategy indicates the strategy for picking the leader for coordinated leader election."
            " The only value is OldestEmulationVersion."
        ),
        "preferredHolder": (
            "PreferredHolder signals to a lease holder that the lease has a more optimal holder and should be"
            " given up. This field can only be set if Strategy is also set."
        ),
    },
    "LeaseList": _list_fields("Lease objects"),
}
"""Description of each field, by type name and JSON field name."""

LIST_TYPES: Final[dict[tuple[str, str], dict[str, object]]] = {
    ("ObjectMeta", "finalizers"): {"x-kubernetes-list-type": "set"},
    ("ObjectMeta", "ownerReferences"): {
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["uid"],
        "x-kubernetes-patch-merge-key": "uid",
        "x-kubernetes-patch-strategy": "merge",
    },
    ("ObjectMeta", "managedFields"): {"x-kubernetes-list-type": "atomic"},
    ("ExtendedObjectMeta", "writes"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["section"]},
}
"""How each list merges (OpenAPI list-type extensions); lists not named here are replaced whole (atomic)."""

FORMATS: Final[dict[tuple[str, str], str]] = {
    ("ExecReport", "exitStatus"): "int32",
    ("LeaseSpec", "leaseDurationSeconds"): "int32",
    ("LeaseSpec", "leaseTransitions"): "int32",
}
"""Integer formats other than the default int64."""
