"""The informer's local store: objects by `namespace/name`, plus named secondary indexes, and a read-only lister.

Objects are the frozen API types, so a lister hands out the cached objects
themselves, never copies: a controller that wants a change builds a new object.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

IndexFunc = Callable[[Any], Iterable[str]]


def key_of(obj: Any) -> str:
    m = obj.metadata
    return f"{m.namespace}/{m.name}"


class Indexer(Generic[T]):
    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, T] = {}
        self._funcs: dict[str, IndexFunc] = dict(indexers or {})
        self._indexes: dict[str, dict[str, set[str]]] = {n: {} for n in self._funcs}
        self._values: dict[str, dict[str, tuple[str, ...]]] = {n: {} for n in self._funcs}

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self._funcs[name] = fn
        self._indexes[name] = {}
        self._values[name] = {}
        for k, obj in self._items.items():
            self._index(name, k, obj)

    def _index(self, name: str, key: str, obj: T) -> None:
        vals = tuple(self._funcs[name](obj))
        self._values[name][key] = vals
        idx = self._indexes[name]
        for v in vals:
            idx.setdefault(v, set()).add(key)

    def _unindex(self, name: str, key: str) -> None:
        idx = self._indexes[name]
        for v in self._values[name].pop(key, ()):
            s = idx.get(v)
            if s is not None:
                s.discard(key)
                if not s:
                    del idx[v]

    def put(self, obj: T) -> T | None:
        key = key_of(obj)
        old = self._items.get(key)
        self._items[key] = obj
        for name in self._funcs:
            if old is not None:
                self._unindex(name, key)
            self._index(name, key, obj)
        return old

    def delete(self, key: str) -> T | None:
        old = self._items.pop(key, None)
        if old is not None:
            for name in self._funcs:
                self._unindex(name, key)
        return old

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def list_keys(self) -> list[str]:
        return list(self._items)

    def values(self) -> list[T]:
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def index_keys(self, name: str, value: str) -> set[str]:
        return set(self._indexes[name].get(value, ()))

    def by_index(self, name: str, value: str) -> list[T]:
        return [self._items[k] for k in self._indexes[name].get(value, ())]


class Lister(Generic[T]):
    """Read-only view of an Indexer."""

    def __init__(self, indexer: Indexer[T]) -> None:
        self._indexer = indexer

    def get(self, namespace: str, name: str) -> T | None:
        return self._indexer.get(f"{namespace}/{name}")

    def list(self, namespace: str | None = None) -> list[T]:
        objs = self._indexer.values()
        if namespace is None:
            return objs
        return [o for o in objs if o.metadata.namespace == namespace]  # type: ignore[attr-defined]

    def by_index(self, name: str, value: str) -> builtins.list[T]:
        return self._indexer.by_index(name, value)

    def __len__(self) -> int:
        return len(self._indexer)
