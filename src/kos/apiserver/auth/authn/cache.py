"""Bounded memo tables: what a certificate or a token maps to is computed once and looked up per request.

A plain dict, read directly on the hot path (`table.get(key)`); `remember` inserts and, past `size` entries,
drops the oldest (insertion order), so a client cycling through certificates or tokens cannot grow memory.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, size: int) -> V:
    """Store `value` under `key` in `table`, dropping the oldest entry if `table` holds `size`; returns `value`."""
    if key not in table and len(table) >= size:
        del table[next(iter(table))]
    table[key] = value
    return value
