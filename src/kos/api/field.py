"""Field errors: what validation returns, one per problem, with the path a user has to fix.

Rendered exactly as Kubernetes renders `field.Error` so that messages read the
same as any other Kubernetes API: `spec.vni: Invalid value: 0: must be in [1,2097151]`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

import msgspec

_SHOWN_MAX = 200


class ErrorType(enum.Enum):
    INVALID = ("FieldValueInvalid", "Invalid value")
    REQUIRED = ("FieldValueRequired", "Required value")
    FORBIDDEN = ("FieldValueForbidden", "Forbidden")
    TOO_LONG = ("FieldValueTooLong", "Too long")
    TOO_MANY = ("FieldValueTooMany", "Too many")
    NOT_SUPPORTED = ("FieldValueNotSupported", "Unsupported value")
    DUPLICATE = ("FieldValueDuplicate", "Duplicate value")
    INTERNAL = ("InternalError", "Internal error")

    @property
    def reason(self) -> str:
        return self.value[0]

    @property
    def text(self) -> str:
        return self.value[1]


_NO_VALUE_TYPES = {ErrorType.REQUIRED, ErrorType.FORBIDDEN, ErrorType.TOO_LONG, ErrorType.INTERNAL}


@dataclasses.dataclass(frozen=True, slots=True)
class FieldError:
    type: ErrorType
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        if self.type in _NO_VALUE_TYPES:
            s = self.type.text
        else:
            s = f"{self.type.text}: {_render(self.value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def _render(value: Any) -> str:
    if isinstance(value, str):  # quoted as Go's %q quotes it: a trailing newline shows as \n, not as a line break
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | dict):  # from a request body: any size and depth, so shown short and flat
        try:
            text = msgspec.json.encode(value).decode()
        except (RecursionError, TypeError, ValueError):
            return f"<a {type(value).__name__} nested too deeply to show>"
        return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + f"... ({len(text)} characters)"
    return str(value)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(ErrorType.INVALID, field, value, detail)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(ErrorType.REQUIRED, field, None, detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError(ErrorType.FORBIDDEN, field, None, detail)


def too_long(field: str, detail: str) -> FieldError:
    return FieldError(ErrorType.TOO_LONG, field, None, detail)


def too_many(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(ErrorType.TOO_MANY, field, value, detail)


def not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    return FieldError(
        ErrorType.NOT_SUPPORTED, field, value, "supported values: " + ", ".join(f'"{s}"' for s in supported)
    )
