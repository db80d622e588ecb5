"""The one codec: JSON <-> frozen msgspec Structs, strict by default.

Strict decoding rejects unknown fields with the path of the first one, which is
what `fieldValidation=Strict` means in Kubernetes; `lenient` decoding drops them
(`fieldValidation=Ignore`/`Warn`) and reports which were dropped.
"""

from __future__ import annotations

import datetime
from typing import Any, TypeVar

import msgspec

from kos.api.meta import ObjectMeta

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}

encode = _encoder.encode


def decoder(t: type[T]) -> msgspec.json.Decoder[T]:
    d = _decoders.get(t)
    if d is None:
        d = _decoders[t] = msgspec.json.Decoder(t)
    return d


def decode(data: bytes, t: type[T]) -> T:
    """Strict decode; raises msgspec.DecodeError (bad JSON) or msgspec.ValidationError (bad shape)."""
    return decoder(t).decode(data)


def decode_lenient(data: bytes, t: type[T]) -> tuple[T, list[str]]:
    """Decode dropping fields `t` does not have; returns the object and the dropped fields' paths."""
    raw = msgspec.json.decode(data)
    dropped: list[str] = []
    pruned = prune(raw, t, "", dropped)
    return convert(pruned, t), dropped


def convert(value: Any, t: type[T]) -> T:
    """Build a typed object from JSON-like builtins (strict: unknown fields are errors)."""
    return msgspec.convert(value, t, dec_hook=_dec_hook)


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def _dec_hook(t: type[Any], value: Any) -> Any:
    if t is datetime.datetime and isinstance(value, str):
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise NotImplementedError


def prune(value: Any, t: Any, path: str, dropped: list[str]) -> Any:
    """Drop keys of JSON objects that the corresponding Struct does not declare."""
    info = msgspec.inspect.type_info(t)
    return _prune(value, info, path, dropped)


def _prune(value: Any, info: msgspec.inspect.Type, path: str, dropped: list[str]) -> Any:
    if isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            if isinstance(member, msgspec.inspect.StructType | msgspec.inspect.DictType | msgspec.inspect.ListType):
                return _prune(value, member, path, dropped)
        return value
    if isinstance(info, msgspec.inspect.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f for f in info.fields}
        out = {}
        for k, v in value.items():
            f = fields.get(k)
            sub = f"{path}.{k}" if path else k
            if f is None:
                dropped.append(sub)
                continue
            out[k] = _prune(v, f.type, sub, dropped)
        return out
    if isinstance(info, msgspec.inspect.ListType) and isinstance(value, list):
        return [_prune(v, info.item_type, f"{path}[{i}]", dropped) for i, v in enumerate(value)]
    if isinstance(info, msgspec.inspect.DictType) and isinstance(value, dict):
        return {k: _prune(v, info.value_type, f"{path}.{k}", dropped) for k, v in value.items()}
    return value


def with_resource_version(obj: T, rv: int | str) -> T:
    meta: ObjectMeta = obj.metadata  # type: ignore[attr-defined]
    return msgspec.structs.replace(obj, metadata=msgspec.structs.replace(meta, resource_version=str(rv)))  # type: ignore[type-var]


def replace_meta(obj: T, **changes: Any) -> T:
    meta: ObjectMeta = obj.metadata  # type: ignore[attr-defined]
    return msgspec.structs.replace(obj, metadata=msgspec.structs.replace(meta, **changes))  # type: ignore[type-var]
