"""Garbage-collector settings for long-lived kos processes.

kos processes allocate many short-lived objects per request and keep many
long-lived ones (caches). CPython's default thresholds (700, 10, 10) run a
young-generation collection every 700 allocations and, with a large cache,
make full collections frequent and slow. Raising the thresholds cut the
apiserver's CPU per watch event by about 15% in `bench/apiserver.py` (see
docs/performance.md); freezing what exists after start-up moves the loaded
cache out of the collector's sight entirely.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    gc.set_threshold(*THRESHOLDS)


def freeze_startup_state() -> None:
    """Call once start-up has built its long-lived state (e.g. a loaded cache)."""
    gc.collect()
    gc.freeze()
