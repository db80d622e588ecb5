"""What the driver knows of each NA it creates (`Record`) and of each place NAs take turns in (`Slot`).

Times in a `Record` are wall-clock seconds since the epoch (the driver's clock's `now()`), so that
client-observed stages and the server's `extendedMetadata` write stamps share one scale; NaN means
"not seen". Every stage is measured from `t_create`, the moment just before the create call (client
time, as the original driver does).
"""

from __future__ import annotations

import dataclasses
import math

from kos.driver import distribution


@dataclasses.dataclass(slots=True)
class Record:
    """One NA's life, as the driver saw it."""

    name: str
    vni: int
    subnet: str
    node: str
    thread: int
    t_create: float = 0.0
    """Wall time just before the create call."""
    create_latency: float = math.nan
    """Seconds the create call took (monotonic)."""
    addressed: float = math.nan
    ready: float = math.nan
    broken: float = math.nan
    tested: float = math.nan
    test_exit: int | None = None
    full_test: bool = False
    contention: bool = False
    deleted: float = math.nan
    server_spec: float = math.nan
    server_address: float = math.nan
    server_impl: float = math.nan
    failed: bool = False
    ipv4: str = ""
    closed: bool = False


@dataclasses.dataclass(slots=True)
class Slot:
    """A place in a VN that holds one NA at a time; its NAs are named `<vni hex>-<next_index>`."""

    net: distribution.NetworkPlan
    index: int
    next_index: int
    current: Record | None = None
    creates: int = 0
