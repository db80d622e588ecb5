"""The one error tree of kos: server and client raise and catch the same classes.

    StatusError                      (500 InternalError unless a subclass says otherwise)
    ├── BadRequest                   400 BadRequest
    ├── Unauthorized                 401 Unauthorized
    ├── Forbidden                    403 Forbidden
    ├── NotFound                     404 NotFound
    ├── MethodNotAllowed             405 MethodNotAllowed
    ├── NotAcceptable                406 NotAcceptable
    ├── AlreadyExists                409 AlreadyExists
    ├── Conflict                     409 Conflict
    ├── Gone                         410 Gone
    │   └── Expired                  410 Expired   (too old resourceVersion / continue token)
    ├── RequestEntityTooLarge        413 RequestEntityTooLarge
    ├── UnsupportedMediaType         415 UnsupportedMediaType
    ├── Invalid                      422 Invalid   (carries field errors as causes)
    ├── TooManyRequests              429 TooManyRequests
    ├── RequestHeaderFieldsTooLarge  431 RequestHeaderFieldsTooLarge
    ├── InternalError                500 InternalError
    ├── ServiceUnavailable           503 ServiceUnavailable
    └── Timeout                      504 Timeout

The server renders each as a Kubernetes `Status` (`to_status`); the client turns a
`Status` back into the same class (`from_status`), so a controller can write
`except NotFound:` whether the error came from its own process or over the wire.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from kos.api.field import FieldError
from kos.api.meta import ListMeta, Status, StatusCause, StatusDetails, status
from kos.api.resources import BY_KIND, BY_PLURAL
from kos.api.types import GROUP


class StatusError(Exception):
    code: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"

    def __init__(self, message: str, *, details: StatusDetails | None = None, continue_token: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.continue_token = continue_token
        """`metadata.continue` of the Status: where a 410 for an expired continue token says to go on."""

    def to_status(self) -> Status:
        st = status(code=self.code, reason=self.reason, message=self.message, details=self.details)
        if self.continue_token:
            st = msgspec.structs.replace(st, metadata=ListMeta(continue_=self.continue_token))
        return st

    def has_cause(self, reason: str) -> bool:
        """Whether `details.causes` holds a cause with this reason (apimachinery's HasStatusCause)."""
        return self.details is not None and any(c.reason == reason for c in self.details.causes)

    @staticmethod
    def from_status(status: Status) -> StatusError:
        cls = _BY_REASON.get(status.reason) or _BY_CODE.get(status.code) or StatusError
        err = cls(
            status.message or f"status {status.code} {status.reason}",
            details=status.details,
            continue_token=status.metadata.continue_,
        )
        if cls is StatusError:
            err.code = status.code  # type: ignore[misc]
            err.reason = status.reason or "Unknown"  # type: ignore[misc]
        return err

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class BadRequest(StatusError):
    code = 400
    reason = "BadRequest"


class Unauthorized(StatusError):
    code = 401
    reason = "Unauthorized"


class Forbidden(StatusError):
    code = 403
    reason = "Forbidden"


class NotFound(StatusError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(StatusError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(StatusError):
    code = 406
    reason = "NotAcceptable"


class AlreadyExists(StatusError):
    code = 409
    reason = "AlreadyExists"


class Conflict(StatusError):
    code = 409
    reason = "Conflict"


class Gone(StatusError):
    code = 410
    reason = "Gone"


class Expired(Gone):
    reason = "Expired"


class RequestEntityTooLarge(StatusError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(StatusError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(StatusError):
    code = 422
    reason = "Invalid"

    @property
    def causes(self) -> tuple[StatusCause, ...]:
        return self.details.causes if self.details else ()


class TooManyRequests(StatusError):
    code = 429
    reason = "TooManyRequests"


class RequestHeaderFieldsTooLarge(StatusError):
    """A request line or header section past the server's bounds (Go's net/http, so kube-apiserver, answers 431)."""

    code = 431
    reason = "RequestHeaderFieldsTooLarge"


class InternalError(StatusError):
    code = 500
    reason = "InternalError"


class ServiceUnavailable(StatusError):
    code = 503
    reason = "ServiceUnavailable"


class Timeout(StatusError):
    code = 504
    reason = "Timeout"


_ALL: list[type[StatusError]] = [
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, NotAcceptable, AlreadyExists, Conflict,
    Gone, Expired, RequestEntityTooLarge, UnsupportedMediaType, Invalid, TooManyRequests,
    RequestHeaderFieldsTooLarge, InternalError, ServiceUnavailable, Timeout,
]  # fmt: skip
_BY_REASON: dict[str, type[StatusError]] = {c.reason: c for c in _ALL}
_BY_CODE: dict[int, type[StatusError]] = {}
for _c in _ALL:
    _BY_CODE.setdefault(_c.code, _c)


# --- constructors with Kubernetes' messages ------------------------------------------------------


def too_many_requests(message: str, retry_after: int = 1) -> TooManyRequests:
    """429 with `Retry-After` (and `details.retryAfterSeconds`), as Kubernetes' max-in-flight filter answers."""
    return TooManyRequests(message, details=StatusDetails(retry_after_seconds=retry_after))


def group_of(plural: str) -> str:
    """The API group of a served resource (kos's own for any other name)."""
    r = BY_PLURAL.get(plural)
    return GROUP if r is None else r.group


def qualified(plural: str) -> str:
    return f"{plural}.{group_of(plural)}"


def not_found(plural: str, kind: str, name: str) -> NotFound:
    return NotFound(
        f'{qualified(plural)} "{name}" not found', details=StatusDetails(name=name, group=group_of(plural), kind=plural)
    )


def already_exists(plural: str, name: str) -> AlreadyExists:
    return AlreadyExists(
        f'{qualified(plural)} "{name}" already exists',
        details=StatusDetails(name=name, group=group_of(plural), kind=plural),
    )


def conflict(plural: str, name: str, why: str) -> Conflict:
    return Conflict(
        f'Operation cannot be fulfilled on {qualified(plural)} "{name}": {why}',
        details=StatusDetails(name=name, group=group_of(plural), kind=plural),
    )


STALE_OBJECT = "the object has been modified; please apply your changes to the latest version and try again"

PRECONDITION_FAILED = "PreconditionFailed"
"""The `details.causes` reason of a 409 Conflict whose request precondition (UID or resourceVersion) did not hold.

Kubernetes words this Conflict "Precondition failed: UID in precondition: ..." and gives it no cause
(k8s.io/apiserver's storage.NewInvalidObjError, turned into a Conflict by storeerr.InterpretDeleteError);
kos adds this cause so that a client tells it from a stale write without reading the message.
"""


def precondition_failed(plural: str, name: str, field: str, wanted: str, actual: str) -> Conflict:
    """409 Conflict: the precondition on `field` ("UID" or "ResourceVersion") wanted `wanted`, the object has `actual`.

    The message is Kubernetes' word for word; `details.causes` holds one `PreconditionFailed` cause naming
    `preconditions.uid` or `preconditions.resourceVersion`, so `is_precondition_failed` works on either side
    of the wire.
    """
    why = f"Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {actual}"
    where = "preconditions.uid" if field == "UID" else "preconditions.resourceVersion"
    return Conflict(
        f'Operation cannot be fulfilled on {qualified(plural)} "{name}": {why}',
        details=StatusDetails(
            name=name,
            group=group_of(plural),
            kind=plural,
            causes=(StatusCause(reason=PRECONDITION_FAILED, message=why, field=where),),
        ),
    )


def is_precondition_failed(err: BaseException) -> bool:
    """Whether `err` is a Conflict because a request precondition did not hold (not a stale resourceVersion)."""
    return isinstance(err, Conflict) and err.has_cause(PRECONDITION_FAILED)


def invalid(kind: str, name: str, errors: list[FieldError], *, group: str = "") -> Invalid:
    """422 Invalid as kube-apiserver words it; `group` is `meta.k8s.io` for options such as ListOptions, and by
    default the group of the served `kind` (kos's own for any other)."""
    if not group:
        r = BY_KIND.get(kind)
        group = GROUP if r is None else r.group
    if len(errors) == 1:
        summary = str(errors[0])
    else:
        summary = "[" + ", ".join(str(e) for e in errors) + "]"
    return Invalid(
        f'{kind}.{group} "{name}" is invalid: {summary}',
        details=StatusDetails(
            name=name,
            group=group,
            kind=kind,
            causes=tuple(StatusCause(reason=e.type.reason, message=e.body(), field=e.field) for e in errors),
        ),
    )


RESOURCE_VERSION_TOO_LARGE = "ResourceVersionTooLarge"
"""metav1.CauseTypeResourceVersionTooLarge: the cause that tells a client its resourceVersion is from the future."""


def too_large_resource_version(wanted: int, current: int) -> Timeout:
    """k8s.io/apiserver's storage.NewTooLargeResourceVersionError, retrying after 1 s as the cacher does.

    504 Timeout whose `details.causes[0].reason` is `ResourceVersionTooLarge`: the server has not
    reached `wanted` (a client's revision from before the store was replaced or restored, or from a
    server further ahead). A reflector seeing it relists from the current state instead of retrying
    the same revision (client-go's isTooLargeResourceVersionError; kubernetes #91073).
    """
    return Timeout(
        f"Timeout: Too large resource version: {wanted}, current: {current}",
        details=StatusDetails(
            causes=(StatusCause(reason=RESOURCE_VERSION_TOO_LARGE, message="Too large resource version"),),
            retry_after_seconds=1,
        ),
    )


def is_too_large_resource_version(err: BaseException) -> bool:
    """apimachinery's storage.IsTooLargeResourceVersion: a 504 Timeout with the ResourceVersionTooLarge cause."""
    return isinstance(err, Timeout) and err.has_cause(RESOURCE_VERSION_TOO_LARGE)
