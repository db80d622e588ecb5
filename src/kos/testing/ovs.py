"""The OVS lab of the datapath tests and `bench/ovs.py`: kos.fabric.ovs.lab (moved there for `kos demo --fabric ovs`)."""

from __future__ import annotations

from kos.fabric.ovs.lab import (
    DAEMONS,
    PROGRAMS,
    SCHEMA,
    Host,
    Lab,
    free_subnets,
    links_with_prefix,
    missing,
    netns_with_prefix,
    processes_naming,
    run,
)

__all__ = ["DAEMONS", "PROGRAMS", "SCHEMA", "Host", "Lab", "free_subnets", "links_with_prefix", "missing",
           "netns_with_prefix", "processes_naming", "run"]  # fmt: skip
