"""The fabric contract: Kubernetes-free interfaces to one node's virtual switch (reference §6.1).

A *local* interface is a Linux interface on this node for an attachment; a
*remote* interface is what this node needs to reach an attachment on another
node (its MAC, IP and the host behind it). The agent is the only caller; the
fabric knows nothing of NetworkAttachments.

Guarantees every implementation gives:
- (VNI, guest IP) pairs are unique across local and remote interfaces: creating
  a pair that exists fails with `DuplicateInterface` until it is deleted, and of
  two concurrent creates of one pair exactly one succeeds;
- the lists return everything created earlier, even by a previous process, and
  are called before any other operation after a (re)start;
- deleting an interface that is already gone succeeds (and still removes its flows).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class LocalNetIfc:
    name: str
    vni: int
    guest_mac: str
    guest_ip: str


@dataclasses.dataclass(frozen=True, slots=True)
class RemoteNetIfc:
    vni: int
    guest_mac: str
    guest_ip: str
    host_ip: str


class FabricError(Exception):
    """A fabric operation failed; the message says what to fix (it ends up in the NA's `status.errors.host`)."""


class DuplicateInterface(FabricError):
    def __init__(self, vni: int, ip: str) -> None:
        super().__init__(f"there is already an interface in VNI {vni:#x} with IP {ip}")


class Fabric(Protocol):
    name: str

    async def create_local_ifc(self, ifc: LocalNetIfc) -> None: ...

    async def delete_local_ifc(self, ifc: LocalNetIfc) -> None: ...

    async def create_remote_ifc(self, ifc: RemoteNetIfc) -> None: ...

    async def delete_remote_ifc(self, ifc: RemoteNetIfc) -> None: ...

    async def list_local_ifcs(self) -> list[LocalNetIfc]: ...

    async def list_remote_ifcs(self) -> list[RemoteNetIfc]: ...

    async def close(self) -> None: ...


class Pairs:
    """The (VNI, IP) uniqueness guarantee, shared by the implementations (atomic on one event loop)."""

    def __init__(self) -> None:
        self._taken: set[tuple[int, str]] = set()

    def take(self, vni: int, ip: str) -> None:
        if (vni, ip) in self._taken:
            raise DuplicateInterface(vni, ip)
        self._taken.add((vni, ip))

    def release(self, vni: int, ip: str) -> None:
        self._taken.discard((vni, ip))

    def __contains__(self, pair: tuple[int, str]) -> bool:
        return pair in self._taken

    def __len__(self) -> int:
        return len(self._taken)
